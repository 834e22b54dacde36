"""Estimator results -> ROS messages (poses, Detection3DArray, TF, RViz markers), without any ROS runtime.

Message classes come from a :class:`MessageTypes` adapter, so the same code builds rclpy messages (live node)
and ``rosbags`` messages (offline labeler). Both back-ends accept what is built here because every message is
constructed with a keyword argument for every field, fixed-size primitive arrays are numpy arrays of the exact
dtype, and unbounded primitive sequences are numpy for ``rosbags`` and ``array.array`` for rclpy.
"""

from __future__ import annotations

import array
import dataclasses
import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import transforms3d.quaternions as tq

from ..hand_joints import BONES, JOINT_NAMES, NUM_JOINTS
from ..results import HandObjectResult, Side, Status

# ----------------------------------------------------------------------------------------------------
# Message type adapters


class MessageTypes(Protocol):
    """Returns message classes by full name, e.g. ``"hfl_ros/msg/HandPose"``."""

    def get(self, name: str) -> type: ...


def _split_type_name(name: str) -> tuple[str, str]:
    parts = name.split("/")
    if len(parts) == 3 and parts[1] == "msg":
        return parts[0], parts[2]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise ValueError(f"not a message type name: {name!r} (expected 'pkg/msg/Type')")


class RclpyMessageTypes:
    """Message classes of the rclpy generated packages (``pkg.msg.Type``), imported on first use."""

    def __init__(self) -> None:
        self._cache: dict[str, type] = {}

    def get(self, name: str) -> type:
        cls = self._cache.get(name)
        if cls is None:
            pkg, typ = _split_type_name(name)
            cls = getattr(importlib.import_module(f"{pkg}.msg"), typ)
            self._cache[name] = cls
        return cls


class TypestoreMessageTypes:
    """Message classes of a ``rosbags`` typestore (its ``types`` mapping, keyed ``pkg/msg/Type``)."""

    def __init__(self, typestore: Any) -> None:
        self._types = typestore.types

    def get(self, name: str) -> type:
        pkg, typ = _split_type_name(name)
        return self._types[f"{pkg}/msg/{typ}"]


_FIELDS: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        if hasattr(cls, "get_fields_and_field_types"):  # rclpy
            names = tuple(cls.get_fields_and_field_types())
        else:  # rosbags dataclass: message fields have no default (constants and __msgtype__ do)
            names = tuple(f.name for f in dataclasses.fields(cls)
                          if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        _FIELDS[cls] = names
    return names


def _is_rclpy(cls: type) -> bool:
    return hasattr(cls, "get_fields_and_field_types")


def new_message(types: MessageTypes, name: str, /, **values: Any) -> Any:
    """Build message ``name`` from keyword values; every field of the class must be given.

    Values for fields the class does not have are ignored, so one call serves message versions that differ by
    optional additions (e.g. Marker's texture fields, absent before Iron).
    """
    cls = types.get(name)
    names = _field_names(cls)
    missing = [n for n in names if n not in values]
    if missing:
        raise TypeError(f"{name}: no value given for field(s) {missing}")
    return cls(**{n: values[n] for n in names})


def _byte_sequence(cls: type, data: bytes = b"") -> Any:
    """An unbounded uint8[] value for a field of a message of class ``cls``."""
    if _is_rclpy(cls):
        return array.array("B", data)
    return np.frombuffer(data, dtype=np.uint8).copy()


# ----------------------------------------------------------------------------------------------------
# Small geometry messages


def _point(types: MessageTypes, xyz: Sequence[float]) -> Any:
    return types.get("geometry_msgs/msg/Point")(x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2]))


def _points(types: MessageTypes, points: np.ndarray) -> list[Any]:
    cls = types.get("geometry_msgs/msg/Point")
    return [cls(x=x, y=y, z=z) for x, y, z in np.asarray(points, dtype=np.float64).reshape(-1, 3).tolist()]


def _points_2d(types: MessageTypes, points: np.ndarray) -> list[Any]:
    cls = types.get("vision_msgs/msg/Point2D")
    return [cls(x=x, y=y) for x, y in np.asarray(points, dtype=np.float64).reshape(-1, 2).tolist()]


