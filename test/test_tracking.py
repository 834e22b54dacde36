"""hfl_ros.tracking: association, track gaps and reset, the SE(3) filter and gate, the offline smoother."""

from __future__ import annotations

import numpy as np
import pytest

from hfl_ros.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from hfl_ros.results import HandEstimate, HandObjectResult, ObjectEstimate, Side, Status
from hfl_ros.tracking import (
    FilterConfig,
    PoseFilter,
    SmootherConfig,
    Tracker,
    TrackerConfig,
    associate,
    smooth_poses,
)

FPS = 30.0


def _angle(Ra: np.ndarray, Rb: np.ndarray) -> float:
    return float(np.linalg.norm(matrix_to_axis_angle(Ra.T @ Rb)))


def _box(cx: float, cy: float, half: float = 40.0) -> np.ndarray:
    return np.array([cx - half, cy - half, cx + half, cy + half])


def _result(
    hand_box, obj_box=None, class_id="3", side=Side.RIGHT, translation=(0.0, 0.0, 0.5)
) -> HandObjectResult:
    hand = HandEstimate(
        side=side,
        box=np.asarray(hand_box, float),
        detection_score=0.9,
        translation_valid=True,
        wrist_translation=np.asarray(translation, float),
        joints3d=np.tile(translation, (21, 1)),
    )
    obj = None
    if obj_box is not None:
        obj = ObjectEstimate(
            class_id=class_id,
            box=np.asarray(obj_box, float),
            score=0.9,
            valid=True,
            translation=np.asarray(translation, float),
        )
    return HandObjectResult(Status.OK, hand, obj)


def test_associate_keeps_keys_apart_and_maximises_overlap():
    tracks = np.array([_box(100, 100), _box(150, 100), _box(100, 100)])
    dets = np.array([_box(140, 100), _box(105, 100), _box(100, 100)])
    pairs = associate(tracks, ["a", "a", "b"], dets, ["a", "a", "b"], min_iou=0.1)
    # A greedy match would give det 0 (IoU 0.78 with track 1) correctly, but the point is the global optimum:
    assert sorted(pairs) == [(0, 1), (1, 0), (2, 2)]
    assert associate(tracks[:1], ["a"], dets[2:], ["b"]) == []  # other key: never
    assert associate(tracks[:1], ["a"], np.array([_box(300, 300)]), ["a"]) == []  # no overlap: never


def test_associate_tells_coinciding_boxes_apart_by_3d_position():
    boxes = np.array([_box(100, 100), _box(101, 100)])
    near, far = [0.0, 0.0, 0.5], [0.0, 0.0, 0.6]
    # By IoU alone, det 0 goes to track 0; the tracks' positions say it is the far one.
    pairs = associate(boxes, ["a", "a"], boxes, ["a", "a"], track_positions=np.array([near, far]),
                      det_positions=np.array([far, near]))
    assert sorted(pairs) == [(0, 1), (1, 0)]
    unknown = np.full((2, 3), np.nan)  # no positions: IoU decides
    assert sorted(associate(boxes, ["a", "a"], boxes, ["a", "a"], track_positions=unknown,
                            det_positions=np.array([far, near]))) == [(0, 0), (1, 1)]


def test_two_objects_of_one_class_crossing_keep_their_ids():
    tracker = Tracker(TrackerConfig(filter=FilterConfig(mode="none")))
    ids = []
    for k in range(40):  # the boxes cross at k = 20, overlapping fully there
        a, b = _box(100 + 5 * k, 100), _box(300 - 5 * k, 104)
        out = tracker.update([_result(_box(100, 300), a), _result(_box(300, 300), b)], k / FPS)
        ids.append((out[0].object.track_id, out[1].object.track_id))
    assert len(set(ids)) == 1
    assert ids[0][0] != ids[0][1]


