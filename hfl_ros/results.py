"""The Estimator's input and output types: detections in, hand-object results out.

All arrays are numpy. Positions are metres in the camera optical frame (x right, y down, z forward);
image coordinates are pixels of the original image; boxes are [x1, y1, x2, y2].
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from .errors import HflRosError


class Status(enum.IntEnum):
    """Outcome of one hand-object estimate. Values equal the HandObjectPose.STATUS_* constants."""

    OK = 0
    NO_OBJECT_PAIRED = 1
    PNP_FAILED = 2
    LOW_CONFIDENCE = 3
    BAD_INPUT = 4
    TRANSLATION_FAILED = 5
    INTERNAL_ERROR = 6


class Side(enum.StrEnum):
    """Hand side. Values equal the lower-case names; HandPose.RIGHT = 0, HandPose.LEFT = 1."""

    RIGHT = "right"
    LEFT = "left"

    @property
    def msg_value(self) -> int:
        return 0 if self is Side.RIGHT else 1


@dataclass(frozen=True)
class Detection:
    """One 2D detection: a hand (with its side) or an object (with its class id)."""

    box: np.ndarray  # (4,) float [x1, y1, x2, y2] in image pixels
    score: float
    side: Side | None = None  # set for hands
    class_id: str | None = None  # set for objects

    @property
    def is_hand(self) -> bool:
        return self.side is not None

    @classmethod
    def hand(cls, box, side: Side | str, score: float = 1.0) -> Detection:
        return cls(np.asarray(box, dtype=np.float64).reshape(-1), float(score), side=Side(side))

    @classmethod
    def object(cls, box, class_id: str | int, score: float = 1.0) -> Detection:
        return cls(np.asarray(box, dtype=np.float64).reshape(-1), float(score), class_id=str(class_id))


@dataclass
class HandEstimate:
    """The hand part of a result."""

    side: Side
    box: np.ndarray  # (4,) input box, image px
    detection_score: float
    estimate_score: float = 0.0  # [0, 1]
    joints3d: np.ndarray = field(default_factory=lambda: np.zeros((21, 3)))  # camera frame, m
    verts3d: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # (778, 3) camera frame, m
    joints2d: np.ndarray = field(default_factory=lambda: np.zeros((21, 2)))  # image px
    wrist_rotation: np.ndarray = field(default_factory=lambda: np.eye(3))  # (3, 3) camera frame
    wrist_translation: np.ndarray = field(default_factory=lambda: np.zeros(3))  # (3,) m
    translation_valid: bool = False
    reprojection_error_px: float = float("nan")
    mano_pose: np.ndarray = field(default_factory=lambda: np.zeros(48))  # axis-angle, as predicted
    mano_shape: np.ndarray = field(default_factory=lambda: np.zeros(10))
    track_id: int = 0  # set by hfl_ros.tracking; 0 = not tracked


@dataclass
class ObjectEstimate:
    """The object part of a result."""

    class_id: str
    box: np.ndarray  # (4,) input box, image px
    score: float  # detection score
    valid: bool = False
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))  # object -> camera
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))  # m
    control_points_2d: np.ndarray = field(default_factory=lambda: np.zeros((21, 2)))  # image px
    inlier_count: int = 0
    vote_count: int = 0
    reprojection_error_px: float = float("nan")
    estimate_score: float = 0.0  # inlier fraction
    track_id: int = 0  # set by hfl_ros.tracking; 0 = not tracked


@dataclass
class HandObjectResult:
    """One hand and the object paired with it. ``object`` is None when no object box was paired."""

    status: Status
    hand: HandEstimate
    object: ObjectEstimate | None = None
    status_message: str = ""
    error: HflRosError | None = None  # the typed error behind a BAD_INPUT / INTERNAL_ERROR status

    @property
    def ok(self) -> bool:
        return self.status is Status.OK


#: One frame for :meth:`FrameEstimator.estimate_batch`: RGB image (H, W, 3) uint8, K (3, 3), detections.
Frame = tuple[np.ndarray, np.ndarray, Sequence[Detection]]


@runtime_checkable
class FrameEstimator(Protocol):
    """What the node, the labeler and the evaluator call on an Estimator (tests may give their own)."""

    def estimate(self, image: np.ndarray, K: np.ndarray,
                 detections: Sequence[Detection]) -> list[HandObjectResult]:
        """The results of one frame, one per hand detection; errors of the whole frame are raised."""
        ...

    def estimate_batch(self, frames: Sequence[Frame]) -> list[list[HandObjectResult] | HflRosError]:
        """The results of each frame, or the error that made the frame unusable."""
        ...
