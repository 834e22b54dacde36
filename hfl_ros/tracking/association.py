"""Frame-to-frame association of detections with tracks: same key (hand side or object class), box overlap."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..geometry.boxes import iou

#: Cost of a forbidden pair (other key, or too little overlap); larger than any sum of allowed costs.
_FORBIDDEN = 1e6


def associate(
    track_boxes: np.ndarray,
    track_keys: Sequence[Hashable],
    det_boxes: np.ndarray,
    det_keys: Sequence[Hashable],
    min_iou: float = 0.1,
    track_positions: np.ndarray | None = None,
    det_positions: np.ndarray | None = None,
    position_scale_m: float = 0.05,
) -> list[tuple[int, int]]:
    """Pairs (track index, detection index) of least total cost, only between equal keys.

    The cost of a pair is ``-IoU``, plus, where both have a 3D position (NaN rows where not), their distance
    over ``position_scale_m``: two objects of one class whose boxes coincide while they pass each other are
    still told apart by where they are. A globally optimal assignment (not greedy) keeps several instances of
    one class from swapping. Pairs with IoU below ``min_iou`` are never made.
    """
    n_tracks, n_dets = len(track_keys), len(det_keys)
    if n_tracks == 0 or n_dets == 0:
        return []
    tb = np.asarray(track_boxes, dtype=np.float64).reshape(n_tracks, 1, 4)
    db = np.asarray(det_boxes, dtype=np.float64).reshape(1, n_dets, 4)
    overlap = iou(tb, db)
    same = np.array([[tk == dk for dk in det_keys] for tk in track_keys], dtype=bool)
    allowed = same & (overlap >= min_iou)
    cost = -overlap
    if track_positions is not None and det_positions is not None:
        tp = np.asarray(track_positions, dtype=np.float64).reshape(n_tracks, 1, 3)
        dp = np.asarray(det_positions, dtype=np.float64).reshape(1, n_dets, 3)
        distance = np.linalg.norm(tp - dp, axis=-1)
        cost = cost + np.where(np.isfinite(distance), distance, 0.0) / position_scale_m
    cost = np.where(allowed, cost, _FORBIDDEN)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if allowed[r, c]]