def test_gap_shorter_than_max_gap_keeps_the_id_longer_one_drops_it():
    tracker = Tracker(TrackerConfig(max_gap_s=0.2, filter=FilterConfig(mode="none")))
    first = tracker.update([_result(_box(100, 100))], 0.0)[0].hand.track_id
    assert tracker.update([], 0.1) == []
    assert tracker.update([_result(_box(102, 100))], 0.15)[0].hand.track_id == first  # 0.15 s gap
    assert tracker.update([_result(_box(102, 100))], 0.5)[0].hand.track_id != first  # 0.35 s gap
    assert tracker.tracks_dropped == 1
    # Sides never share a track, even with the same box.
    both = tracker.update([_result(_box(102, 100)), _result(_box(102, 100), side=Side.LEFT)], 0.53)
    assert len({r.hand.track_id for r in both}) == 2


def test_reset_clears_tracks_and_restarts_ids():
    tracker = Tracker()
    tracker.update([_result(_box(100, 100), _box(120, 100))], 0.0)
    assert len(tracker.tracks) == 2
    assert tracker.reset() == 2
    assert tracker.tracks == []
    out = tracker.update([_result(_box(300, 300), _box(320, 300))], 0.03)
    assert (out[0].hand.track_id, out[0].object.track_id) == (1, 2)


