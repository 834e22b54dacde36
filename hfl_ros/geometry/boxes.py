"""Axis-aligned boxes [x1, y1, x2, y2] in pixels.

Functions taking two boxes broadcast over leading dimensions, so ``iou(a[:, None], b[None])`` gives the
(N, M) matrix of an (N, 4) and an (M, 4) array.
"""

from __future__ import annotations

import numpy as np

from ..errors import BadBoxError

#: Boxes narrower or lower than this (after clipping to the image) are refused.
MIN_BOX_SIZE_PX = 2.0


def validate_box(box, image_wh: tuple[int, int], *, min_size: float = MIN_BOX_SIZE_PX) -> np.ndarray:
    """Return the box as float64 (4,) clipped to [0, W] x [0, H], or raise BadBoxError saying what is wrong.

    Refused: a box that is not 4 numbers, has non-finite values, is empty or inverted (x2 <= x1 or y2 <= y1),
    lies entirely outside the image, or is smaller than ``min_size`` pixels once clipped.
    """
    try:
        b = np.asarray(box, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise BadBoxError(f"box is not numeric: {exc}") from None
    if b.size != 4:
        raise BadBoxError(f"box must have 4 values [x1, y1, x2, y2], got {b.size}")
    if not np.all(np.isfinite(b)):
        raise BadBoxError(f"box has non-finite values: {b.tolist()}")
    x1, y1, x2, y2 = b
    if x2 <= x1 or y2 <= y1:
        raise BadBoxError(f"box is empty or inverted (needs x2 > x1 and y2 > y1): {b.tolist()}")
    width, height = image_wh
    if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
        raise BadBoxError(f"box {b.tolist()} lies entirely outside the {width}x{height} image")
    clipped = np.array([max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))])
    w, h = clipped[2] - clipped[0], clipped[3] - clipped[1]
    if w < min_size or h < min_size:
        raise BadBoxError(
            f"box {b.tolist()} is {w:g}x{h:g} px inside the image, below the minimum of {min_size:g} px"
        )
    return clipped


def box_from_points(points, f: float = 1.0) -> np.ndarray:
    """The box of 2D points grown by ``f`` about their int-truncated centre (HFL-Net's get_bbox_joints).

    centre = trunc((min + max) / 2); half-size = (max - min) * f / 2, kept as float.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    centre = np.trunc((lo + hi) / 2.0)
    half = (hi - lo) * f / 2.0
    return np.concatenate([centre - half, centre + half])


def scale_box(box, factor: float) -> np.ndarray:
    """Grow (factor > 1) or shrink a box about its exact centre."""
    b = np.asarray(box, dtype=np.float64)
    centre = (b[..., :2] + b[..., 2:]) / 2.0
    half = (b[..., 2:] - b[..., :2]) * factor / 2.0
    return np.concatenate([centre - half, centre + half], axis=-1)


def box_size(box) -> np.ndarray:
    """(width, height) of boxes (..., 4)."""
    b = np.asarray(box, dtype=np.float64)
    return b[..., 2:] - b[..., :2]


def union(a, b) -> np.ndarray:
    """The smallest box holding both boxes."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.concatenate([np.minimum(a[..., :2], b[..., :2]), np.maximum(a[..., 2:], b[..., 2:])], axis=-1)


def intersection(a, b) -> np.ndarray:
    """The overlap box (element-wise max of the top-left, min of the bottom-right); empty when x2 <= x1."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.concatenate([np.maximum(a[..., :2], b[..., :2]), np.minimum(a[..., 2:], b[..., 2:])], axis=-1)


def area(box) -> np.ndarray:
    """Area of boxes, 0 for empty or inverted ones."""
    wh = np.clip(box_size(box), 0.0, None)
    return wh[..., 0] * wh[..., 1]


def intersection_area(a, b) -> np.ndarray:
    """Area of the overlap of two boxes."""
    return area(intersection(a, b))


def iou(a, b) -> np.ndarray:
    """Intersection over union; 0 when both boxes are empty."""
    inter = intersection_area(a, b)
    denom = area(a) + area(b) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, inter / np.where(denom > 0, denom, 1.0), 0.0)
