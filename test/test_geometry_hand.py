"""Hand translation fit, similarity Procrustes and rotation helpers.

Measured accuracy of the translation fit (21 joints spread ~4 cm around the wrist at 0.5 m, f = 600 px):
exact 2D joints -> error below 1e-15 m; 1 px Gaussian noise -> median 1.2 mm, almost all of it in depth,
worst of 50 trials 3.5 mm (worst of 1000: 5.6 mm). Asserted: 1e-6 m exact, 1.5 cm with noise.
The robust fit and the hand box are asserted against their failure cases (outlier joints, 2D joints shrunk
towards the box centre or collapsed to it), with scipy's plain least squares as the un-weighted reference.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy.optimize import least_squares
from transforms3d.quaternions import quat2mat

from hfl_ros.geometry.boxes import box_from_points, scale_box
from hfl_ros.geometry.camera import project
from hfl_ros.geometry.hand_translation import (
    BOX_DEPTH_RATIO,
    BOX_FACTOR,
    box_depth_translation,
    fit_hand_translation,
)
from hfl_ros.geometry.procrustes import similarity_procrustes
from hfl_ros.geometry.rotations import (
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    matrix_to_quaternion_xyzw,
    mirror_mano_pose,
    mirror_rotation,
)

K = np.array([[600.0, 0.0, 320.0], [0.0, 610.0, 240.0], [0.0, 0.0, 1.0]])
WRIST = np.array([0.1, 0.05, 0.5])


@pytest.fixture
def joints_rel() -> np.ndarray:
    joints = np.random.default_rng(0).normal(0.0, 0.04, (21, 3))
    joints[0] = 0.0
    return joints


def test_translation_exact(joints_rel):
    t, err, ok = fit_hand_translation(joints_rel, project(joints_rel + WRIST, K), K)
    assert ok
    assert np.linalg.norm(t - WRIST) < 1e-6
    assert err < 1e-6


def test_translation_with_one_pixel_noise(joints_rel):
    rng = np.random.default_rng(1)
    uv = project(joints_rel + WRIST, K)
    errors = []
    for _ in range(50):
        t, err, ok = fit_hand_translation(joints_rel, uv + rng.normal(0, 1.0, uv.shape), K)
        assert ok and 0.3 < err < 3.0
        errors.append(np.linalg.norm(t - WRIST))
    assert max(errors) < 0.015, max(errors)


def test_translation_is_a_minimum_of_the_pixel_error(joints_rel):
    # With large per-joint depth differences the linear (algebraic) solution is not the pixel-error optimum;
    # the refined fit must be: no small move lowers the sum of squared pixel residuals.
    rng = np.random.default_rng(2)
    uv = project(joints_rel * 3 + WRIST, K) + rng.normal(0, 2.0, (21, 2))

    def cost(t):
        return np.sum((project(joints_rel * 3 + t, K) - uv) ** 2)

    t, _, ok = fit_hand_translation(joints_rel * 3, uv, K)
    assert ok
    for delta in np.eye(3) * 1e-5:
        assert cost(t + delta) >= cost(t) - 1e-9 and cost(t - delta) >= cost(t) - 1e-9


def test_translation_weights_ignore_a_joint(joints_rel):
    uv = project(joints_rel + WRIST, K)
    uv[7] += [60.0, -40.0]  # one joint badly off
    weights = np.ones(21)
    weights[7] = 0.0
    t, _, ok = fit_hand_translation(joints_rel, uv, K, weights=weights)
    assert ok and np.linalg.norm(t - WRIST) < 1e-6


@pytest.mark.parametrize("case", ["nan", "one_point", "zero_weights"])
def test_translation_failures(joints_rel, case):
    uv, weights = project(joints_rel + WRIST, K), None
    if case == "nan":
        uv[2, 1] = np.nan
    elif case == "one_point":
        uv[:] = uv[0]
        joints_rel = np.zeros_like(joints_rel)
    elif case == "zero_weights":
        weights = np.zeros(21)
    t, err, ok = fit_hand_translation(joints_rel, uv, K, weights=weights)
    assert not ok
    assert np.all(np.isnan(t)) and np.isnan(err)


def test_translation_refuses_inconsistent_depths(joints_rel):
    # 2D joints of a depth-flipped, very deep hand: the linear solution lies behind the camera and the best
    # pixel fit runs off to infinity (shrinking the hand to a point). Neither may be reported as ok.
    deep = joints_rel * [1, 1, 30]
    uv = project(deep * [1, 1, -1] + [0, 0, 0.3], K)
    t, _, ok = fit_hand_translation(deep, uv, K)
    assert not ok
    assert not (np.min(deep[:, 2] + t[2]) > 0 and t[2] <= 10.0)


def test_procrustes_recovers_a_similarity():
    rng = np.random.default_rng(3)
    pred = rng.normal(0, 0.05, (21, 3))
    R, s, t = axis_angle_to_matrix([0.4, -2.0, 1.1]), 1.37, np.array([0.2, -0.1, 0.7])
    gt = s * pred @ R.T + t
    aligned, s_fit, R_fit, t_fit = similarity_procrustes(pred, gt)
    np.testing.assert_allclose(aligned, gt, atol=1e-12)
    assert s_fit == pytest.approx(s, abs=1e-12)
    np.testing.assert_allclose(R_fit, R, atol=1e-12)
    np.testing.assert_allclose(t_fit, t, atol=1e-12)


def test_procrustes_never_reflects():
    rng = np.random.default_rng(4)
    pred = rng.normal(0, 0.05, (21, 3))
    gt = pred * [-1, 1, 1]  # a mirror image: the best proper rotation cannot match it exactly
    aligned, s, R, _ = similarity_procrustes(pred, gt)
    assert np.linalg.det(R) == pytest.approx(1.0)
    assert s > 0 and np.abs(aligned - gt).max() > 1e-3


def test_axis_angle_round_trip_and_opencv():
    rng = np.random.default_rng(5)
    aa = rng.normal(0, 1.2, (200, 3))
    aa = aa[np.linalg.norm(aa, axis=1) < np.pi - 1e-3]
    R = axis_angle_to_matrix(aa)
    for a, r in zip(aa[:20], R[:20]):
        np.testing.assert_allclose(r, cv2.Rodrigues(a)[0], atol=1e-12)
    np.testing.assert_allclose(matrix_to_axis_angle(R), aa, atol=1e-10)
    # near and at pi the axis is recovered up to sign
    for angle in (np.pi, np.pi - 1e-7):
        axis = np.array([1.0, 2.0, -2.0]) / 3
        back = matrix_to_axis_angle(axis_angle_to_matrix(axis * angle))
        np.testing.assert_allclose(axis_angle_to_matrix(back), axis_angle_to_matrix(axis * angle), atol=1e-9)
    np.testing.assert_allclose(matrix_to_axis_angle(np.eye(3)), 0.0)


def test_quaternion_is_xyzw():
    R = axis_angle_to_matrix([0.0, 0.0, np.pi / 2])
    np.testing.assert_allclose(matrix_to_quaternion_xyzw(R), [0, 0, np.sqrt(0.5), np.sqrt(0.5)], atol=1e-12)
    R2 = axis_angle_to_matrix([0.3, -2.9, 0.4])
    x, y, z, w = matrix_to_quaternion_xyzw(R2)
    assert w >= 0
    np.testing.assert_allclose(quat2mat([w, x, y, z]), R2, atol=1e-12)


def test_mirroring_a_pose_mirrors_its_rotations():
    rng = np.random.default_rng(6)
    pose = rng.normal(0, 0.5, 48)
    mirrored = mirror_mano_pose(pose)
    np.testing.assert_array_equal(mirrored.reshape(16, 3)[:, 0], pose.reshape(16, 3)[:, 0])
    np.testing.assert_array_equal(mirrored.reshape(16, 3)[:, 1:], -pose.reshape(16, 3)[:, 1:])
    rotations = axis_angle_to_matrix(pose.reshape(16, 3))
    np.testing.assert_allclose(axis_angle_to_matrix(mirrored.reshape(16, 3)), mirror_rotation(rotations))
    np.testing.assert_array_equal(mirror_mano_pose(mirrored), pose)


# --- robust fit and the hand box (benchmarks/bench_hand_translation.py measures them on perturbed hands) ----


def _box(joints_cam: np.ndarray, factor: float = BOX_FACTOR) -> np.ndarray:
    """The joints' box grown about its exact centre (box_from_points truncates the centre to whole px)."""
    uv = project(joints_cam, K)
    return scale_box(np.r_[uv.min(axis=0), uv.max(axis=0)], factor)


