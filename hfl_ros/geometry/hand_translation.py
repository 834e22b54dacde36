"""The hand's position in the camera frame, which HFL-Net does not predict (spec §0.6, §10.7).

The network gives wrist-relative 3D joints (camera axes) and 2D joints in the image. The translation t that
makes the projections of joints_rel + t match the 2D joints is found by linear least squares on the pinhole
equations, then refined by Levenberg-Marquardt on the pixel reprojection error, with Huber weights (IRLS) so
that a few badly placed 2D joints do not drag it.

The depth of that fit rests on the 2D hand's size, and HFL-Net's 2D joints come out too small: they are a
soft-argmax over the hand box, so a joint whose heat map is diffuse is pulled towards the box centre. The
full-size MANO hand is then fitted too far away, by the shrink factor (twice too far is 0.6 m off at 0.6 m;
benchmarks/bench_hand_translation.py). Given the network's hand box, which by its training convention is the
true 2D joints' box grown by ``BOX_FACTOR``, the fit therefore checks its depth against the depth at which the
predicted 3D hand fills that box; when the two disagree by more than ``BOX_DEPTH_RATIO`` it takes the box's
depth and refits the position across the image to the 2D joints at that depth.
"""

from __future__ import annotations

import numpy as np

MAX_ITERATIONS = 30
#: A fit farther than this is degenerate (it shrinks the hand towards one pixel), not a hand position.
MAX_DEPTH_M = 10.0
#: The network's hand box is the box of the hand's 2D joints grown by this about its centre
#: (hfl_ros.data.torch_dataset.HAND_BOX_FACTOR, the HO3D test boxes of HFL-Net).
BOX_FACTOR = 1.1
#: A fitted depth within this factor of the box's depth stands; beyond it the box's depth is used. Wide enough
#: for detector boxes 15 % off the convention, narrow enough to catch the soft-argmax shrink (often 1.5-2x).
BOX_DEPTH_RATIO = 1.2
#: Huber threshold: this many robust standard deviations of the per-joint pixel errors, and at least this
#: fraction of the 2D joints' RMS spread (errors small against the hand are never down-weighted).
HUBER_SIGMAS = 2.5
HUBER_MIN_SPREAD_FRACTION = 0.15
IRLS_ROUNDS = 10
ALL_AXES = np.array([True, True, True])
ACROSS_IMAGE = np.array([True, True, False])


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


def _levenberg_marquardt(residuals, t: np.ndarray, free: np.ndarray, points_rel: np.ndarray) -> np.ndarray:
    """Minimise |r(t)|² over the ``free`` components of t from t, keeping every point in front of the camera.

    ``residuals(t)`` gives the weighted residual vector (M,) and its Jacobian (M, 3).
    """
    r, J = residuals(t)
    cost = float(r @ r)
    damping = 1e-3
    for _ in range(MAX_ITERATIONS):
        Jf = J[:, free]
        H = Jf.T @ Jf
        try:
            step_free = np.linalg.solve(H + damping * np.diag(np.diag(H) + 1e-12), -Jf.T @ r)
        except np.linalg.LinAlgError:
            break
        step = np.zeros(3)
        step[free] = step_free
        t_new = t + step
        if np.min(points_rel[:, 2] + t_new[2]) > 0:
            r_new, J_new = residuals(t_new)
            cost_new = float(r_new @ r_new)
            if cost_new <= cost:
                converged = cost - cost_new <= 1e-12 * max(cost, 1e-12) or np.linalg.norm(step) < 1e-12
                t, r, J, cost = t_new, r_new, J_new, cost_new
                damping = max(damping / 10.0, 1e-9)
                if converged:
                    break
                continue
        damping *= 10.0
        if damping > 1e8:
            break
    return t


def _pixel_fit(points_rel, target, K, w, t, free) -> np.ndarray:
    """t minimising the w-weighted squared pixel error over its ``free`` components."""
    sqrt_w = np.sqrt(w)

    def residuals(t):
        r, J, _ = _reprojection(points_rel, t, K, target)
        return (r * sqrt_w[:, None]).reshape(-1), (J * sqrt_w[:, None, None]).reshape(-1, 3)

    return _levenberg_marquardt(residuals, t, free, points_rel)


def _huber_threshold(errors: np.ndarray, target: np.ndarray, w: np.ndarray) -> float:
    """The pixel error above which a joint is down-weighted (see HUBER_SIGMAS)."""
    used = w > 0
    sigma = np.median(errors[used]) / np.sqrt(2.0 * np.log(2.0))  # median of a 2D Gaussian error's norm
    centre = np.average(target, axis=0, weights=w)
    spread = np.sqrt(np.average(np.sum((target - centre) ** 2, axis=1), weights=w))
    return max(HUBER_SIGMAS * sigma, HUBER_MIN_SPREAD_FRACTION * spread, 1e-6)


def _robust_pixel_fit(points_rel, target, K, w, t, free) -> np.ndarray:
    """``_pixel_fit`` with Huber weights on the joints' pixel errors, by iteratively reweighted LSQ."""
    t = _pixel_fit(points_rel, target, K, w, t, free)
    huber = np.ones(len(w))
    for _ in range(IRLS_ROUNDS):
        residual, _, _ = _reprojection(points_rel, t, K, target)
        errors = np.linalg.norm(residual, axis=1)
        threshold = _huber_threshold(errors, target, w)
        new_huber = np.minimum(1.0, threshold / np.maximum(errors, 1e-300))
        if np.allclose(new_huber, huber, rtol=0.0, atol=1e-6):
            break
        huber = new_huber
        t_new = _pixel_fit(points_rel, target, K, w * huber, t, free)
        moved = np.linalg.norm(t_new - t)
        t = t_new
        if moved < 1e-8:
            break
    return t


