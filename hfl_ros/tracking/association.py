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
) -> list[tuple[int, int]]:
    """Pairs (track index, detection index) maximising the summed IoU, only between equal keys.

    A globally optimal assignment (not greedy) keeps several instances of one class from swapping when one of
    them overlaps both tracks. Pairs with IoU below ``min_iou`` are never made.
    """
    n_tracks, n_dets = len(track_keys), len(det_keys)
    if n_tracks == 0 or n_dets == 0:
        return []
    tb = np.asarray(track_boxes, dtype=np.float64).reshape(n_tracks, 1, 4)
    db = np.asarray(det_boxes, dtype=np.float64).reshape(1, n_dets, 4)
    overlap = iou(tb, db)
    same = np.array([[tk == dk for dk in det_keys] for tk in track_keys], dtype=bool)
    allowed = same & (overlap >= min_iou)
    cost = np.where(allowed, -overlap, _FORBIDDEN)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if allowed[r, c]]