def _least_squares_translation(joints_rel, uv) -> np.ndarray:
    """The plain pixel least-squares optimum, by scipy: the reference of the un-weighted fit."""
    start = WRIST + np.array([0.0, 0.0, 0.05])
    return least_squares(lambda t: (project(joints_rel + t, K) - uv).ravel(), start).x


def test_box_factor_is_the_training_convention():
    from hfl_ros.data.torch_dataset import HAND_BOX_FACTOR

    assert BOX_FACTOR == HAND_BOX_FACTOR


def test_box_depth_is_exact_for_a_consistent_box(joints_rel):
    t = box_depth_translation(joints_rel, K, _box(joints_rel + WRIST))
    assert np.linalg.norm(t - WRIST) < 1e-9
    # HFL-Net's boxes have their centre truncated to whole pixels: the depth moves by well under a millimetre
    t = box_depth_translation(joints_rel, K, box_from_points(project(joints_rel + WRIST, K), BOX_FACTOR))
    assert np.linalg.norm(t - WRIST) < 1e-3


def test_translation_with_a_consistent_box_is_exact(joints_rel):
    uv = project(joints_rel + WRIST, K)
    t, err, ok = fit_hand_translation(joints_rel, uv, K, hand_box=_box(joints_rel + WRIST))
    assert ok and np.linalg.norm(t - WRIST) < 1e-6 and err < 1e-6


