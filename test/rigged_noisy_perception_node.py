"""The rigged perception node (see rigged_perception_node.py) with estimate-level noise on every pose.

Each forward places the hand at HAND_T and the object at (OBJECT_R, OBJECT_T) plus fresh noise (5 mm per axis
for the hand, 4 mm and 2 degrees for the object), drawn from a fixed seed in call order. Run:
``python rigged_noisy_perception_node.py --ros-args ...``.
"""

from __future__ import annotations

import sys

import numpy as np
import rigged_perception_node as rigged
import ros_helpers

from hfl_ros.geometry.rotations import axis_angle_to_matrix
from hfl_ros.nodes import perception_node
from hfl_ros.stop_signals import exit_process

_RNG = np.random.default_rng(0)
_rigged_forward = rigged.rigged_forward


def noisy_forward(self, pairs):
    rigged.HAND_T = ros_helpers.HAND_T + _RNG.normal(0, 0.005, 3)
    rigged.OBJECT_T = ros_helpers.OBJECT_T + _RNG.normal(0, 0.004, 3)
    rigged.OBJECT_R = ros_helpers.OBJECT_R @ axis_angle_to_matrix(_RNG.normal(0, np.radians(2), 3))
    return _rigged_forward(self, pairs)


rigged.Estimator._forward = noisy_forward

if __name__ == "__main__":
    exit_process(perception_node.main(sys.argv))
