"""Pinhole camera matrices: validation and projection."""

from __future__ import annotations

import numpy as np

from ..errors import BadCameraError


def validate_K(K) -> np.ndarray:
    """Return K as a float64 (3, 3) array, or raise BadCameraError saying what is wrong with it.

    Accepts a (3, 3) matrix or its 9 row-major values (as in sensor_msgs/CameraInfo.k). K must be finite,
    have positive focal lengths, the last row [0, 0, 1] and be invertible.
    """
    if K is None:
        raise BadCameraError("camera matrix K is missing")
    try:
        arr = np.asarray(K, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise BadCameraError(f"camera matrix K is not numeric: {exc}") from None
    if arr.size != 9:
        raise BadCameraError(f"camera matrix K must have 9 values (3x3), got shape {arr.shape}")
    arr = arr.reshape(3, 3)
    if not np.all(np.isfinite(arr)):
        raise BadCameraError("camera matrix K has non-finite values")
    fx, fy = arr[0, 0], arr[1, 1]
    if fx <= 0 or fy <= 0:
        raise BadCameraError(f"camera matrix K needs positive focal lengths, got fx={fx:g}, fy={fy:g}")
    if not np.allclose(arr[2], (0.0, 0.0, 1.0)):
        raise BadCameraError(f"camera matrix K must have the last row [0, 0, 1], got {arr[2].tolist()}")
    if abs(np.linalg.det(arr)) < 1e-12 * max(1.0, fx * fy):
        raise BadCameraError("camera matrix K is singular")
    return arr


def project(points, K) -> np.ndarray:
    """Project camera-frame points (N, 3) to pixels (N, 2). Points at z <= 0 give non-finite or mirrored
    pixels."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    uvw = pts @ np.asarray(K, dtype=np.float64).T
    with np.errstate(divide="ignore", invalid="ignore"):
        return uvw[:, :2] / uvw[:, 2:3]
