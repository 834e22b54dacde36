"""hfl-ros label --smooth: track ids and smoothed poses next to the raw ones, in JSONL, NPZ and the bag."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
from bag_helpers import frame_specs, write_bag

from hfl_ros.bag import records
from hfl_ros.bag.label import label_bag
from hfl_ros.bag.label_options import LabelOptions
from hfl_ros.bag.label_smooth import smooth_records
from hfl_ros.bag.typestore import typestore
from hfl_ros.geometry.rotations import axis_angle_to_matrix, matrix_to_quaternion_xyzw
from hfl_ros.results import HandEstimate, HandObjectResult, ObjectEstimate, Side, Status
from hfl_ros.tracking import SmootherConfig

FPS = 30.0
R0 = axis_angle_to_matrix(np.array([0.2, -0.4, 0.3]))


def _truth(k: int, which: int) -> tuple[np.ndarray, np.ndarray]:
    """Object (which = 0, 1) pose at frame k: a slow translation and turn."""
    t = k / FPS
    translation = np.array([0.1 * t - 0.05 + 0.1 * which, 0.02 * which, 0.5])
    return axis_angle_to_matrix(np.array([0.0, 0.5 * t, 0.0])) @ R0, translation


def _results(k: int, rng: np.random.Generator, n_objects: int = 2) -> list[HandObjectResult]:
    out = []
    for which in range(n_objects):
        R, t = _truth(k, which)
        cx = 100 + 200 * which + (3 * k if which == 0 else -3 * k)  # the two boxes of class "3" cross
        box = np.array([cx - 40, 100, cx + 40, 180], dtype=float)
        joints = t + np.linspace(-0.05, 0.05, 63).reshape(21, 3) + rng.normal(0, 0.005, (21, 3))
        hand = HandEstimate(side=Side.RIGHT if which == 0 else Side.LEFT, box=box - [0, 60, 0, 60],
                            detection_score=0.9, joints3d=joints, wrist_translation=joints[0].copy(),
                            wrist_rotation=R, translation_valid=True, mano_pose=rng.normal(0, 0.2, 48))
        obj = ObjectEstimate(class_id="3", box=box, score=0.8, valid=True, inlier_count=21, vote_count=21,
                             rotation=R @ axis_angle_to_matrix(rng.normal(0, 0.04, 3)),
                             translation=t + rng.normal(0, 0.005, 3))
        out.append(HandObjectResult(Status.OK, hand, obj))
    return out


def _quat_angle(qa, qb) -> float:
    return 2 * np.arccos(min(1.0, abs(float(np.dot(qa, qb)))))


def test_smooth_records_tracks_two_objects_of_one_class_and_lowers_the_error():
    rng = np.random.default_rng(0)
    recs = [records.frame_record(k, 10**18 + round(k * 1e9 / FPS), "cam", num_hands=2, num_objects=2,
                                 results=_results(k, rng)) for k in range(60)]
    raw_copy = json.loads(json.dumps(recs))
    smoothed = smooth_records(recs, SmootherConfig(half_window_s=0.2))
    assert recs == raw_copy  # the input is not modified
    ids = {tuple(p["object"]["track_id"] for p in r["pairs"]) for r in smoothed}
    assert len(ids) == 1 and len(set(next(iter(ids)))) == 2  # two tracks, never swapped
    raw_err, smooth_err, raw_rot, smooth_rot = [], [], [], []
    for k, frame in enumerate(smoothed):
        for which, pair in enumerate(frame["pairs"]):
            R, t = _truth(k, which)
            obj = pair["object"]
            assert obj["position"] == raw_copy[k]["pairs"][which]["object"]["position"]  # raw kept
            raw_err.append(np.linalg.norm(np.array(obj["position"]) - t))
            smooth_err.append(np.linalg.norm(np.array(obj["smoothed"]["position"]) - t))
            q = matrix_to_quaternion_xyzw(R)
            raw_rot.append(_quat_angle(obj["quaternion"], q))
            smooth_rot.append(_quat_angle(obj["smoothed"]["quaternion"], q))
            assert len(pair["hand"]["smoothed"]["joints"]) == 21
    assert np.mean(smooth_err) < 0.7 * np.mean(raw_err)
    assert np.mean(smooth_rot) < 0.7 * np.mean(raw_rot)


class _NoisyEstimator:
    """Stands in for the Estimator: one hand and one object per frame, on a known trajectory plus noise."""

    object_models = None
    hand_faces = None

    def __init__(self):
        self.rng = np.random.default_rng(1)
        self.k = 0

    def estimate_batch(self, frames):
        out = []
        for _ in frames:
            out.append(_results(self.k, self.rng, n_objects=1))
            self.k += 1
        return out


def test_label_smooth_writes_smoothed_poses_next_to_raw_ones(tmp_path):
    bag = write_bag(tmp_path / "in", frame_specs(12), storage="mcap")
    out = tmp_path / "out"
    options = LabelOptions(bag=bag, out=out, progress=False, batch_size=4, publish_mesh=False,
                           smooth=SmootherConfig(half_window_s=0.1))
    summary = label_bag(options, estimator=_NoisyEstimator())
    assert summary.labeled_frames == 12

    lines = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    assert len(lines) == 12
    hands = [r["pairs"][0]["hand"] for r in lines]
    objs = [r["pairs"][0]["object"] for r in lines]
    assert {h["track_id"] for h in hands} == {1} and {o["track_id"] for o in objs} == {2}
    assert all(h["smoothed"] is not None for h in hands) and all(o["smoothed"] is not None for o in objs)
    assert any(h["smoothed"]["joints"] != h["joints"] for h in hands)

    with np.load(out / "labels.npz") as npz:
        assert npz["hand_track_id"].tolist() == [1] * 12 and npz["object_track_id"].tolist() == [2] * 12
        smoothed_positions = [o["smoothed"]["position"] for o in objs]
        np.testing.assert_array_equal(npz["object_smoothed_position"], smoothed_positions)
        np.testing.assert_array_equal(npz["object_position"], [o["position"] for o in objs])

    from rosbags.rosbag2 import Reader

    store = typestore()
    topics = defaultdict(list)
    with Reader(out / "bag") as reader:
        for connection, log_time, data in reader.messages():
            topics[connection.topic].append((log_time, store.deserialize_cdr(data, connection.msgtype)))
    smoothed = sorted(topics["/hfl_perception/smoothed/hand_object_poses"], key=lambda m: m[0])
    raw = sorted(topics["/hfl_perception/hand_object_poses"], key=lambda m: m[0])
    assert [t for t, _ in smoothed] == [t for t, _ in raw] == [r["stamp_ns"] for r in lines]
    for (_, msg), obj, hand in zip(smoothed, objs, hands, strict=True):
        pose = msg.poses[0]
        assert (pose.hand.track_id, pose.object.track_id) == (1, 2)
        position = pose.object.pose.position
        np.testing.assert_allclose([position.x, position.y, position.z], obj["smoothed"]["position"])
        np.testing.assert_allclose([[p.x, p.y, p.z] for p in pose.hand.joints], hand["smoothed"]["joints"])


def test_smooth_flags_reach_the_options(tmp_path, capsys):
    import argparse

    from hfl_ros.bag import label_cli

    parser = argparse.ArgumentParser()
    label_cli.add_arguments(parser)
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"not read here")
    base = [str(tmp_path), "--out", str(tmp_path / "o"), "--checkpoint", str(checkpoint)]
    assert label_cli.options_from_args(parser.parse_args(base)).smooth is None
    args = parser.parse_args([*base, "--smooth", "--smooth-window", "0.4"])
    assert label_cli.options_from_args(args).smooth == SmootherConfig(half_window_s=0.4)
    bad = parser.parse_args([*base, "--smooth", "--smooth-window", "0"])
    assert label_cli.run(bad) == 2
    assert "--smooth-window must be > 0" in capsys.readouterr().err
