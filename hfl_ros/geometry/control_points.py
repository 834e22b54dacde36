"""The 21 object control points that HFL-Net's object head votes for (spec §6)."""

from __future__ import annotations

import numpy as np

#: Corner index pairs whose midpoints are control points 8-19, in order.
EDGE_MIDPOINT_PAIRS: tuple[tuple[int, int], ...] = (
    (0, 2),
    (1, 3),
    (2, 3),
    (0, 1),
    (4, 6),
    (5, 7),
    (6, 7),
    (4, 5),
    (6, 2),
    (4, 0),
    (7, 3),
    (5, 1),
)
NUM_CONTROL_POINTS = 21


def _bounds(points) -> tuple[np.ndarray, np.ndarray]:
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if pts.shape[0] == 0:
        raise ValueError("no points to take the bounds of")
    return pts.min(axis=0), pts.max(axis=0)


def control_points(points) -> np.ndarray:
    """(21, 3) control points from the axis-aligned bounds of object-frame points (N, 3).

    0-7: corners, x varying fastest, then y, then z ((min,min,min), (max,min,min), (min,max,min), ...);
    8-19: midpoints of the edges in EDGE_MIDPOINT_PAIRS; 20: the box centre.
    """
    lo, hi = _bounds(points)
    bounds = np.stack([lo, hi])  # bounds[i, axis]: i = 0 min, 1 max
    corners = np.array(
        [[bounds[ix, 0], bounds[iy, 1], bounds[iz, 2]] for iz in (0, 1) for iy in (0, 1) for ix in (0, 1)]
    )
    mids = np.array([(corners[a] + corners[b]) / 2.0 for a, b in EDGE_MIDPOINT_PAIRS])
    centre = ((lo + hi) / 2.0)[None]
    return np.concatenate([corners, mids, centre], axis=0)


def bbox_diagonal(points) -> float:
    """Length of the diagonal of the axis-aligned bounds: HFL-Net's object "diameter"."""
    lo, hi = _bounds(points)
    return float(np.linalg.norm(hi - lo))