def quaternion_xyzw(rotation: np.ndarray) -> np.ndarray:
    """Rotation matrix -> unit quaternion (x, y, z, w); identity for a non-finite matrix."""
    R = np.asarray(rotation, dtype=np.float64).reshape(3, 3)
    if not np.all(np.isfinite(R)):
        return np.array([0.0, 0.0, 0.0, 1.0])
    w, x, y, z = tq.mat2quat(R)
    q = np.array([x, y, z, w])
    return q / np.linalg.norm(q)


def _quaternion(types: MessageTypes, rotation: np.ndarray) -> Any:
    x, y, z, w = quaternion_xyzw(rotation).tolist()
    return types.get("geometry_msgs/msg/Quaternion")(x=x, y=y, z=z, w=w)


def _pose(types: MessageTypes, rotation: np.ndarray, translation: np.ndarray) -> Any:
    return new_message(types, "geometry_msgs/msg/Pose", position=_point(types, translation),
                       orientation=_quaternion(types, rotation))


def _vector3(types: MessageTypes, xyz: Sequence[float]) -> Any:
    return types.get("geometry_msgs/msg/Vector3")(x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2]))


def _box2d(types: MessageTypes, box: np.ndarray) -> Any:
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    centre = types.get("vision_msgs/msg/Point2D")(x=(x1 + x2) / 2.0, y=(y1 + y2) / 2.0)
    center = new_message(types, "vision_msgs/msg/Pose2D", position=centre, theta=0.0)
    return new_message(types, "vision_msgs/msg/BoundingBox2D", center=center, size_x=x2 - x1, size_y=y2 - y1)


def _color(types: MessageTypes, rgba: Sequence[float]) -> Any:
    r, g, b, a = (float(v) for v in rgba)
    return types.get("std_msgs/msg/ColorRGBA")(r=r, g=g, b=b, a=a)