def _rotating(n: int, omega: np.ndarray, noise: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    R0 = axis_angle_to_matrix(np.array([0.3, -0.2, 0.1]))
    truth = np.array([R0 @ axis_angle_to_matrix(omega * k / FPS) for k in range(n)])
    meas = truth @ axis_angle_to_matrix(rng.normal(0, noise, (n, 3))) if noise else truth.copy()
    return truth, meas


@pytest.mark.parametrize("noise", [0.0, 0.03])
def test_constant_velocity_rotation_is_followed_without_bias(noise):
    omega = np.array([0.0, 1.5, 0.8])  # rad/s, about 0.06 rad per frame
    truth, meas = _rotating(150, omega, noise)
    filt = PoseFilter(FilterConfig(mode="constant_velocity"))
    errors = []
    for k in range(len(truth)):
        _, R, accepted = filt.update(k / FPS, np.zeros((1, 3)), meas[k : k + 1])
        assert accepted
        errors.append(matrix_to_axis_angle(truth[k].T @ R[0]))
    errors = np.array(errors[60:])  # after the start-up transient
    # No lag: the mean error along the motion is ~0 (a lagging filter trails by a multiple of 0.06 rad).
    along = errors @ (omega / np.linalg.norm(omega))
    assert abs(along.mean()) < (1e-5 if noise == 0 else 0.01)
    if noise:
        raw = np.array(
            [np.linalg.norm(matrix_to_axis_angle(t.T @ m)) for t, m in zip(truth, meas, strict=True)]
        )
        assert np.sqrt(np.mean(np.sum(errors**2, -1))) < 0.8 * np.sqrt(np.mean(raw[60:] ** 2))


@pytest.mark.parametrize("mode", ["constant_velocity", "one_euro"])
def test_one_frame_flip_by_180_degrees_is_rejected(mode):
    truth, meas = _rotating(60, np.array([0.5, 0.0, 0.0]))
    flip = axis_angle_to_matrix(np.array([0.0, 0.0, np.pi]))
    meas[30] = meas[30] @ flip  # a symmetric object's PnP flip
    filt = PoseFilter(FilterConfig(mode=mode))
    for k in range(60):
        _, R, accepted = filt.update(k / FPS, np.zeros((1, 3)), meas[k : k + 1])
        assert accepted == (k != 30)
        assert _angle(truth[k], R[0]) < 0.05
    assert filt.rejections == 1


def test_a_lasting_jump_is_accepted_after_the_gate_limit():
    cfg = FilterConfig(mode="one_euro", gate_max_rejections=3)
    filt = PoseFilter(cfg)
    R = np.eye(3)[None]
    for k in range(10):
        filt.update(k / FPS, np.zeros((1, 3)), R)
    moved = np.array([[0.5, 0.0, 0.0]])
    accepted = [filt.update((10 + k) / FPS, moved, R)[2] for k in range(3)]
    assert accepted == [False, False, True]
    np.testing.assert_allclose(filt.update(13 / FPS, moved, R)[0], moved)


def test_hand_filter_keeps_joints_a_linear_function_of_the_vertices():
    rng = np.random.default_rng(1)
    regressor = rng.random((21, 50))
    regressor /= regressor.sum(1, keepdims=True)
    tracker = Tracker(TrackerConfig(filter=FilterConfig(mode="one_euro")))
    for k in range(20):
        verts = rng.normal(0, 0.05, (50, 3)) + np.array([0.01 * k, 0, 0.5])
        r = _result(_box(100 + k, 100))
        r.hand.verts3d, r.hand.joints3d = verts, regressor @ verts
        r.hand.wrist_translation = r.hand.joints3d[0].copy()
        r.hand.mano_pose = rng.normal(0, 0.3, 48)
        out = tracker.update([r], k / FPS)[0].hand
        np.testing.assert_allclose(out.joints3d, regressor @ out.verts3d, atol=1e-12)
        np.testing.assert_allclose(out.wrist_translation, out.joints3d[0], atol=1e-12)
        if k:
            assert not np.allclose(out.verts3d, verts)  # it did filter


def test_smoother_reduces_error_has_no_lag_and_drops_a_flip():
    rng = np.random.default_rng(2)
    n = 120
    t = np.arange(n) / FPS
    true_p = np.stack([0.05 * np.sin(2 * np.pi * 0.5 * t), 0.02 * t, 0.5 + 0.0 * t], -1)[:, None]
    true_R = np.array([axis_angle_to_matrix([0.0, 0.4 * np.sin(2 * np.pi * 0.4 * s), 0.2]) for s in t])[
        :, None
    ]
    meas_p = true_p + rng.normal(0, 0.004, true_p.shape)
    meas_R = true_R @ axis_angle_to_matrix(rng.normal(0, 0.03, (n, 1, 3)))
    meas_R[60, 0] = meas_R[60, 0] @ axis_angle_to_matrix([np.pi, 0, 0])
    sp, sR = smooth_poses(t, meas_p, meas_R, SmootherConfig(half_window_s=0.2))
    inner = slice(6, n - 6)
    raw_p = np.linalg.norm(meas_p - true_p, axis=-1)[inner].mean()
    assert np.linalg.norm(sp - true_p, axis=-1)[inner].mean() < 0.6 * raw_p
    rot_err = np.array([_angle(a[0], b[0]) for a, b in zip(true_R, sR, strict=True)])
    assert rot_err[55:66].max() < 0.04  # the flip did not leak into its neighbours
    raw_rot = np.array([_angle(a[0], b[0]) for a, b in zip(true_R, meas_R, strict=True)])
    assert np.median(rot_err[inner]) < 0.6 * np.median(raw_rot[inner])
    # Noise-free quadratic motion is reproduced exactly: no lag.
    quad = np.stack([0.3 * t**2, -0.1 * t, 0.5 + 0 * t], -1)[:, None]
    np.testing.assert_allclose(smooth_poses(t, quad, np.zeros((n, 0, 3, 3)))[0], quad, atol=1e-9)


def test_a_non_finite_estimate_is_passed_through_and_does_not_poison_the_track():
    tracker = Tracker()
    for k in range(5):
        tracker.update([_result(_box(100, 100), _box(120, 100))], k / FPS)
    bad = _result(_box(100, 100), _box(120, 100))
    bad.object.translation = np.array([np.nan, 0.0, 0.5])
    out = tracker.update([bad], 5 / FPS)[0]
    assert np.isnan(out.object.translation[0]) and out.object.track_id == 2
    good = tracker.update([_result(_box(100, 100), _box(120, 100))], 6 / FPS)[0]
    np.testing.assert_allclose(good.object.translation, [0.0, 0.0, 0.5], atol=1e-9)


def test_bench_tracking_runs_and_ends_with_one_json_line(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_tracking.py"
    out = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, str(script), "--frames", "90", "--out", str(out)],
                         capture_output=True, text=True, timeout=120, check=True)
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    assert figures == json.loads(out.read_text())
    assert set(figures["sequences"]) == {"sample", "fast", "occlusion", "two_same_class"}
    two = figures["sequences"]["two_same_class"]
    assert two["constant_velocity"]["object_id_switches"] == 0 and two["raw"]["object_id_switches"] == 0
    assert figures["checks"]["two_same_class_no_id_switch"]