def box_depth_translation(joints_rel, K, box, factor: float = BOX_FACTOR) -> np.ndarray | None:
    """The translation at which the joints' projected box, grown by ``factor`` about its centre, best matches
    ``box`` [x1, y1, x2, y2] px (least squares on the four edges). None when it is undefined: a box without
    area, or 3D joints without extent across the image."""
    P = np.asarray(joints_rel, dtype=np.float64).reshape(-1, 3)
    box = np.asarray(box, dtype=np.float64).reshape(4)
    K = np.asarray(K, dtype=np.float64)
    size = box[2:] - box[:2]
    extent3d = P[:, :2].max(axis=0) - P[:, :2].min(axis=0)
    if not (np.all(np.isfinite(box)) and np.all(size > 0) and np.all(np.isfinite(P))) or extent3d.sum() <= 0:
        return None
    centre = (box[:2] + box[2:]) / 2.0
    edges = np.r_[centre - size / (2.0 * factor), centre + size / (2.0 * factor)]
    # weak-perspective start: the 3D extent across the image against the joints' box, at their mean depth
    depth = (K[0, 0] * extent3d[0] + K[1, 1] * extent3d[1]) * factor / size.sum()
    mid3d = (P[:, :2].max(axis=0) + P[:, :2].min(axis=0)) / 2.0
    t = np.linalg.solve(K, np.r_[centre, 1.0]) * depth - np.r_[mid3d, P[:, 2].mean()]
    if np.min(P[:, 2] + t[2]) <= 0:
        t[2] = 1e-3 - P[:, 2].min()
    rows = np.arange(2)

    def residuals(t):
        uv, J, _ = _reprojection(P, t, K, np.zeros((len(P), 2)))
        low, high = uv.argmin(axis=0), uv.argmax(axis=0)
        projected = np.r_[uv[low, rows], uv[high, rows]]
        return projected - edges, np.concatenate([J[low, rows], J[high, rows]])

    t = _levenberg_marquardt(residuals, t, ALL_AXES, P)
    return t if np.all(np.isfinite(t)) else None


def _depth_from_box(P, uv, K, w, t, box, factor) -> np.ndarray:
    """t, or, when its depth is off the box's depth by more than BOX_DEPTH_RATIO, t at the box's depth with
    the position across the image refitted to the 2D joints there."""
    t_box = box_depth_translation(P, K, box, factor)
    if t_box is None:
        return t
    # compare the joints' mean depths, which scale with distance wherever the wrist lies among the joints
    mean_z = P[:, 2].mean()
    ratio = (t[2] + mean_z) / (t_box[2] + mean_z)
    if 1.0 / BOX_DEPTH_RATIO <= ratio <= BOX_DEPTH_RATIO:
        return t
    return _robust_pixel_fit(P, uv, K, w, t_box, ACROSS_IMAGE)


def fit_hand_translation(
    joints_rel,
    joints2d,
    K,
    weights=None,
    *,
    hand_box=None,
    box_factor: float = BOX_FACTOR,
    max_depth: float = MAX_DEPTH_M,
) -> tuple[np.ndarray, float, bool]:
    """Fit the translation t (3,) so that K (joints_rel + t) projects onto joints2d.

    joints_rel (N, 3) m, wrist-relative in camera axes; joints2d (N, 2) px; optional non-negative per-joint
    weights. The pixel error is Huber-weighted: a joint off by more than a few times the typical error (and
    by more than ~15 % of the hand's 2D spread) counts linearly, not squared.

    ``hand_box`` [x1, y1, x2, y2] px, optional: the network's hand box, the 2D joints' box grown by
    ``box_factor``. With it, when the fitted depth is more than ``BOX_DEPTH_RATIO`` times farther or nearer
    than the depth at which the 3D joints' box fills that box, the box's depth is taken and the position
    across the image refitted there (the result jumps at that limit). A box that cannot give a depth
    (non-finite, without area, or 3D joints without extent across the image) is ignored.

    Returns (t, mean reprojection error in px, ok). ok is False (and t may be NaN) when the input is
    non-finite, the system is singular (fewer than two distinct 2D points or zero weights), or the solution
    puts a joint at or behind the camera, or the wrist farther than ``max_depth`` metres.
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
    t, full_rank = _linear_translation(P, uv, K, np.sqrt(w))
    if not full_rank:
        return nan_t, float("nan"), False
    if np.min(P[:, 2] + t[2]) <= 0:
        t = _scale_translation(P, uv, K, w)
        if t is None:
            return nan_t, float("nan"), False

    t = _robust_pixel_fit(P, uv, K, w, t, ALL_AXES)
    if hand_box is not None:
        t = _depth_from_box(P, uv, K, w, t, hand_box, box_factor)
    residual, _, _ = _reprojection(P, t, K, uv)
    error = float(np.mean(np.linalg.norm(residual, axis=1)))
    ok = bool(
        np.all(np.isfinite(t)) and np.min(P[:, 2] + t[2]) > 0 and t[2] <= max_depth and np.isfinite(error)
    )
    return t, error, ok
