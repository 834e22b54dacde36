"""One synced frame (image, detections, camera_info messages) -> Estimator results (no rclpy import).

Frame-level errors (bad image, bad or missing camera_info, an unexpected exception) never escape: they turn
into one result per hand detection with status BAD_INPUT (or INTERNAL_ERROR) and the reason, so that the
frame still gets its HandObjectPoseArray and every hand its status.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import HflRosError
from ..results import Detection, FrameEstimator, HandEstimate, HandObjectResult, Status
from .convert import LabelMap, detections_from_msg, image_and_K


@dataclass
class FrameOutcome:
    """What processing one frame gave."""

    results: list[HandObjectResult]
    detections: list[Detection]
    rgb: np.ndarray | None  # the decoded image, None if it could not be decoded
    frame_error: Exception | None = None  # set when the whole frame failed
    traceback: str = ""  # for an unexpected exception
    inference_s: float = 0.0
    failure_reasons: list[str] = field(default_factory=list)  # one per failure, for the counters


class InternalError(HflRosError):
    """An unexpected exception while processing a frame (a bug): reported, never raised to the node."""

    reason = "internal_error"


def failed_results(detections: list[Detection], error: Exception, status: Status) -> list[HandObjectResult]:
    """One result with ``status`` and the error's message per hand detection."""
    return [
        HandObjectResult(status=status, hand=HandEstimate(side=d.side, box=d.box, detection_score=d.score),
                         object=None, status_message=str(error),
                         error=error if isinstance(error, HflRosError) else None)
        for d in detections if d.is_hand
    ]


def process_frame(estimator: FrameEstimator, image_msg: Any, detections_msg: Any, camera_info_msg: Any | None,
                  label_map: LabelMap, compressed: bool = False) -> FrameOutcome:
    """Decode the messages and run ``estimator.estimate`` on them; never raises."""
    detections: list[Detection] = []
    rgb = None
    try:
        detections = detections_from_msg(detections_msg, label_map)
        rgb, K = image_and_K(image_msg, camera_info_msg, compressed)
        start = time.perf_counter()
        results = list(estimator.estimate(rgb, K, detections))
        inference_s = time.perf_counter() - start
    except HflRosError as exc:
        return FrameOutcome(failed_results(detections, exc, Status.BAD_INPUT), detections, rgb, exc,
                            failure_reasons=[exc.reason])
    except Exception as exc:  # a bug must not take the node down: report it on this frame
        error = InternalError(f"internal error: {type(exc).__name__}: {exc}")
        return FrameOutcome(failed_results(detections, error, Status.INTERNAL_ERROR), detections, rgb, error,
                            traceback=traceback.format_exc(), failure_reasons=[error.reason])
    reasons = [r.error.reason if r.error is not None else r.status.name.lower()
               for r in results if r.status in (Status.BAD_INPUT, Status.INTERNAL_ERROR)]
    return FrameOutcome(results, detections, rgb, None, inference_s=inference_s, failure_reasons=reasons)
