"""Grasp-like hand configurations for synthetic scenes: finger curls and a hand placement around an object.

Works on any hand model in the MANO layout (joints in JOINT_NAMES order, 15 finger joints whose axis-angle
rotations are expressed in the rest-pose frame). Flexion axes are derived from the model's rest joints, so the
same code poses the stand-in hand and MANO. Nothing here is physically simulated: fingers curl towards the
object and may touch or slightly enter it, which is enough for appearance and occlusion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from ..hand_joints import MANO_TO_OUTPUT_ORDER
from ..results import Side
from .shapes import ObjectShape

#: Output-order index of the joint each of the 15 MANO finger joints (kinematic index 1..15) rotates.
FINGER_JOINT_OUTPUT_INDEX: tuple[int, ...] = tuple(MANO_TO_OUTPUT_ORDER.index(m) for m in range(1, 16))
#: Output-order indices of the palm joints (wrist and the four finger knuckles).
PALM_JOINTS = (0, 5, 9, 13, 17)
#: Maximum flexion (radians) of the knuckle, middle and end joint of a finger, and of the thumb.
FINGER_FLEX_MAX = (1.35, 1.6, 1.1)
THUMB_FLEX_MAX = (0.7, 0.7, 0.9)
#: Maximum sideways spread of a knuckle (radians).
SPREAD_MAX = 0.25
#: How much each finger's curl deviates from the hand's (standard deviation, in [0, 1] curl units).
FINGER_CURL_SIGMA = 0.2


def _unit(v) -> np.ndarray:
    v = np.asarray(v, np.float64)
    return v / max(float(np.linalg.norm(v)), 1e-12)


@dataclass(frozen=True)
class HandAnatomy:
    """Directions of a hand model at rest (zero pose), in the model frame."""

    rest_joints: np.ndarray  # (21, 3) JOINT_NAMES order
    palm_normal: np.ndarray  # (3,) out of the palm
    finger_direction: np.ndarray  # (3,) wrist -> middle knuckle, orthogonal to palm_normal
    palm_centre: np.ndarray  # (3,) mean of the wrist and the four knuckles
    flex_axes: np.ndarray  # (15, 3) flexion axis of each MANO finger joint, curling towards the palm side


def hand_anatomy(rest_joints, side: Side | str) -> HandAnatomy:
    """Palm frame and flexion axes from the 21 rest joints of a right or left hand model.

    For a right hand seen with the palm towards the viewer and fingers up, the index is to the right of the
    little finger, so palm normal = (little -> index) x (wrist -> middle knuckle); a left hand is the mirror.
    """
    joints = np.asarray(rest_joints, np.float64).reshape(21, 3)
    forward = _unit(joints[9] - joints[0])
    across = _unit(joints[5] - joints[17])
    normal = _unit(np.cross(across, forward) if Side(side) is Side.RIGHT else np.cross(forward, across))
    forward = _unit(forward - np.dot(forward, normal) * normal)
    axes = []
    for o in FINGER_JOINT_OUTPUT_INDEX:
        bone = _unit(joints[o + 1] - joints[o])
        # rotating the bone about bone x normal moves its end towards the palm side
        axes.append(_unit(np.cross(bone, normal)))
    return HandAnatomy(joints, normal, forward, joints[list(PALM_JOINTS)].mean(axis=0), np.array(axes))


def finger_pose(rng: np.random.Generator, anatomy: HandAnatomy, curl: float) -> np.ndarray:
    """A (45,) finger pose (axis-angle per MANO finger joint): fingers curled by about ``curl`` in [0, 1].

    Each finger deviates from ``curl`` on its own, the thumb is independent, and every joint angle and knuckle
    spread is jittered, so that hand poses vary well beyond one grasp template.
    """
    pose = np.zeros((15, 3))
    for finger in range(5):  # MANO finger order: index, middle, little, ring, thumb
        is_thumb = finger == 4
        limits = THUMB_FLEX_MAX if is_thumb else FINGER_FLEX_MAX
        if is_thumb:
            finger_curl = rng.uniform(0.1, 1.0)
        else:
            finger_curl = float(np.clip(curl + rng.normal(0.0, FINGER_CURL_SIGMA), 0.0, 1.0))
        for segment in range(3):
            m = 3 * finger + segment
            angle = finger_curl * limits[segment] * rng.uniform(0.7, 1.3)
            rotation = axis_angle_to_matrix(anatomy.flex_axes[m] * angle)
            if segment == 0:
                spread = rng.uniform(-SPREAD_MAX, SPREAD_MAX) * (1.5 if is_thumb else 1.0)
                rotation = axis_angle_to_matrix(anatomy.palm_normal * spread) @ rotation
            pose[m] = matrix_to_axis_angle(rotation)
    return pose.reshape(45)


def _frame(first, normal) -> np.ndarray:
    """Rotation whose columns are (first, normal x first, normal), first made orthogonal to normal."""
    normal = _unit(normal)
    first = _unit(first - np.dot(first, normal) * normal)
    return np.stack([first, np.cross(normal, first), normal], axis=1)


@dataclass(frozen=True)
class Grasp:
    """A hand placement in the object frame: MANO global rotation and translation, and the finger pose."""

    rotation: np.ndarray  # (3, 3) MANO global rotation, hand model frame -> object frame
    translation: np.ndarray  # (3,) MANO translation in the object frame
    finger_pose: np.ndarray  # (45,)
    approach: np.ndarray  # (3,) unit direction from the object towards the palm, object frame


def _approach_and_fingers(
    rng: np.random.Generator, shape: ObjectShape
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(approach direction u, finger direction w, point on the object's surface) in the object frame."""
    lo, hi = shape.points.min(axis=0), shape.points.max(axis=0)
    extent = hi - lo
    if shape.kind == "round" and rng.random() > 0.12:
        while True:
            azimuth = rng.uniform(-np.pi, np.pi)
            blocked = shape.blocked_azimuth
            if blocked is None or not blocked[0] <= azimuth <= blocked[1]:
                break
        u = np.array([np.cos(azimuth), np.sin(azimuth), 0.0])
        w = np.cross([0.0, 0.0, 1.0], u) * rng.choice([-1.0, 1.0])
        height = rng.uniform(-0.3, 0.3) * extent[2]
        surface = u * shape.support(u) + np.array([0.0, 0.0, height])
    else:
        if shape.kind == "round":
            axis = 2
        else:
            axis = int(rng.choice(3, p=[0.4, 0.4, 0.2]))
        u = np.zeros(3)
        u[axis] = 1.0 if (shape.kind == "round" or rng.random() < 0.5) else -1.0
        others = [k for k in range(3) if k != axis]
        w = np.zeros(3)
        w[others[rng.integers(2)]] = rng.choice([-1.0, 1.0])
        surface = u * shape.support(u)
        for k in others:
            surface[k] = rng.uniform(-0.25, 0.25) * extent[k]
    tilt = rng.uniform(-0.6, 0.6)
    w = axis_angle_to_matrix(u * tilt) @ w
    return u, w, surface


def sample_grasp(rng: np.random.Generator, anatomy: HandAnatomy, shape: ObjectShape) -> Grasp:
    """A random grasp of ``shape``: the palm faces the object just off its surface, fingers curl around it."""
    u, w, surface = _approach_and_fingers(rng, shape)
    if rng.random() < 0.5:  # either finger direction along the tangent; thumbs can point either way
        w = -w
    # hand frame (finger direction, ., palm normal) -> object frame (w, ., -u)
    rotation = _frame(w, -u) @ _frame(anatomy.finger_direction, anatomy.palm_normal).T
    palm_offset = rng.uniform(0.012, 0.022)
    palm_target = surface + palm_offset * u
    wrist = anatomy.rest_joints[0]
    translation = palm_target - wrist - rotation @ (anatomy.palm_centre - wrist)
    lo, hi = (0.35, 1.0) if shape.kind == "round" else (0.1, 0.75)
    pose = finger_pose(rng, anatomy, rng.uniform(lo, hi))
    return Grasp(rotation, translation, pose, u)
