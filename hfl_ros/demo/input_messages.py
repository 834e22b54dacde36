"""The messages a camera and a 2D detector publish (Image, CompressedImage, CameraInfo, Detection2DArray), as
instances of the bag typestore's classes: what the sample bag and the small synthetic test bags record."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..bag.typestore import typestore


def _new(name: str, **fields: Any) -> Any:
    return typestore().types[name](**fields)


def header(stamp_ns: int, frame_id: str) -> Any:
    """A std_msgs/Header stamped ``stamp_ns`` (nanoseconds since the epoch)."""
    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    stamp = _new("builtin_interfaces/msg/Time", sec=sec, nanosec=nanosec)
    return _new("std_msgs/msg/Header", stamp=stamp, frame_id=frame_id)


def image(header: Any, data: np.ndarray, width: int, height: int, encoding: str = "rgb8") -> Any:
    """A sensor_msgs/Image of ``data``: the image's bytes (uint8), row after row without padding."""
    data = np.ascontiguousarray(data, np.uint8).reshape(-1)
    return _new("sensor_msgs/msg/Image", header=header, height=height, width=width, encoding=encoding,
                is_bigendian=0, step=data.size // height, data=data)


def compressed_image(header: Any, data: np.ndarray, image_format: str) -> Any:
    """A sensor_msgs/CompressedImage of the encoded bytes ``data`` (``image_format`` as image_transport
    writes it)."""
    return _new("sensor_msgs/msg/CompressedImage", header=header, format=image_format,
                data=np.ascontiguousarray(data, np.uint8).reshape(-1))


def camera_info(header: Any, K, width: int, height: int) -> Any:
    """A sensor_msgs/CameraInfo of an undistorted pinhole camera ``K`` (P = [K | 0], R = I)."""
    K = np.asarray(K, np.float64).reshape(3, 3)
    P = np.zeros((3, 4))
    P[:, :3] = K
    roi = _new("sensor_msgs/msg/RegionOfInterest", x_offset=0, y_offset=0, height=0, width=0,
               do_rectify=False)
    return _new("sensor_msgs/msg/CameraInfo", header=header, height=height, width=width,
                distortion_model="plumb_bob", d=np.zeros(5), k=K.reshape(9).copy(), r=np.eye(3).reshape(9),
                p=P.reshape(12), binning_x=0, binning_y=0, roi=roi)


def detection(header: Any, box: Sequence[float], label: str, score: float, detection_id: str = "") -> Any:
    """A vision_msgs/Detection2D of an [x1, y1, x2, y2] pixel box with one hypothesis (label, score)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    centre = _new("vision_msgs/msg/Pose2D", theta=0.0,
                  position=_new("vision_msgs/msg/Point2D", x=(x1 + x2) / 2, y=(y1 + y2) / 2))
    pose = _new("geometry_msgs/msg/Pose", position=_new("geometry_msgs/msg/Point", x=0.0, y=0.0, z=0.0),
                orientation=_new("geometry_msgs/msg/Quaternion", x=0.0, y=0.0, z=0.0, w=1.0))
    hypothesis = _new("vision_msgs/msg/ObjectHypothesisWithPose",
                      hypothesis=_new("vision_msgs/msg/ObjectHypothesis", class_id=label, score=float(score)),
                      pose=_new("geometry_msgs/msg/PoseWithCovariance", pose=pose, covariance=np.zeros(36)))
    bbox = _new("vision_msgs/msg/BoundingBox2D", center=centre, size_x=x2 - x1, size_y=y2 - y1)
    return _new("vision_msgs/msg/Detection2D", header=header, results=[hypothesis], bbox=bbox,
                id=detection_id)


def detection_array(header: Any, detections: Sequence[Any]) -> Any:
    """A vision_msgs/Detection2DArray of Detection2D messages."""
    return _new("vision_msgs/msg/Detection2DArray", header=header, detections=list(detections))
