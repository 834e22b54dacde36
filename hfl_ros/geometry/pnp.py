"""Object pose from the object head's control-point votes: vote selection and EPnP-RANSAC (spec §6)."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .rotations import axis_angle_to_matrix

#: OpenCV's solvePnPRansac defaults, which HFL-Net uses.
RANSAC_ITERATIONS = 100
RANSAC_REPROJECTION_PX = 8.0
RANSAC_CONFIDENCE = 0.99
MIN_INLIERS = 4
#: Farther than this an object in a hand cannot be seen well enough to vote on: a pose beyond it is a
#: collapse of the votes (seen from an untrained network as depths of 1e70 m), not a measurement.
MAX_DEPTH_M = 20.0


def top_votes(vote_px: np.ndarray, conf: np.ndarray, best_count: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The ``best_count`` highest-confidence votes of each keypoint.

    vote_px (H, W, K, 2), conf (H, W, K) -> votes (R, K, 2) and their confidences (R, K), best first,
    ties broken by the lower cell index (row-major), with R = min(best_count, H * W).
    """
    cells = conf.shape[0] * conf.shape[1]
    num_kp = conf.shape[2]
    conf_flat = np.nan_to_num(np.asarray(conf, dtype=np.float64).reshape(cells, num_kp), nan=0.0)
    votes_flat = np.asarray(vote_px, dtype=np.float64).reshape(cells, num_kp, 2)
    order = _best_cells(conf_flat, min(int(best_count), cells))  # (R, K) cell indices
    kp = np.arange(num_kp)[None, :]
    return votes_flat[order, kp], conf_flat[order, kp]


def _best_cells(conf_flat: np.ndarray, rounds: int) -> np.ndarray:
    """Per column, the indices of the ``rounds`` largest values, largest first, ties by lower index: a stable
    descending argsort, computed by partition (4x faster) except in columns with ties at the cut."""
    neg = -np.ascontiguousarray(conf_flat.T)  # (K, cells)
    if rounds >= neg.shape[1]:
        return np.argsort(neg, axis=1, kind="stable").T
    idx = np.argpartition(neg, rounds - 1, axis=1)[:, :rounds]
    vals = np.take_along_axis(neg, idx, axis=1)
    order = np.take_along_axis(idx, np.lexsort((idx, vals), axis=1), axis=1)
    tied = (neg <= vals.max(axis=1, keepdims=True)).sum(axis=1) > rounds
    if tied.any():
        order[tied] = np.argsort(neg[tied], axis=1, kind="stable")[:, :rounds]
    return order.T


