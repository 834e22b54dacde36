"""Metric functions against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from hfl_ros.geometry.procrustes import similarity_procrustes
from hfl_ros.geometry.rotations import axis_angle_to_matrix
from hfl_ros.train.metrics import (
    HandMetrics,
    ObjectMetrics,
    add_error,
    adds_error,
    f_score,
    pa_error,
    reprojection_error,
    wrist_aligned,
)

RNG = np.random.default_rng(3)


def test_procrustes_removes_a_known_similarity():
    gt = RNG.normal(0, 0.05, (21, 3))
    R = axis_angle_to_matrix([0.3, -1.1, 0.7])
    s, t = 1.7, np.array([0.2, -0.1, 0.6])
    pred = (gt - t) @ R / s  # gt = s R pred + t
    assert pa_error(pred, gt) == pytest.approx(0.0, abs=1e-12)
    aligned, s_fit, R_fit, t_fit = similarity_procrustes(pred, gt)
    assert s_fit == pytest.approx(s) and np.allclose(R_fit, R) and np.allclose(t_fit, t)
    # A residual no similarity explains stays, and the fit cannot do worse (in squares) than the true one.
    noisy = pred.copy()
    noisy[5] += np.array([0.01, 0.0, 0.0]) / s
    aligned, *_ = similarity_procrustes(noisy, gt)
    assert 0.0 < ((aligned - gt) ** 2).sum() <= 0.01**2 + 1e-15
    assert pa_error(noisy, gt) > 0.0


def test_wrist_aligned_mpjpe_ignores_translation_only():
    gt = RNG.normal(0, 0.05, (21, 3))
    pred = gt + np.array([0.1, 0.2, -0.3])
    np.testing.assert_allclose(wrist_aligned(pred, gt), gt, atol=1e-15)
    metrics = HandMetrics()
    out = metrics.add(pred, gt)
    assert out["mpjpe_wrist_aligned"] == pytest.approx(0.0, abs=1e-12)
    assert out["mpjpe_fitted"] == pytest.approx(np.linalg.norm([0.1, 0.2, -0.3]))
    summary = metrics.summary()
    assert summary["mpjpe_fitted_mm"] == pytest.approx(1000 * np.linalg.norm([0.1, 0.2, -0.3]))
    assert summary["pa_mpvpe_mm"] is None and summary["f_5mm"] is None


def test_f_score_on_constructed_sets():
    gt = np.array([[i * 0.1, 0.0, 0.0] for i in range(10)])
    pred = gt.copy()
    pred[:5, 1] += 0.003  # within 5 mm
    pred[5:, 1] += 0.010  # between 5 and 15 mm
    f5, p5, r5 = f_score(pred, gt, 0.005)
    assert (p5, r5, f5) == pytest.approx((0.5, 0.5, 0.5))
    assert f_score(pred, gt, 0.015) == pytest.approx((1.0, 1.0, 1.0))
    # Precision and recall differ when the prediction covers only part of the GT.
    f, p, r = f_score(gt[:2], gt, 0.001)
    assert (p, r) == pytest.approx((1.0, 0.2)) and f == pytest.approx(2 * 0.2 / 1.2)
    assert f_score(gt + 1.0, gt, 0.005) == (0.0, 0.0, 0.0)


def _symmetric_box() -> np.ndarray:
    axes = [np.linspace(-e / 2, e / 2, 5) for e in (0.06, 0.04, 0.10)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)


def test_add_against_adds_on_a_symmetric_object():
    points = _symmetric_box()  # symmetric under a half turn about z
    R_gt, t_gt = axis_angle_to_matrix([0.2, 0.4, -0.3]), np.array([0.0, 0.05, 0.6])
    R_pred = R_gt @ axis_angle_to_matrix([0.0, 0.0, np.pi])
    # Under the half turn (x, y) -> (-x, -y): ADD is the mean of 2 * |(x, y)|, ADD-S is zero.
    expected_add = np.mean(2 * np.linalg.norm(points[:, :2], axis=1))
    assert add_error(points, R_pred, t_gt, R_gt, t_gt) == pytest.approx(expected_add)
    assert adds_error(points, R_pred, t_gt, R_gt, t_gt) == pytest.approx(0.0, abs=1e-12)
    # A pure translation error is the same for both.
    shift = np.array([0.003, 0.0, 0.004])
    assert add_error(points, R_gt, t_gt + shift, R_gt, t_gt) == pytest.approx(0.005)
    assert adds_error(points, R_gt, t_gt + shift, R_gt, t_gt) <= 0.005 + 1e-12

    K = np.array([[600.0, 0, 320], [0, 600, 240], [0, 0, 1]])
    diameter = float(np.linalg.norm([0.06, 0.04, 0.10]))
    metrics = ObjectMetrics(symmetric_ids=("13",))
    for cid in ("13", "5"):  # the same flipped pose for a symmetric and a non-symmetric class
        metrics.add(cid, points, diameter, R_pred, t_gt, R_gt, t_gt, K)
    metrics.add_missing("5")
    per_class = metrics.per_class()
    assert per_class["13"]["add_01d"] == 1.0 and per_class["13"]["symmetric"]
    assert per_class["5"]["add_01d"] == 0.0 and per_class["5"]["frames"] == 2
    assert per_class["5"]["invalid_poses"] == 1
    assert per_class["5"]["add_mm"] == pytest.approx(1000 * expected_add)
    summary = metrics.summary()
    assert summary["add_01d_class_mean"] == pytest.approx(0.5)
    assert summary["add_01d_frame_mean"] == pytest.approx(1 / 3)


def test_reprojection_error_of_a_lateral_shift():
    points = _symmetric_box()
    K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    R, t = np.eye(3), np.array([0.0, 0.0, 1.0])
    # The points do not all lie at z = 1, so the pixel shift is 500 * dx / z per point.
    dx = 0.004
    expected = np.mean(500 * dx / (points[:, 2] + 1.0))
    assert reprojection_error(points, R, t + np.array([dx, 0, 0]), R, t, K) == pytest.approx(expected)
    metrics = ObjectMetrics()
    metrics.add("1", points, 0.1, R, t + np.array([dx, 0, 0]), R, t, K)  # ~2 px: REP-5 passes
    metrics.add("1", points, 0.1, R, t + np.array([4 * dx, 0, 0]), R, t, K, valid=True)  # ~8 px: fails
    metrics.add("1", points, 0.1, R, t, R, t, K, valid=False)  # exact but flagged invalid: fails
    assert metrics.per_class()["1"]["rep5"] == pytest.approx(1 / 3)
