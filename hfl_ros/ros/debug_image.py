"""The debug overlay: detection boxes, 2D hand joints and bones, projected object control points (cv2)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ..hand_joints import BONES
from ..results import Detection, HandObjectResult, Side, Status

_SIDE_RGB = {Side.RIGHT: (242, 140, 64), Side.LEFT: (64, 140, 242)}
_OBJECT_RGB = (50, 215, 80)
_BAD_RGB = (230, 40, 40)


def _pt(xy: np.ndarray) -> tuple[int, int]:
    return round(float(xy[0])), round(float(xy[1]))


def _finite(points: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(points)))


def draw_debug_image(rgb: np.ndarray, detections: Sequence[Detection],
                     results: Sequence[HandObjectResult]) -> np.ndarray:
    """A copy of ``rgb`` with every detection box (hands by side colour, objects green, labelled), and for
    each result its 2D joints and bones and, for a valid object, its projected control points."""
    out = np.array(rgb, dtype=np.uint8, copy=True, order="C")
    thickness = max(1, round(min(out.shape[:2]) / 240))
    for det in detections:
        if not _finite(det.box):
            continue
        color = _SIDE_RGB[det.side] if det.is_hand else _OBJECT_RGB
        x1, y1, x2, y2 = det.box
        cv2.rectangle(out, _pt((x1, y1)), _pt((x2, y2)), color, thickness)
        label = f"{det.side.value} {det.score:.2f}" if det.is_hand else f"{det.class_id} {det.score:.2f}"
        cv2.putText(out, label, _pt((x1, max(y1 - 3, 8))), cv2.FONT_HERSHEY_SIMPLEX, 0.35 * thickness, color,
                    1, cv2.LINE_AA)
    for result in results:
        if result.status in (Status.BAD_INPUT, Status.INTERNAL_ERROR):
            if _finite(result.hand.box):
                x1, y1, _, _ = result.hand.box
                cv2.putText(out, result.status.name, _pt((x1, y1 + 12)), cv2.FONT_HERSHEY_SIMPLEX,
                            0.35 * thickness, _BAD_RGB, 1, cv2.LINE_AA)
            continue
        joints = np.asarray(result.hand.joints2d, dtype=np.float64)
        if joints.shape == (21, 2) and _finite(joints):
            color = _SIDE_RGB[Side(result.hand.side)]
            for parent, child in BONES:
                cv2.line(out, _pt(joints[parent]), _pt(joints[child]), color, thickness, cv2.LINE_AA)
            for joint in joints:
                cv2.circle(out, _pt(joint), thickness + 1, (255, 255, 255), -1, cv2.LINE_AA)
        obj = result.object
        if obj is not None and obj.valid:
            cps = np.asarray(obj.control_points_2d, dtype=np.float64)
            if _finite(cps):
                for cp in cps:
                    cv2.drawMarker(out, _pt(cp), _OBJECT_RGB, cv2.MARKER_CROSS, 4 * thickness + 2, thickness)
    return out