def select_votes(
    vote_px: np.ndarray, conf: np.ndarray, best_count: int = 10, threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """The votes HFL-Net hands to PnP: points2d (M, 2) and their keypoint index (M,).

    Equals the spec's loop (``best_count`` rounds of: take each keypoint's highest-confidence cell, keep
    it if its confidence exceeds ``threshold``, then zero it), in the same order: round by round, keypoints
    ascending. Needs threshold >= 0, so that zeroed cells are never kept.
    """
    if threshold < 0:
        raise ValueError(f"vote threshold must be >= 0, got {threshold}")
    votes, confs = top_votes(vote_px, conf, best_count)
    keep = (confs > threshold) & np.all(np.isfinite(votes), axis=-1)
    kp_index = np.broadcast_to(np.arange(confs.shape[1])[None, :], confs.shape)
    return votes[keep], kp_index[keep]


@dataclass
class PnPResult:
    """Object -> camera pose. When ``valid`` is False, ``reason`` says why; R and t are then NaN unless a
    pose was computed and refused (e.g. behind the camera), in which case they hold that pose."""

    R: np.ndarray = field(default_factory=lambda: np.full((3, 3), np.nan))
    t: np.ndarray = field(default_factory=lambda: np.full(3, np.nan))  # m
    valid: bool = False
    inliers: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # indices into the votes
    vote_count: int = 0
    reproj_error: float = float("nan")  # mean over the inliers, px
    reason: str = ""

    @property
    def inlier_fraction(self) -> float:
        return len(self.inliers) / self.vote_count if self.vote_count else 0.0


def _degeneracy(points3d: np.ndarray, points2d: np.ndarray) -> str | None:
    """Why these correspondences cannot define a pose, or None."""
    distinct = np.unique(points3d, axis=0)
    if len(distinct) < 4:
        return f"votes reach only {len(distinct)} distinct control points (need 4)"
    for name, pts in (("3D control points", points3d), ("2D votes", points2d)):
        sv = np.linalg.svd(pts - pts.mean(axis=0), compute_uv=False)
        if sv[0] <= 0 or sv[1] <= 1e-6 * sv[0]:
            return f"the {name} are collinear"
    return None


def solve_pnp(points3d, points2d, K, *, refine: bool = True, min_points: int = 6) -> PnPResult:
    """EPnP inside RANSAC (100 iterations, 8 px, confidence 0.99), then optional LM refinement on the inliers.

    Never returns a made-up pose: invalid input, a RANSAC failure, fewer than 4 inliers, a pose behind the
    camera or beyond :data:`MAX_DEPTH_M`, or a non-finite result give ``valid=False`` and a reason.
    """
    p3 = np.asarray(points3d, dtype=np.float64).reshape(-1, 3)
    p2 = np.asarray(points2d, dtype=np.float64).reshape(-1, 2)
    K = np.asarray(K, dtype=np.float64)
    n = len(p3)
    result = PnPResult(vote_count=n)
    if len(p2) != n:
        result.reason = f"{n} 3D points but {len(p2)} 2D points"
        return result
    if not (np.all(np.isfinite(p3)) and np.all(np.isfinite(p2)) and np.all(np.isfinite(K))):
        result.reason = "non-finite input"
        return result
    if n < min_points:
        result.reason = f"only {n} votes above the confidence threshold (need {min_points})"
        return result
    degenerate = _degeneracy(p3, p2)
    if degenerate:
        result.reason = degenerate
        return result
    try:
        ok, rvec, tvec, inliers = cv2.solvePnPRansac(
            p3,
            p2,
            K,
            None,
            iterationsCount=RANSAC_ITERATIONS,
            reprojectionError=RANSAC_REPROJECTION_PX,
            confidence=RANSAC_CONFIDENCE,
            flags=cv2.SOLVEPNP_EPNP,
        )
    except cv2.error as exc:
        result.reason = f"OpenCV PnP error: {str(exc).strip().splitlines()[-1]}"
        return result
    if not ok or inliers is None:
        result.reason = "RANSAC found no consistent pose"
        return result
    inliers = inliers.reshape(-1).astype(np.int64)
    result.inliers = inliers
    if len(inliers) < MIN_INLIERS:
        result.reason = f"only {len(inliers)} RANSAC inliers (need {MIN_INLIERS})"
        return result
    if refine:
        try:
            rvec, tvec = cv2.solvePnPRefineLM(p3[inliers], p2[inliers], K, None, rvec.copy(), tvec.copy())
        except cv2.error as exc:
            result.reason = f"OpenCV PnP refinement error: {str(exc).strip().splitlines()[-1]}"
            return result
    R = axis_angle_to_matrix(rvec.reshape(3))
    t = tvec.reshape(3)
    if not (np.all(np.isfinite(R)) and np.all(np.isfinite(t))):
        result.reason = "PnP returned a non-finite pose"
        return result
    result.R, result.t = R, t
    if t[2] <= 0:
        result.reason = f"the pose puts the object behind the camera (t_z = {t[2]:.3g} m)"
        return result
    if t[2] > MAX_DEPTH_M:
        result.reason = (
            f"the pose puts the object implausibly far away (t_z = {t[2]:.3g} m > {MAX_DEPTH_M} m)"
        )
        return result
    proj = (p3[inliers] @ R.T + t) @ K.T
    result.reproj_error = float(np.mean(np.linalg.norm(proj[:, :2] / proj[:, 2:3] - p2[inliers], axis=1)))
    result.valid = True
    return result
