"""The perception node with the network's 2D outputs rigged to a known hand and object pose (test double).

Random weights give random 2D joints and object votes, so the hand translation fit and the object PnP would
succeed or fail by chance. This wrapper keeps the whole node and Estimator as they are and only replaces,
after each real forward, the 2D joints by the projection of the predicted 3D joints placed at HAND_T and the
object votes by the projection of the model's control points at (OBJECT_R, OBJECT_T). The node must then
report exactly those poses. Run: ``python rigged_perception_node.py --ros-args ...``.
"""

from __future__ import annotations

import sys

import numpy as np
from ros_helpers import HAND_T, OBJECT_R, OBJECT_T

from hfl_ros.estimator import Estimator
from hfl_ros.geometry.camera import project
from hfl_ros.nodes import perception_node
from hfl_ros.stop_signals import exit_process

_real_forward = Estimator._forward


def _to_crop(points_image: np.ndarray, pair) -> np.ndarray:
    """Image px -> the crop px the network works in (mirrored first for left hands)."""
    uv = np.array(points_image, dtype=np.float64)
    if pair.mirrored:
        uv[:, 0] = pair.width - 1 - uv[:, 0]
    return pair.crop.apply(uv)


def rigged_forward(self, pairs):
    out = _real_forward(self, pairs)
    for i, pair in enumerate(pairs):
        flip = np.array([-1.0, 1.0, 1.0]) if pair.mirrored else np.ones(3)
        joints_rel = out["joints3d"][i] * flip  # as they will be after un-mirroring
        out["joints2d"][i] = _to_crop(project(joints_rel - joints_rel[0] + HAND_T, pair.K), pair)
        if pair.model is not None:
            cps = pair.model.control_points @ OBJECT_R.T + OBJECT_T
            crop_uv = _to_crop(project(cps, pair.K), pair)
            box = pair.net_object_box
            votes = (crop_uv - box[:2]) / (box[2:] - box[:2])
            out["obj_vote"][i] = np.broadcast_to(votes, out["obj_vote"][i].shape)
            out["obj_conf"][i] = 0.9
    return out


Estimator._forward = rigged_forward

if __name__ == "__main__":
    exit_process(perception_node.main(sys.argv))