def test_outlier_joints_are_down_weighted(joints_rel):
    # four 2D joints 40-60 px off on a hand of ~50 px RMS spread: least squares moves by centimetres
    uv = project(joints_rel + WRIST, K)
    uv[[3, 8, 12, 17]] += [[50.0, 30.0], [-45.0, 20.0], [40.0, -40.0], [-20.0, -55.0]]
    plain = _least_squares_translation(joints_rel, uv)
    t, _, ok = fit_hand_translation(joints_rel, uv, K)
    assert np.linalg.norm(plain - WRIST) > 0.03  # the outliers matter to an un-weighted fit
    assert ok and np.linalg.norm(t - WRIST) < 0.01, (t - WRIST, plain - WRIST)


def test_box_corrects_2d_joints_shrunk_towards_its_centre(joints_rel):
    # the soft-argmax failure: every 2D joint pulled 40 % of the way to the box centre
    box = _box(joints_rel + WRIST)
    centre = (box[:2] + box[2:]) / 2.0
    uv = 0.6 * project(joints_rel + WRIST, K) + 0.4 * centre
    t_joints, _, ok_joints = fit_hand_translation(joints_rel, uv, K)
    t, _, ok = fit_hand_translation(joints_rel, uv, K, hand_box=box)
    assert ok_joints and t_joints[2] > 1.5 * WRIST[2]  # the 2D joints alone put the hand far too deep
    assert ok and abs(t[2] - WRIST[2]) < 1e-6  # the box's depth, which is exact here
    assert np.linalg.norm(t - WRIST) < 0.01


@pytest.mark.parametrize("box_scale", [1.15, 1 / 1.15])
def test_box_within_the_ratio_leaves_consistent_joints_alone(joints_rel, box_scale):
    uv = project(joints_rel + WRIST, K)
    box = scale_box(_box(joints_rel + WRIST), box_scale)  # a detector box 15 % off the convention
    t, _, ok = fit_hand_translation(joints_rel, uv, K, hand_box=box)
    assert ok and np.linalg.norm(t - WRIST) < 1e-6


def test_box_beyond_the_ratio_gives_the_depth(joints_rel):
    uv = project(joints_rel + WRIST, K)
    box = scale_box(_box(joints_rel + WRIST), 1.5)
    t, _, ok = fit_hand_translation(joints_rel, uv, K, hand_box=box)
    box_t = box_depth_translation(joints_rel, K, box)
    assert ok and t[2] == pytest.approx(box_t[2], abs=1e-12)
    assert box_t[2] < WRIST[2] / BOX_DEPTH_RATIO  # the documented jump to the box's (wrong) depth


def test_collapsed_2d_joints_take_the_box_depth(joints_rel):
    # maximally diffuse heat maps: all 2D joints within a pixel of the box centre; the pixel fit alone runs
    # off towards infinity, with the box the hand is placed at the box's depth around its centre
    box = _box(joints_rel + WRIST)
    centre = (box[:2] + box[2:]) / 2.0
    uv = centre + np.random.default_rng(7).normal(0.0, 0.5, (21, 2))
    _, _, ok_joints = fit_hand_translation(joints_rel, uv, K)
    t, _, ok = fit_hand_translation(joints_rel, uv, K, hand_box=box)
    assert not ok_joints
    assert ok and abs(t[2] - WRIST[2]) < 1e-6 and np.linalg.norm(t - WRIST) < 0.03


@pytest.mark.parametrize("box", [[np.nan, 0, 10, 10], [50.0, 50.0, 50.0, 90.0], [60.0, 60.0, 40.0, 90.0]])
def test_unusable_box_is_ignored(joints_rel, box):
    uv = project(joints_rel + WRIST, K) + np.random.default_rng(8).normal(0.0, 3.0, (21, 2))
    assert box_depth_translation(joints_rel, K, box) is None
    with_box = fit_hand_translation(joints_rel, uv, K, hand_box=box)
    without = fit_hand_translation(joints_rel, uv, K)
    np.testing.assert_array_equal(with_box[0], without[0])
    assert with_box[2] and without[2]


def test_box_depth_needs_extent_across_the_image():
    along_the_ray = np.zeros((21, 3))
    along_the_ray[:, 2] = np.linspace(0.0, 0.1, 21)
    assert box_depth_translation(along_the_ray, K, [100.0, 100.0, 200.0, 200.0]) is None
