"""The hand's position in the camera frame, which HFL-Net does not predict (spec §0.6, §10.7).

The network gives wrist-relative 3D joints (camera axes) and 2D joints in the image; the translation t that
makes the projections of joints_rel + t match the 2D joints is found by linear least squares on the pinhole
equations, then refined by Levenberg-Marquardt on the pixel reprojection error.
"""

from __future__ import annotations

import numpy as np

MAX_ITERATIONS = 30
#: A fit farther than this is degenerate (it shrinks the hand towards one pixel), not a hand position.
MAX_DEPTH_M = 10.0


def _reprojection(points_rel: np.ndarray, t: np.ndarray, K: np.ndarray, target: np.ndarray):
    """Pixel residuals (N, 2), their Jacobian w.r.t. t (N, 2, 3), and the depths (N,)."""
    P = points_rel + t
    z = P[:, 2]
    inv_z = 1.0 / z
    ab = P[:, :2] * inv_z[:, None]
    residual = ab @ K[:2, :2].T + K[:2, 2] - target
    d_ab = np.zeros((len(P), 2, 3))
    d_ab[:, 0, 0] = inv_z
    d_ab[:, 1, 1] = inv_z
    d_ab[:, :, 2] = -ab * inv_z[:, None]
    return residual, K[:2, :2] @ d_ab, z


def _linear_translation(points_rel, target, K, sqrt_w) -> tuple[np.ndarray, bool]:
    """t from x_n (Z + t_z) = X + t_x and y_n (Z + t_z) = Y + t_y, two rows per joint."""
    normalised = np.c_[target, np.ones(len(target))] @ np.linalg.inv(K).T
    xn, yn = normalised[:, 0], normalised[:, 1]
    X, Y, Z = points_rel.T
    ones, zeros = np.ones_like(xn), np.zeros_like(xn)
    A = np.concatenate([np.stack([ones, zeros, -xn], 1), np.stack([zeros, ones, -yn], 1)])
    b = np.concatenate([xn * Z - X, yn * Z - Y])
    w = np.concatenate([sqrt_w, sqrt_w])
    t, _, rank, sv = np.linalg.lstsq(A * w[:, None], b * w, rcond=None)
    return t, bool(rank == 3 and sv[-1] > 1e-9 * sv[0])


def _scale_translation(points_rel, target, K, w) -> np.ndarray | None:
    """A start for the refinement when the linear solution is behind the camera: the depth at which the
    joints' 3D spread matches their 2D spread, centred on the weighted 2D centroid."""
    if w.sum() <= 0:
        return None
    w = w / w.sum()
    spread3d = np.sqrt(np.sum(w * np.sum((points_rel[:, :2] - w @ points_rel[:, :2]) ** 2, axis=1)))
    spread2d = np.sqrt(np.sum(w * np.sum((target - w @ target) ** 2, axis=1)))
    if spread2d <= 0 or spread3d <= 0:
        return None
    depth = np.sqrt(K[0, 0] * K[1, 1]) * spread3d / spread2d
    centre_n = np.linalg.solve(K, np.r_[w @ target, 1.0])
    t = centre_n * depth - np.r_[w @ points_rel[:, :2], 0.0]
    t[2] = depth - min(0.0, float(points_rel[:, 2].min()))
    return t


def fit_hand_translation(
    joints_rel, joints2d, K, weights=None, *, max_depth: float = MAX_DEPTH_M
) -> tuple[np.ndarray, float, bool]:
    """Fit the translation t (3,) so that K (joints_rel + t) projects onto joints2d.

    joints_rel (N, 3) m, wrist-relative in camera axes; joints2d (N, 2) px; optional non-negative per-joint
    weights. Returns (t, mean reprojection error in px, ok). ok is False (and t may be NaN) when the input
    is non-finite, the system is singular (fewer than two distinct 2D points or zero weights), or the
    solution puts a joint at or behind the camera, or the wrist farther than ``max_depth`` metres.
    """
    P = np.asarray(joints_rel, dtype=np.float64).reshape(-1, 3)
    uv = np.asarray(joints2d, dtype=np.float64).reshape(-1, 2)
    K = np.asarray(K, dtype=np.float64)
    w = np.ones(len(P)) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    nan_t = np.full(3, np.nan)
    if len(P) != len(uv) or len(w) != len(P):
        raise ValueError(f"joints_rel {P.shape}, joints2d {uv.shape} and weights {w.shape} do not match")
    if not all(np.all(np.isfinite(a)) for a in (P, uv, K, w)):
        return nan_t, float("nan"), False
    if np.any(w < 0):
        raise ValueError("weights must be non-negative")
    sqrt_w = np.sqrt(w)
    t, full_rank = _linear_translation(P, uv, K, sqrt_w)
    if not full_rank:
        return nan_t, float("nan"), False
    if np.min(P[:, 2] + t[2]) <= 0:
        t = _scale_translation(P, uv, K, w)
        if t is None:
            return nan_t, float("nan"), False

    residual, J, _ = _reprojection(P, t, K, uv)
    cost = float(np.sum(w[:, None] * residual**2))
    damping = 1e-3
    for _ in range(MAX_ITERATIONS):
        Jw = (J * sqrt_w[:, None, None]).reshape(-1, 3)
        rw = (residual * sqrt_w[:, None]).reshape(-1)
        H = Jw.T @ Jw
        g = Jw.T @ rw
        try:
            step = np.linalg.solve(H + damping * np.diag(np.diag(H) + 1e-12), -g)
        except np.linalg.LinAlgError:
            return nan_t, float("nan"), False
        t_new = t + step
        if np.min(P[:, 2] + t_new[2]) > 0:
            res_new, J_new, _ = _reprojection(P, t_new, K, uv)
            cost_new = float(np.sum(w[:, None] * res_new**2))
            if cost_new <= cost:
                converged = cost - cost_new <= 1e-12 * max(cost, 1e-12) or np.linalg.norm(step) < 1e-12
                t, residual, J, cost = t_new, res_new, J_new, cost_new
                damping = max(damping / 10.0, 1e-9)
                if converged:
                    break
                continue
        damping *= 10.0
        if damping > 1e8:
            break
    error = float(np.mean(np.linalg.norm(residual, axis=1)))
    ok = bool(
        np.all(np.isfinite(t)) and np.min(P[:, 2] + t[2]) > 0 and t[2] <= max_depth and np.isfinite(error)
    )
    return t, error, ok
