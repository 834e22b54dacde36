"""Estimator results -> visualization_msgs/MarkerArray: hands (mesh, joints, bones), objects (axes, model).

No ROS runtime: message classes come from a :class:`~hfl_ros.ros.message_types.MessageTypes` adapter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..hand_joints import BONES, NUM_JOINTS
from ..results import HandObjectResult, Side
from . import geometry_messages as gm
from .frame_names import frame_names
from .message_types import MessageTypes, byte_sequence, new_message

MARKER_ADD = 0
MARKER_ARROW, MARKER_LINE_LIST, MARKER_SPHERE_LIST, MARKER_POINTS, MARKER_TRIANGLE_LIST = 0, 5, 7, 8, 11

#: RGBA colours of the right and left hands.
SIDE_COLORS: dict[Side, tuple[float, float, float, float]] = {
    Side.RIGHT: (0.95, 0.55, 0.25, 0.85),
    Side.LEFT: (0.25, 0.55, 0.95, 0.85),
}
_AXIS_COLORS = ((1.0, 0.0, 0.0, 1.0), (0.0, 1.0, 0.0, 1.0), (0.0, 0.0, 1.0, 1.0))
_OBJECT_COLOR = (0.2, 0.85, 0.3, 0.8)

FacesSource = np.ndarray | Mapping[Any, np.ndarray] | Callable[[Side], np.ndarray] | None


def _faces_for(faces: FacesSource, side: Side) -> np.ndarray | None:
    if faces is None:
        return None
    if callable(faces):
        return np.asarray(faces(side))
    if isinstance(faces, Mapping):
        found = faces.get(side, faces.get(side.value))
        return None if found is None else np.asarray(found)
    return np.asarray(faces)


@dataclass
class MarkerStyle:
    """Sizes of the drawn primitives, metres; ``max_object_points``: points drawn for a mesh-less model."""

    joint_diameter: float = 0.01
    bone_width: float = 0.004
    axis_length: float = 0.1
    axis_width: float = 0.006
    object_point_size: float = 0.004
    max_object_points: int = 2000


class _MarkerFactory:
    def __init__(self, types: MessageTypes, header: Any, lifetime_s: float) -> None:
        self.types = types
        self.header = header
        self.lifetime_s = lifetime_s
        self.ids: dict[str, int] = {}
        self.cls = types.get("visualization_msgs/msg/Marker")

    def make(self, ns: str, kind: int, points: list[Any], color: Sequence[float], scale: Sequence[float],
             pose: Any = None, colors: list[Any] | None = None) -> Any:
        marker_id = self.ids.get(ns, 0)
        self.ids[ns] = marker_id + 1
        types = self.types
        texture = new_message(types, "sensor_msgs/msg/CompressedImage", header=self.header, format="",
                              data=byte_sequence(types.get("sensor_msgs/msg/CompressedImage")))
        mesh_file = new_message(types, "visualization_msgs/msg/MeshFile", filename="",
                                data=byte_sequence(types.get("visualization_msgs/msg/MeshFile")))
        return new_message(
            types, "visualization_msgs/msg/Marker",
            header=self.header, ns=ns, id=marker_id, type=kind, action=MARKER_ADD,
            pose=pose if pose is not None else gm.pose(types, np.eye(3), np.zeros(3)),
            scale=gm.vector3(types, scale), color=gm.color(types, color),
            lifetime=gm.duration(types, self.lifetime_s), frame_locked=False,
            points=points, colors=colors or [],
            texture_resource="", texture=texture, uv_coordinates=[], text="",
            mesh_resource="", mesh_file=mesh_file, mesh_use_embedded_materials=False,
        )


def _object_geometry(object_models: Any, class_id: str, style: MarkerStyle,
                     cache: dict[Any, Any] | None) -> tuple[int, np.ndarray] | None:
    """(marker type, points in the object frame) drawing an object model: its mesh, else its points."""
    key = ("object_geometry", class_id)
    if cache is not None and key in cache:
        return cache[key]
    geometry = None
    try:
        model = object_models.get(class_id)
    except Exception:  # no model: draw the axes only
        model = None
    if model is not None:
        faces = getattr(model, "mesh_faces", None)
        verts = getattr(model, "mesh_vertices", None)
        if faces is not None and verts is not None and len(faces):
            corners = np.asarray(verts, dtype=np.float64)[np.asarray(faces)].reshape(-1, 3)
            geometry = (MARKER_TRIANGLE_LIST, corners)
        else:
            pts = np.asarray(model.points, dtype=np.float64).reshape(-1, 3)
            if len(pts) > style.max_object_points:
                pts = pts[np.linspace(0, len(pts) - 1, style.max_object_points).astype(int)]
            geometry = (MARKER_POINTS, pts)
    if cache is not None:
        cache[key] = geometry
    return geometry


def results_to_markers(results: Sequence[HandObjectResult], header: Any, types: MessageTypes,
                       faces: FacesSource, lifetime_s: float, *, publish_mesh: bool = True,
                       object_models: Any = None, style: MarkerStyle | None = None,
                       cache: dict[Any, Any] | None = None) -> Any:
    """Valid estimates of one frame -> visualization_msgs/MarkerArray in ``header.frame_id``.

    Per valid hand: ``hand_mesh`` (TRIANGLE_LIST, one point per face corner: 1538*3 for MANO, coloured by
    side; only when ``publish_mesh`` and vertices and faces are known), ``hand_joints`` (SPHERE_LIST, 21
    points) and ``hand_bones`` (LINE_LIST, 20 bones). Per valid object: ``object_axes`` (LINE_LIST x/y/z in
    red/green/blue) and, when ``object_models`` knows the class, ``object_model`` (its mesh as TRIANGLE_LIST,
    or its points as POINTS). ``faces``: one (F, 3) array, a mapping side -> array, or a callable
    side -> array. Every marker has lifetime ``lifetime_s`` (0 = forever). ``cache`` (any dict kept by the
    caller) memoises object geometry.
    """
    style = style or MarkerStyle()
    factory = _MarkerFactory(types, header, lifetime_s)
    markers = []
    drawn_objects: set[str] = set()
    for result, names in zip(results, frame_names(results), strict=True):
        if names.wrist is not None:
            hand = result.hand
            side = Side(hand.side)
            color = SIDE_COLORS[side]
            verts = np.asarray(hand.verts3d, dtype=np.float64).reshape(-1, 3)
            side_faces = _faces_for(faces, side)
            if publish_mesh and side_faces is not None and len(verts) and side_faces.size:
                tri = verts[side_faces.reshape(-1)]
                markers.append(factory.make("hand_mesh", MARKER_TRIANGLE_LIST, gm.points(types, tri), color,
                                            (1.0, 1.0, 1.0)))
            joints3d = np.asarray(hand.joints3d, dtype=np.float64).reshape(NUM_JOINTS, 3)
            d = style.joint_diameter
            markers.append(factory.make("hand_joints", MARKER_SPHERE_LIST, gm.points(types, joints3d), color,
                                        (d, d, d)))
            bone_ends = joints3d[np.asarray(BONES).reshape(-1)]
            markers.append(factory.make("hand_bones", MARKER_LINE_LIST, gm.points(types, bone_ends), color,
                                        (style.bone_width, 0.0, 0.0)))
        if names.object is not None and names.object not in drawn_objects:
            drawn_objects.add(names.object)
            obj = result.object
            pose = gm.pose(types, obj.rotation, obj.translation)
            length = style.axis_length
            axes = np.zeros((6, 3))
            axes[1::2] = np.eye(3) * length
            axis_colors = [gm.color(types, c) for c in _AXIS_COLORS for _ in range(2)]
            markers.append(factory.make("object_axes", MARKER_LINE_LIST, gm.points(types, axes), (1, 1, 1, 1),
                                        (style.axis_width, 0.0, 0.0), pose=pose, colors=axis_colors))
            geometry = None if object_models is None else _object_geometry(object_models, obj.class_id, style,
                                                                            cache)
            if geometry is not None:
                kind, pts = geometry
                size = (1.0, 1.0, 1.0) if kind == MARKER_TRIANGLE_LIST else (style.object_point_size,) * 3
                markers.append(factory.make("object_model", kind, gm.points(types, pts), _OBJECT_COLOR, size,
                                            pose=pose))
    return new_message(types, "visualization_msgs/msg/MarkerArray", markers=markers)
