"""The sample bag (make-sample-bag) and the demo (hfl-ros demo) on a few small frames."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from PIL import Image
from rosbags.rosbag2 import Reader

from hfl_ros.bag.typestore import typestore
from hfl_ros.cli import main
from hfl_ros.demo import run_demo
from hfl_ros.demo.sample_bag import (
    CAMERA_INFO_TOPIC,
    DETECTION_LATENCY_NS,
    DETECTIONS_TOPIC,
    GROUND_TRUTH_TOPIC,
    IMAGE_TOPIC,
    write_sample_bag,
)
from hfl_ros.geometry.boxes import iou

SIZE = (192, 144)
TOPICS = {
    IMAGE_TOPIC: "sensor_msgs/msg/Image",
    CAMERA_INFO_TOPIC: "sensor_msgs/msg/CameraInfo",
    DETECTIONS_TOPIC: "vision_msgs/msg/Detection2DArray",
    GROUND_TRUTH_TOPIC: "hfl_ros/msg/HandObjectPoseArray",
}


def _read(bag) -> dict[str, list[tuple[int, object, bytes]]]:
    """topic -> [(log time, message, raw bytes)] read with rosbags directly."""
    store = typestore()
    out: dict[str, list] = {}
    with Reader(bag) as reader:
        assert {c.topic: c.msgtype for c in reader.connections} == TOPICS
        for connection, log_time, data in reader.messages():
            out.setdefault(connection.topic, []).append(
                (log_time, store.deserialize_cdr(data, connection.msgtype), bytes(data))
            )
    return out


def _stamp(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def _box(bbox) -> np.ndarray:
    c = bbox.center.position
    return np.array(
        [c.x - bbox.size_x / 2, c.y - bbox.size_y / 2, c.x + bbox.size_x / 2, c.y + bbox.size_y / 2]
    )


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    torch.set_num_threads(1)
    return tmp_path_factory.mktemp("assets")


def test_sample_bag_reads_back_and_is_deterministic(assets, tmp_path):
    frames = 4
    write_sample_bag(tmp_path / "a", frames=frames, image_size=SIZE, seed=3, assets_dir=assets)
    content = _read(tmp_path / "a")
    assert {t: len(m) for t, m in content.items()} == dict.fromkeys(TOPICS, frames)

    image_stamps = [_stamp(m) for _, m, _ in content[IMAGE_TOPIC]]
    assert all(b > a for a, b in itertools.pairwise(image_stamps))
    assert np.allclose(np.diff(image_stamps), 1e9 / 15, atol=1)
    for topic in (CAMERA_INFO_TOPIC, GROUND_TRUTH_TOPIC, DETECTIONS_TOPIC):
        assert [_stamp(m) for _, m, _ in content[topic]] == image_stamps
    assert [t for t, _, _ in content[IMAGE_TOPIC]] == image_stamps
    assert [t for t, _, _ in content[DETECTIONS_TOPIC]] == [s + DETECTION_LATENCY_NS for s in image_stamps]

    for (_, image, _), (_, info, _), (_, truth, _), (_, dets, _) in zip(
        *(content[t] for t in (IMAGE_TOPIC, CAMERA_INFO_TOPIC, GROUND_TRUTH_TOPIC, DETECTIONS_TOPIC))
    ):
        assert (image.encoding, image.width, image.height, image.step) == (
            "rgb8",
            SIZE[0],
            SIZE[1],
            3 * SIZE[0],
        )
        assert image.data.size == SIZE[0] * SIZE[1] * 3 and image.data.std() > 5
        K = info.k.reshape(3, 3)
        assert (info.width, info.height) == SIZE and 0.7 * SIZE[0] < K[0, 0] < 1.1 * SIZE[0]
        assert len(truth.poses) == 1
        pose = truth.poses[0]
        assert pose.status == 0 and pose.object.valid and pose.hand.translation_valid
        assert len(pose.hand.joints) == 21 and len(pose.hand.vertices) == 778
        joints = np.array([[p.x, p.y, p.z] for p in pose.hand.joints])
        uvw = joints @ K.T
        joints_2d = np.array([[p.x, p.y] for p in pose.hand.joints_2d])
        assert np.allclose(uvw[:, :2] / uvw[:, 2:], joints_2d, atol=1e-6)
        labels = [d.results[0].hypothesis.class_id for d in dets.detections]
        assert set(labels) <= {"right_hand", pose.object.class_id}
        for det in dets.detections:
            label = det.results[0].hypothesis.class_id
            truth_box = _box(pose.hand.box if label == "right_hand" else pose.object.box)
            assert iou(_box(det.bbox), truth_box) > 0.6
            assert 0.3 <= det.results[0].hypothesis.score < 1.0

    write_sample_bag(tmp_path / "b", frames=frames, image_size=SIZE, seed=3, assets_dir=assets)
    again = _read(tmp_path / "b")
    for topic in TOPICS:
        assert [raw for _, _, raw in again[topic]] == [raw for _, _, raw in content[topic]], topic


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory, assets):
    """A random-weight network of the demo architecture, saved as the demo model is (fp16)."""
    from hfl_ros.data.synthetic import SyntheticScenes
    from hfl_ros.model.checkpoint import save_checkpoint
    from hfl_ros.model.hflnet import HFLNet

    with SyntheticScenes(assets) as scenes:
        hand_dir = scenes.hand_model_dir
    torch.manual_seed(0)
    net = HFLNet.from_config(run_demo.DEMO_NETWORK, mano_path=hand_dir)
    return save_checkpoint(
        tmp_path_factory.mktemp("model") / "random.pt",
        net,
        {"note": "random weights"},
        weights_dtype=torch.float16,
    )


def test_demo_on_three_frames_writes_every_output(random_checkpoint, tmp_path, capsys):
    out = tmp_path / "demo"
    args = [
        "demo",
        "--out",
        str(out),
        "--frames",
        "3",
        "--checkpoint",
        str(random_checkpoint),
        "--size",
        f"{SIZE[0]}x{SIZE[1]}",
        "--no-progress",
    ]
    assert main(args) == 0
    assert "knows only synthetic scenes" in capsys.readouterr().out
    for name in (
        "summary.md",
        "summary.json",
        "picture_sheet.png",
        "overlays.gif",
        "sample_bag/metadata.yaml",
        "labels/labels.jsonl",
        "labels/bag/metadata.yaml",
        "assets/hand_models/STANDIN_HAND_RIGHT.pkl",
    ):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 3
    for key in ("pa_mpjpe_mm", "mpjpe_mm", "add_0.1d", "rep5", "hand_detection_rate", "object_pose_rate"):
        assert key in summary, key
    assert summary["checkpoint"] == str(random_checkpoint)
    assert 0.0 <= summary["hand_detection_rate"] <= 1.0
    assert "synthetic" in (out / "summary.md").read_text()
    assert len((out / "labels/labels.jsonl").read_text().splitlines()) == 3
    with Image.open(out / "overlays.gif") as gif:
        assert gif.n_frames == 3
    with Image.open(out / "picture_sheet.png") as sheet:
        assert sheet.width > 2 * 400 and sheet.height > 3 * 300  # 3 rows of [input | overlay]

    # a second run reuses the sample bag and replaces the previous labels
    bag_file = next((out / "sample_bag").glob("*.mcap"))
    before = bag_file.stat().st_mtime_ns
    assert main(args) == 0
    assert bag_file.stat().st_mtime_ns == before
    assert len((out / "labels/labels.jsonl").read_text().splitlines()) == 3


def test_demo_without_weights_runs_untrained_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(run_demo, "_REPO_ROOT", tmp_path)
    assert run_demo.find_checkpoint(None) is None
    out = tmp_path / "untrained"
    size = f"{SIZE[0]}x{SIZE[1]}"
    assert main(["demo", "--out", str(out), "--frames", "2", "--size", size, "--no-progress"]) == 0
    assert "NO TRAINED DEMO MODEL" in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["untrained"] is True and "untrained network" in summary["note"]
    assert "NO TRAINED DEMO MODEL" in (out / "summary.md").read_text()
    assert (out / "untrained_demo_model.pt").is_file() and (out / "picture_sheet.png").is_file()


def test_demo_with_a_missing_checkpoint_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--out", str(tmp_path / "out"), "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "none.pt does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing is rendered before the checkpoint is found