def _duration(types: MessageTypes, seconds: float) -> Any:
    ns = max(0, round(seconds * 1e9))
    return types.get("builtin_interfaces/msg/Duration")(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


# ----------------------------------------------------------------------------------------------------
# Validity and frame names

# Statuses under which nothing of a result is published as TF or markers, whatever its validity flags say.
_UNUSABLE = {Status.INTERNAL_ERROR, Status.LOW_CONFIDENCE}


def hand_is_valid(result: HandObjectResult) -> bool:
    """True when the hand has an absolute pose (translation fitted) worth publishing as TF / markers.

    A hand whose object failed (BAD_INPUT for an unknown class, PNP_FAILED) is still valid.
    """
    return bool(result.hand.translation_valid) and result.status not in _UNUSABLE


def object_is_valid(result: HandObjectResult) -> bool:
    """True when the paired object has a valid 6-DoF pose worth publishing."""
    obj = result.object
    return obj is not None and bool(obj.valid) and result.status not in _UNUSABLE


def _frame_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", str(text)) or "unknown"


@dataclass(frozen=True)
class FrameNames:
    """TF child frame names of one result (None when that part is not published)."""

    wrist: str | None
    joints: tuple[str, ...] | None  # joints 1..20 (joint 0 is the wrist frame itself)
    object: str | None


def frame_names(results: Sequence[HandObjectResult], prefix: str = "") -> list[FrameNames]:
    """TF frame names for each result, in order.

    - hands: ``<prefix><side>_wrist`` and ``<prefix><side>_<joint>``; the k-th valid hand of a side (k >= 1)
      gets the suffix ``_<k>`` on all its frames, so a single hand keeps stable names;
    - objects: ``<prefix>object_<class_id>_<n>``, n counting valid objects of that class from 0 (class ids
      are made frame-safe: characters other than letters, digits and ``_`` become ``_``). An object box
      paired with two hands gets one frame.
    Tracked estimates (``track_id`` > 0) are counted in the order of their track ids, before untracked ones,
    so two hands of a side or two objects of a class keep their names from frame to frame whatever order the
    detector lists them in. Invalid estimates get None.
    """
    hand_rank: dict[int, int] = {}  # result index -> k
    object_key: dict[int, tuple[str, tuple]] = {}  # result index -> (class id, box) of its distinct object
    hands_of: dict[Side, list[tuple[tuple[int, int], int]]] = {Side.RIGHT: [], Side.LEFT: []}
    objects_of: dict[str, dict[tuple, tuple[int, int]]] = {}  # class -> box -> order key
    for i, result in enumerate(results):
        if hand_is_valid(result):
            hands_of[Side(result.hand.side)].append((_order(result.hand.track_id, i), i))
        if object_is_valid(result):
            cid = str(result.object.class_id)
            box = tuple(np.asarray(result.object.box, dtype=np.float64).ravel().tolist())
            object_key[i] = (cid, box)
            seen = objects_of.setdefault(cid, {})
            seen[box] = min(seen.get(box, (2, i)), _order(result.object.track_id, i))
    for entries in hands_of.values():
        for k, (_, i) in enumerate(sorted(entries)):
            hand_rank[i] = k
    object_rank = {(cid, box): n for cid, boxes in objects_of.items()
                   for n, box in enumerate(sorted(boxes, key=boxes.__getitem__))}
    names: list[FrameNames] = []
    for i, result in enumerate(results):
        wrist = joints = obj_name = None
        if i in hand_rank:
            side = Side(result.hand.side)
            suffix = f"_{hand_rank[i]}" if hand_rank[i] else ""
            wrist = f"{prefix}{side.value}_wrist{suffix}"
            joints = tuple(f"{prefix}{side.value}_{JOINT_NAMES[j]}{suffix}" for j in range(1, NUM_JOINTS))
        if i in object_key:
            cid = object_key[i][0]
            obj_name = f"{prefix}object_{_frame_safe(cid)}_{object_rank[object_key[i]]}"
        names.append(FrameNames(wrist, joints, obj_name))
    return names


def _order(track_id: int, index: int) -> tuple[int, int]:
    """Sort key: tracked estimates by track id, then untracked ones in list order."""
    return (0, int(track_id)) if track_id else (1, index)


# ----------------------------------------------------------------------------------------------------
# HandObjectPoseArray


def _hand_pose(types: MessageTypes, result: HandObjectResult, with_vertices: bool) -> Any:
    hand = result.hand
    verts = np.asarray(hand.verts3d, dtype=np.float64).reshape(-1, 3)
    return new_message(
        types, "hfl_ros/msg/HandPose",
        side=Side(hand.side).msg_value,
        detection_score=float(hand.detection_score),
        estimate_score=float(hand.estimate_score),
        joints=_points(types, hand.joints3d),
        wrist_pose=_pose(types, hand.wrist_rotation, hand.wrist_translation),
        translation_valid=bool(hand.translation_valid),
        reprojection_error_px=float(hand.reprojection_error_px),
        joints_2d=_points_2d(types, hand.joints2d),
        mano_pose=np.asarray(hand.mano_pose, dtype=np.float32).reshape(48).copy(),
        mano_shape=np.asarray(hand.mano_shape, dtype=np.float32).reshape(10).copy(),
        vertices=_points(types, verts) if with_vertices else [],
        box=_box2d(types, hand.box),
        track_id=int(hand.track_id),
    )


def _object_pose(types: MessageTypes, result: HandObjectResult) -> Any:
    obj = result.object
    if obj is None:
        return new_message(
            types, "hfl_ros/msg/ObjectPose",
            class_id="", score=0.0, estimate_score=0.0,
            pose=_pose(types, np.eye(3), np.zeros(3)), valid=False,
            control_points_2d=_points_2d(types, np.zeros((21, 2))),
            inlier_count=0, vote_count=0, reprojection_error_px=float("nan"),
            box=_box2d(types, np.zeros(4)),
            track_id=0,
        )
    return new_message(
        types, "hfl_ros/msg/ObjectPose",
        class_id=str(obj.class_id),
        score=float(obj.score),
        estimate_score=float(obj.estimate_score),
        pose=_pose(types, obj.rotation, obj.translation),
        valid=bool(obj.valid),
        control_points_2d=_points_2d(types, obj.control_points_2d),
        inlier_count=int(obj.inlier_count),
        vote_count=int(obj.vote_count),
        reprojection_error_px=float(obj.reprojection_error_px),
        box=_box2d(types, obj.box),
        track_id=int(obj.track_id),
    )


def result_to_pose_msg(result: HandObjectResult, header: Any, types: MessageTypes,
                       with_vertices: bool = False) -> Any:
    """One result -> hfl_ros/HandObjectPose with ``header``."""
    return new_message(
        types, "hfl_ros/msg/HandObjectPose",
        header=header,
        status=int(result.status),
        status_message=str(result.status_message),
        hand=_hand_pose(types, result, with_vertices),
        object=_object_pose(types, result),
    )


def results_to_msg(results: Sequence[HandObjectResult], header: Any, types: MessageTypes,
                   with_vertices: bool = False) -> Any:
    """Results of one frame -> hfl_ros/HandObjectPoseArray with ``header`` (the image's); may be empty."""
    poses = [result_to_pose_msg(r, header, types, with_vertices) for r in results]
    return new_message(types, "hfl_ros/msg/HandObjectPoseArray", header=header, poses=poses)


# ----------------------------------------------------------------------------------------------------
# Detection3DArray


def _model_box(object_models: Any, class_id: str) -> tuple[np.ndarray, np.ndarray]:
    """(centre, extents) of the object model's axis-aligned box in its own frame; zeros if unavailable."""
    if object_models is None:
        return np.zeros(3), np.zeros(3)
    try:
        model = object_models.get(class_id)
        return (np.asarray(model.centre, dtype=np.float64).reshape(3),
                np.asarray(model.extents, dtype=np.float64).reshape(3))
    except Exception:  # a missing model only loses the box size, never the detection
        return np.zeros(3), np.zeros(3)


def results_to_detection3d(results: Sequence[HandObjectResult], header: Any, types: MessageTypes,
                           object_models: Any = None, prefix: str = "") -> Any:
    """Valid object poses of one frame -> vision_msgs/Detection3DArray.

    One Detection3D per distinct valid object (an object box paired with two hands appears once): hypothesis =
    (class id, detection score) with the object pose; bbox = the model's box (centre and extents from
    ``object_models.get(class_id)``) expressed in the camera frame, size zero when no model is known;
    ``id`` = the object's TF frame name.
    """
    detections = []
    published: set[str] = set()
    for result, names in zip(results, frame_names(results, prefix), strict=True):
        if names.object is None or names.object in published:
            continue
        published.add(names.object)
        obj = result.object
        R = np.asarray(obj.rotation, dtype=np.float64).reshape(3, 3)
        t = np.asarray(obj.translation, dtype=np.float64).reshape(3)
        centre, extents = _model_box(object_models, obj.class_id)
        pose = _pose(types, R, t)
        hypothesis = new_message(
            types, "vision_msgs/msg/ObjectHypothesisWithPose",
            hypothesis=new_message(types, "vision_msgs/msg/ObjectHypothesis", class_id=str(obj.class_id),
                                   score=float(obj.score)),
            pose=new_message(types, "geometry_msgs/msg/PoseWithCovariance", pose=pose,
                             covariance=np.zeros(36, dtype=np.float64)),
        )
        bbox = new_message(types, "vision_msgs/msg/BoundingBox3D", center=_pose(types, R, R @ centre + t),
                           size=_vector3(types, extents))
        detections.append(new_message(types, "vision_msgs/msg/Detection3D", header=header,
                                      results=[hypothesis], bbox=bbox, id=names.object))
    return new_message(types, "vision_msgs/msg/Detection3DArray", header=header, detections=detections)


# ----------------------------------------------------------------------------------------------------
# TF


def _transform(types: MessageTypes, header: Any, child: str, rotation: np.ndarray,
               translation: np.ndarray) -> Any:
    x, y, z, w = quaternion_xyzw(rotation).tolist()
    transform = new_message(types, "geometry_msgs/msg/Transform", translation=_vector3(types, translation),
                            rotation=types.get("geometry_msgs/msg/Quaternion")(x=x, y=y, z=z, w=w))
    return new_message(types, "geometry_msgs/msg/TransformStamped", header=header, child_frame_id=child,
                       transform=transform)


def results_to_tf(results: Sequence[HandObjectResult], header: Any, types: MessageTypes, prefix: str = "",
                  joints: bool = True) -> Any:
    """Valid estimates of one frame -> tf2_msgs/TFMessage, every frame a child of ``header.frame_id``.

    Frames (see :func:`frame_names`): each valid object (object model frame), each valid hand's wrist (origin
    joint 0, MANO global rotation) and, when ``joints``, joints 1..20 (position only, the wrist's rotation).
    Invalid estimates get no frame.
    """
    transforms = []
    for result, names in zip(results, frame_names(results, prefix), strict=True):
        if names.wrist is not None:
            hand = result.hand
            R = np.asarray(hand.wrist_rotation, dtype=np.float64)
            transforms.append(_transform(types, header, names.wrist, R, hand.wrist_translation))
            if joints:
                joints3d = np.asarray(hand.joints3d, dtype=np.float64).reshape(NUM_JOINTS, 3)
                for j, name in enumerate(names.joints, start=1):
                    transforms.append(_transform(types, header, name, R, joints3d[j]))
        if names.object is not None and all(names.object != t.child_frame_id for t in transforms):
            obj = result.object
            transforms.append(_transform(types, header, names.object, obj.rotation, obj.translation))
    return new_message(types, "tf2_msgs/msg/TFMessage", transforms=transforms)


# ----------------------------------------------------------------------------------------------------
# Markers

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
                              data=_byte_sequence(types.get("sensor_msgs/msg/CompressedImage")))
        mesh_file = new_message(types, "visualization_msgs/msg/MeshFile", filename="",
                                data=_byte_sequence(types.get("visualization_msgs/msg/MeshFile")))
        return new_message(
            types, "visualization_msgs/msg/Marker",
            header=self.header, ns=ns, id=marker_id, type=kind, action=MARKER_ADD,
            pose=pose if pose is not None else _pose(types, np.eye(3), np.zeros(3)),
            scale=_vector3(types, scale), color=_color(types, color),
            lifetime=_duration(types, self.lifetime_s), frame_locked=False,
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
                markers.append(factory.make("hand_mesh", MARKER_TRIANGLE_LIST, _points(types, tri), color,
                                            (1.0, 1.0, 1.0)))
            joints3d = np.asarray(hand.joints3d, dtype=np.float64).reshape(NUM_JOINTS, 3)
            d = style.joint_diameter
            markers.append(factory.make("hand_joints", MARKER_SPHERE_LIST, _points(types, joints3d), color,
                                        (d, d, d)))
            bone_ends = joints3d[np.asarray(BONES).reshape(-1)]
            markers.append(factory.make("hand_bones", MARKER_LINE_LIST, _points(types, bone_ends), color,
                                        (style.bone_width, 0.0, 0.0)))
        if names.object is not None and names.object not in drawn_objects:
            drawn_objects.add(names.object)
            obj = result.object
            pose = _pose(types, obj.rotation, obj.translation)
            length = style.axis_length
            axes = np.zeros((6, 3))
            axes[1::2] = np.eye(3) * length
            axis_colors = [_color(types, c) for c in _AXIS_COLORS for _ in range(2)]
            markers.append(factory.make("object_axes", MARKER_LINE_LIST, _points(types, axes), (1, 1, 1, 1),
                                        (style.axis_width, 0.0, 0.0), pose=pose, colors=axis_colors))
            geometry = None if object_models is None else _object_geometry(object_models, obj.class_id, style,
                                                                            cache)
            if geometry is not None:
                kind, pts = geometry
                size = (1.0, 1.0, 1.0) if kind == MARKER_TRIANGLE_LIST else (style.object_point_size,) * 3
                markers.append(factory.make("object_model", kind, _points(types, pts), _OBJECT_COLOR, size,
                                            pose=pose))
    return new_message(types, "visualization_msgs/msg/MarkerArray", markers=markers)


__all__ = [
    "SIDE_COLORS",
    "FrameNames",
    "MarkerStyle",
    "MessageTypes",
    "RclpyMessageTypes",
    "TypestoreMessageTypes",
    "frame_names",
    "hand_is_valid",
    "new_message",
    "object_is_valid",
    "quaternion_xyzw",
    "result_to_pose_msg",
    "results_to_detection3d",
    "results_to_markers",
    "results_to_msg",
    "results_to_tf",
]
