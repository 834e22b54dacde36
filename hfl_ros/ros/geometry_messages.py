"""Small messages from numpy values: points, poses, transforms, boxes, colours, durations (no ROS runtime).

Each function takes the :class:`~hfl_ros.ros.message_types.MessageTypes` adapter of the back-end to build for.
Rotations are 3 x 3 matrices, turned into (x, y, z, w) quaternions by
:func:`hfl_ros.geometry.rotations.matrix_to_quaternion_xyzw`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..geometry.rotations import matrix_to_quaternion_xyzw
from .message_types import MessageTypes, new_message


def point(types: MessageTypes, xyz: Sequence[float]) -> Any:
    """geometry_msgs/Point."""
    return types.get("geometry_msgs/msg/Point")(x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2]))


def points(types: MessageTypes, xyz: np.ndarray) -> list[Any]:
    """geometry_msgs/Point of each row of an (N, 3) array."""
    cls = types.get("geometry_msgs/msg/Point")
    return [cls(x=x, y=y, z=z) for x, y, z in np.asarray(xyz, dtype=np.float64).reshape(-1, 3).tolist()]


def points_2d(types: MessageTypes, xy: np.ndarray) -> list[Any]:
    """vision_msgs/Point2D of each row of an (N, 2) array."""
    cls = types.get("vision_msgs/msg/Point2D")
    return [cls(x=x, y=y) for x, y in np.asarray(xy, dtype=np.float64).reshape(-1, 2).tolist()]


def vector3(types: MessageTypes, xyz: Sequence[float]) -> Any:
    """geometry_msgs/Vector3."""
    return types.get("geometry_msgs/msg/Vector3")(x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2]))


def quaternion(types: MessageTypes, rotation: np.ndarray) -> Any:
    """geometry_msgs/Quaternion of a rotation matrix (identity for a non-finite one)."""
    x, y, z, w = matrix_to_quaternion_xyzw(rotation).tolist()
    return types.get("geometry_msgs/msg/Quaternion")(x=x, y=y, z=z, w=w)


def pose(types: MessageTypes, rotation: np.ndarray, translation: np.ndarray) -> Any:
    """geometry_msgs/Pose."""
    return new_message(types, "geometry_msgs/msg/Pose", position=point(types, translation),
                       orientation=quaternion(types, rotation))


def transform_stamped(types: MessageTypes, header: Any, child: str, rotation: np.ndarray,
                      translation: np.ndarray) -> Any:
    """geometry_msgs/TransformStamped: frame ``child`` in ``header.frame_id``."""
    transform = new_message(types, "geometry_msgs/msg/Transform", translation=vector3(types, translation),
                            rotation=quaternion(types, rotation))
    return new_message(types, "geometry_msgs/msg/TransformStamped", header=header, child_frame_id=child,
                       transform=transform)


def box2d(types: MessageTypes, box: np.ndarray) -> Any:
    """vision_msgs/BoundingBox2D (centre and size) of a pixel box [x1, y1, x2, y2]."""
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    centre = types.get("vision_msgs/msg/Point2D")(x=(x1 + x2) / 2.0, y=(y1 + y2) / 2.0)
    center = new_message(types, "vision_msgs/msg/Pose2D", position=centre, theta=0.0)
    return new_message(types, "vision_msgs/msg/BoundingBox2D", center=center, size_x=x2 - x1, size_y=y2 - y1)


def color(types: MessageTypes, rgba: Sequence[float]) -> Any:
    """std_msgs/ColorRGBA."""
    r, g, b, a = (float(v) for v in rgba)
    return types.get("std_msgs/msg/ColorRGBA")(r=r, g=g, b=b, a=a)


def duration(types: MessageTypes, seconds: float) -> Any:
    """builtin_interfaces/Duration (negative: zero)."""
    ns = max(0, round(seconds * 1e9))
    return types.get("builtin_interfaces/msg/Duration")(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
