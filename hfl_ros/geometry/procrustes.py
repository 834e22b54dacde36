"""Similarity (Umeyama) alignment, as used by the PA-MPJPE / PA-MPVPE metrics (spec §8)."""

from __future__ import annotations

import numpy as np


def similarity_procrustes(pred, gt) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Align ``pred`` (N, 3) to ``gt`` (N, 3) with the best scale, rotation and translation.

    Returns (aligned, s, R, t) with aligned = s * pred @ R.T + t. R is a proper rotation (the reflection
    that the SVD may give is fixed by flipping the sign of the smallest singular direction).
    """
    X = np.asarray(pred, dtype=np.float64)
    Y = np.asarray(gt, dtype=np.float64)
    if X.shape != Y.shape or X.ndim != 2:
        raise ValueError(f"pred and gt must be (N, D) of the same shape, got {X.shape} and {Y.shape}")
    mu_x, mu_y = X.mean(axis=0), Y.mean(axis=0)
    Xc, Yc = X - mu_x, Y - mu_y
    var_x = float((Xc**2).sum() / len(X))
    cov = Yc.T @ Xc / len(X)
    U, S, Vt = np.linalg.svd(cov)
    D = np.ones(len(S))
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        D[-1] = -1.0
    R = (U * D) @ Vt
    s = float((S * D).sum() / var_x) if var_x > 0 else 1.0
    t = mu_y - s * R @ mu_x
    return s * X @ R.T + t, s, R, t
