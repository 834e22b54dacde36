"""Estimator results -> hfl_ros/HandObjectPoseArray and vision_msgs/Detection3DArray (no ROS runtime)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..results import HandObjectResult, Side
from .frame_names import frame_names
from .geometry_messages import box2d, points, points_2d, pose, vector3
from .message_types import MessageTypes, new_message


def _hand_pose(types: MessageTypes, result: HandObjectResult, with_vertices: bool) -> Any:
    hand = result.hand
    verts = np.asarray(hand.verts3d, dtype=np.float64).reshape(-1, 3)
    return new_message(
        types, "hfl_ros/msg/HandPose",
        side=Side(hand.side).msg_value,
        detection_score=float(hand.detection_score),
        estimate_score=float(hand.estimate_score),
        joints=points(types, hand.joints3d),
        wrist_pose=pose(types, hand.wrist_rotation, hand.wrist_translation),
        translation_valid=bool(hand.translation_valid),
        reprojection_error_px=float(hand.reprojection_error_px),
        joints_2d=points_2d(types, hand.joints2d),
        mano_pose=np.asarray(hand.mano_pose, dtype=np.float32).reshape(48).copy(),
        mano_shape=np.asarray(hand.mano_shape, dtype=np.float32).reshape(10).copy(),
        vertices=points(types, verts) if with_vertices else [],
        box=box2d(types, hand.box),
        track_id=int(hand.track_id),
    )


def _object_pose(types: MessageTypes, result: HandObjectResult) -> Any:
    obj = result.object
    if obj is None:
        return new_message(
            types, "hfl_ros/msg/ObjectPose",
            class_id="", score=0.0, estimate_score=0.0,
            pose=pose(types, np.eye(3), np.zeros(3)), valid=False,
            control_points_2d=points_2d(types, np.zeros((21, 2))),
            inlier_count=0, vote_count=0, reprojection_error_px=float("nan"),
            box=box2d(types, np.zeros(4)),
            track_id=0,
        )
    return new_message(
        types, "hfl_ros/msg/ObjectPose",
        class_id=str(obj.class_id),
        score=float(obj.score),
        estimate_score=float(obj.estimate_score),
        pose=pose(types, obj.rotation, obj.translation),
        valid=bool(obj.valid),
        control_points_2d=points_2d(types, obj.control_points_2d),
        inlier_count=int(obj.inlier_count),
        vote_count=int(obj.vote_count),
        reprojection_error_px=float(obj.reprojection_error_px),
        box=box2d(types, obj.box),
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
    ``id`` = the object's TF frame name (:func:`~hfl_ros.ros.frame_names.frame_names`).
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
        object_pose = pose(types, R, t)
        hypothesis = new_message(
            types, "vision_msgs/msg/ObjectHypothesisWithPose",
            hypothesis=new_message(types, "vision_msgs/msg/ObjectHypothesis", class_id=str(obj.class_id),
                                   score=float(obj.score)),
            pose=new_message(types, "geometry_msgs/msg/PoseWithCovariance", pose=object_pose,
                             covariance=np.zeros(36, dtype=np.float64)),
        )
        bbox = new_message(types, "vision_msgs/msg/BoundingBox3D", center=pose(types, R, R @ centre + t),
                           size=vector3(types, extents))
        detections.append(new_message(types, "vision_msgs/msg/Detection3D", header=header,
                                      results=[hypothesis], bbox=bbox, id=names.object))
    return new_message(types, "vision_msgs/msg/Detection3DArray", header=header, detections=detections)
