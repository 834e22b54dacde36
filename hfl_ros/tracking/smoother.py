"""Offline (non-causal) smoothing of one track: a robust local quadratic fit on SE(3), centred on each frame.

For every frame, the samples within ``half_window_s`` on both sides are fitted, with tricube weights in
time, by a quadratic in time: the points directly, the rotations in the tangent space at a reference
rotation (the frame's own, or, when that one disagrees with most of its neighbours, the neighbour that
agrees with most). The fit's value at the frame is the smoothed pose. Being centred, the fit has no lag;
samples beyond the gate (a PnP flip, a wrong association) get zero weight, so a single-frame jump is removed
rather than spread.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle


@dataclass
class SmootherConfig:
    """Window and gate of the offline smoother."""

    half_window_s: float = 0.25
    degree: int = 2
    gate_translation_m: float = 0.1
    gate_rotation_rad: float = 1.0


def _tangent(R_ref: np.ndarray, R: np.ndarray) -> np.ndarray:
    """log(R_ref^T R) for R (K, M, 3, 3) against R_ref (M, 3, 3) -> (K, M, 3)."""
    return matrix_to_axis_angle(np.swapaxes(R_ref, -1, -2)[None] @ R)


def smooth_poses(
    times: np.ndarray, points: np.ndarray, rotations: np.ndarray, config: SmootherConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Smooth one track: times (T,) s, points (T, N, 3), rotations (T, M, 3, 3) -> (points, rotations).

    The gate looks at the first point and the first rotation (the wrist or the object pose).
    """
    cfg = config or SmootherConfig()
    times = np.asarray(times, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    rotations = np.asarray(rotations, dtype=np.float64)
    T = len(times)
    out_p, out_R = points.copy(), rotations.copy()
    has_rot = rotations.shape[1] > 0
    for i in range(T):
        near = np.flatnonzero(np.abs(times - times[i]) <= cfg.half_window_s)
        ref = i
        if has_rot:
            # The reference must not be an outlier: take the sample that agrees with the most neighbours.
            angles = np.linalg.norm(_tangent(rotations[i], rotations[near, :1])[:, 0], axis=-1)
            if np.count_nonzero(angles <= cfg.gate_rotation_rad) * 2 <= len(near):
                counts = [
                    np.count_nonzero(
                        np.linalg.norm(_tangent(rotations[j], rotations[near, :1])[:, 0], axis=-1)
                        <= cfg.gate_rotation_rad
                    )
                    for j in near
                ]
                ref = int(near[int(np.argmax(counts))])
        inlier = np.linalg.norm(points[near, 0] - points[ref, 0], axis=-1) <= cfg.gate_translation_m
        if has_rot:
            tangent = _tangent(rotations[ref], rotations[near])  # (K, M, 3)
            inlier &= np.linalg.norm(tangent[:, 0], axis=-1) <= cfg.gate_rotation_rad
        u = (times[near] - times[i]) / (cfg.half_window_s * 1.0001)
        w = (1 - np.abs(u) ** 3) ** 3 * inlier
        degree = min(cfg.degree, int(np.count_nonzero(w > 0)) - 1)
        if degree < 0:
            continue
        # Weighted least squares; the value at the frame is the constant term (u = 0 there).
        A = np.vander(u, degree + 1, increasing=True) * np.sqrt(w)[:, None]
        pinv0 = np.linalg.pinv(A)[0] * np.sqrt(w)  # (K,) weights giving the fitted constant term
        out_p[i] = np.tensordot(pinv0, points[near], axes=1)
        if has_rot:
            out_R[i] = rotations[ref] @ axis_angle_to_matrix(np.tensordot(pinv0, tangent, axes=1))
    return out_p, out_R
