"""Estimator results -> tf2_msgs/TFMessage: object, wrist and joint frames (no ROS runtime)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..hand_joints import NUM_JOINTS
from ..results import HandObjectResult
from .frame_names import frame_names
from .geometry_messages import transform_stamped
from .message_types import MessageTypes, new_message


def results_to_tf(results: Sequence[HandObjectResult], header: Any, types: MessageTypes, prefix: str = "",
                  joints: bool = True) -> Any:
    """Valid estimates of one frame -> tf2_msgs/TFMessage, every frame a child of ``header.frame_id``.

    Frames (see :func:`~hfl_ros.ros.frame_names.frame_names`): each valid object (object model frame), each
    valid hand's wrist (origin joint 0, MANO global rotation) and, when ``joints``, joints 1..20 (position
    only, the wrist's rotation). Invalid estimates get no frame.
    """
    transforms = []
    for result, names in zip(results, frame_names(results, prefix), strict=True):
        if names.wrist is not None:
            hand = result.hand
            R = np.asarray(hand.wrist_rotation, dtype=np.float64)
            transforms.append(transform_stamped(types, header, names.wrist, R, hand.wrist_translation))
            if joints:
                joints3d = np.asarray(hand.joints3d, dtype=np.float64).reshape(NUM_JOINTS, 3)
                for j, name in enumerate(names.joints, start=1):
                    transforms.append(transform_stamped(types, header, name, R, joints3d[j]))
        if names.object is not None and all(names.object != t.child_frame_id for t in transforms):
            obj = result.object
            transforms.append(transform_stamped(types, header, names.object, obj.rotation, obj.translation))
    return new_message(types, "tf2_msgs/msg/TFMessage", transforms=transforms)
