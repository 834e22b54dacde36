"""hfl-ros label: synthetic bags in every storage format are labeled; bad bags end with one clear error."""

from __future__ import annotations

import contextlib
import json
import struct
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import yaml
from bag_helpers import (
    DETECTIONS_TOPIC,
    IMAGE_TOPIC,
    INFO_TOPIC,
    PERIOD_NS,
    T0_NS,
    FrameSpec,
    frame_specs,
    storage_file,
    write_bag,
    write_test_assets,
)

from hfl_ros import cli
from hfl_ros.bag.errors import (
    CorruptBagError,
    MissingCameraInfoError,
    MissingTopicError,
    OutputError,
    StampOrderError,
    UnsupportedEncodingError,
)
from hfl_ros.bag.frames import cdr_header
from hfl_ros.bag.input_topics import camera_info_sibling
from hfl_ros.bag.label import label_bag
from hfl_ros.bag.label_options import LabelOptions
from hfl_ros.bag.records import ARRAY_NAMES
from hfl_ros.bag.typestore import typestore
from hfl_ros.errors import HflRosError

POSES = "/hfl_perception/hand_object_poses"
OBJECTS = "/hfl_perception/objects"
MARKERS = "/hfl_perception/markers"


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return write_test_assets(tmp_path_factory.mktemp("assets"))


class CountingEstimator:
    """The real Estimator, counting the frames it is given; optionally interrupted at a given call."""

    def __init__(self, inner, interrupt_at_call: int | None = None):
        self.inner = inner
        self.calls = 0
        self.frames = 0
        self.interrupt_at_call = interrupt_at_call
        self.object_models = inner.object_models
        self.hand_faces = inner.hand_faces

    def estimate_batch(self, frames):
        self.calls += 1
        if self.calls == self.interrupt_at_call:
            raise KeyboardInterrupt
        self.frames += len(frames)
        return self.inner.estimate_batch(frames)


@pytest.fixture(scope="module")
def shared_estimator(assets):
    import torch

    from hfl_ros.estimator import Estimator

    torch.set_num_threads(1)
    return Estimator(checkpoint_path=assets["checkpoint"], mano_dir=assets["mano_dir"], device="cpu",
                     object_models=assets["object_models_dir"])


@pytest.fixture
def estimator(shared_estimator):
    return CountingEstimator(shared_estimator)


def _options(bag: Path, out: Path, **kw) -> LabelOptions:
    return LabelOptions(bag=bag, out=out, progress=False, batch_size=kw.pop("batch_size", 3), **kw)


def read_bag(path: Path) -> dict[str, list[tuple[int, object]]]:
    """topic -> [(log time, message)] read with rosbags directly."""
    from rosbags.rosbag2 import Reader

    store = typestore()
    out: dict[str, list[tuple[int, object]]] = defaultdict(list)
    with Reader(path) as reader:
        for connection, log_time, data in reader.messages():
            out[connection.topic].append((log_time, store.deserialize_cdr(data, connection.msgtype)))
    return out


def stamp_of(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def jsonl(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]


def assert_jsonl_matches_npz(out: Path) -> None:
    records = sorted(jsonl(out), key=lambda r: r["stamp_ns"])
    with np.load(out / "labels.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    assert sorted(arrays) == sorted(ARRAY_NAMES)
    assert arrays["frame_stamp_ns"].tolist() == [r["stamp_ns"] for r in records]
    assert arrays["frame_status"].tolist() == [r["status"] for r in records]
    assert arrays["frame_num_pairs"].tolist() == [len(r["pairs"]) for r in records]
    pairs = [(row, p) for row, r in enumerate(records) for p in r["pairs"]]
    assert arrays["pair_frame"].tolist() == [row for row, _ in pairs]
    for k, (_, pair) in enumerate(pairs):
        hand = pair["hand"]
        assert arrays["status"][k] == pair["status_code"]
        assert arrays["hand_side"][k] == (0 if hand["side"] == "right" else 1)
        np.testing.assert_array_equal(arrays["hand_joints"][k], np.array(hand["joints"], dtype=float))
        np.testing.assert_array_equal(arrays["hand_joints_2d"][k], np.array(hand["joints_2d"], dtype=float))
        np.testing.assert_array_equal(arrays["hand_mano_pose"][k], np.array(hand["mano_pose"], dtype=float))
        np.testing.assert_array_equal(arrays["hand_wrist_quaternion"][k], hand["wrist_quaternion"])
        assert arrays["hand_translation_valid"][k] == hand["translation_valid"]
        obj = pair["object"]
        assert arrays["object_present"][k] == (obj is not None)
        if obj is not None:
            assert arrays["object_class_id"][k] == obj["class_id"]
            assert arrays["object_valid"][k] == obj["valid"]
            assert arrays["object_vote_count"][k] == obj["vote_count"]


# ------------------------------------------------------------------------------------------------------------
# Labeling


@pytest.mark.parametrize("storage", ["mcap", "sqlite3", "bare-mcap"])
def test_label_every_storage_format(tmp_path, estimator, storage):
    name = "in.mcap" if storage == "bare-mcap" else "in"
    bag = write_bag(tmp_path / name, frame_specs(4), storage=storage)
    out = tmp_path / "out"
    summary = label_bag(_options(bag, out, copy_inputs=storage == "mcap"), estimator)
    stamps = [T0_NS + i * PERIOD_NS for i in range(4)]

    assert (summary.images, summary.synced_frames, summary.labeled_frames) == (4, 4, 4)
    assert estimator.frames == 4 and estimator.calls == 2  # batches of 3 frames
    assert summary.pairs == 4 and summary.frames_without_detections == 0

    messages = read_bag(out / "bag")
    assert (out / "bag" / "metadata.yaml").is_file()
    poses = messages[POSES]
    assert [t for t, _ in poses] == stamps  # log time = input stamp
    assert [stamp_of(m) for _, m in poses] == stamps  # header copied from the image
    assert all(m.header.frame_id == "camera_color_optical_frame" for _, m in poses)
    assert all(len(m.poses) == 1 and m.poses[0].hand.side == 0 for _, m in poses)  # one right hand per frame
    assert [t for t, _ in messages[OBJECTS]] == stamps
    expected_topics = {POSES, OBJECTS, MARKERS, "/tf"} if summary.pairs_ok else {POSES, OBJECTS}
    copied = {IMAGE_TOPIC, INFO_TOPIC, DETECTIONS_TOPIC} if storage == "mcap" else set()
    assert expected_topics <= set(messages) <= {POSES, OBJECTS, MARKERS, "/tf"} | copied
    if copied:
        assert [stamp_of(m) for _, m in messages[IMAGE_TOPIC]] == stamps

    records = jsonl(out)
    assert [r["stamp_ns"] for r in records] == stamps
    assert [r["frame"] for r in records] == [0, 1, 2, 3]
    assert all(r["status"] == "ok" and r["num_hands"] == 1 and r["num_objects"] == 1 for r in records)
    for record, (_, msg) in zip(records, poses, strict=True):
        np.testing.assert_allclose(np.array(record["pairs"][0]["hand"]["joints"]),
                                   [[p.x, p.y, p.z] for p in msg.poses[0].hand.joints])
        assert record["pairs"][0]["object"]["class_id"] == "3"
    assert_jsonl_matches_npz(out)
    saved = json.loads((out / "summary.json").read_text())
    assert saved["labeled_frames"] == 4 and saved["error"] is None


def test_compressed_images_are_found_and_decoded(tmp_path, estimator):
    bag = write_bag(tmp_path / "in", frame_specs(2), storage="sqlite3", compressed=True)
    summary = label_bag(_options(bag, tmp_path / "out"), estimator)
    assert summary.topics["image"] == IMAGE_TOPIC + "/compressed"  # auto-detected: the only image topic
    assert summary.topics["camera_info"] == INFO_TOPIC
    assert summary.labeled_frames == 2 and estimator.frames == 2 and not summary.frame_failures


def test_output_bag_carries_our_type_definitions(tmp_path, estimator):
    from rosbags.rosbag2 import Reader

    bag = write_bag(tmp_path / "in", frame_specs(1))
    label_bag(_options(bag, tmp_path / "out"), estimator)
    metadata = yaml.safe_load((tmp_path / "out" / "bag" / "metadata.yaml").read_text())
    info = metadata["rosbag2_bagfile_information"]
    assert info["storage_identifier"] == "mcap"
    hashes = {t["topic_metadata"]["type"]: t["topic_metadata"]["type_description_hash"]
              for t in info["topics_with_message_count"]}
    poses_type = "hfl_ros/msg/HandObjectPoseArray"
    assert hashes[poses_type] == typestore().hash_rihs01(poses_type)
    with Reader(tmp_path / "out" / "bag") as reader:
        (connection,) = [c for c in reader.connections if c.topic == POSES]
        # The schema embeds the full definition, so tools without hfl_ros installed can decode it.
        assert "MSG: hfl_ros/HandPose" in connection.msgdef.data
        assert "vision_msgs/Point2D[21] joints_2d" in connection.msgdef.data


def test_sync_slop_from_params_file_and_flag_override(tmp_path, assets, capsys):
    """Detections stamped 4 ms after their image sync only with a slop; CLI flags override the YAML."""
    bag = write_bag(tmp_path / "in", frame_specs(3), storage="mcap", detection_offset_ns=4_000_000)
    params = tmp_path / "node.yaml"
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        "checkpoint_path": assets["checkpoint"], "mano_dir": assets["mano_dir"],
        "object_models_dir": assets["object_models_dir"], "device": "cpu", "sync_slop": 0.01,
        "hand_score_threshold": 0.95, "queue_policy": "all"}}}))
    base = ["label", str(bag), "--params-file", str(params), "--no-progress", "--batch-size", "2"]

    assert cli.main([*base, "--out", str(tmp_path / "a")]) == 0
    first = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert first["synced_frames"] == 3 and first["pairs"] == 0  # hand score 0.9 < 0.95: no hand kept

    flags = ["--hand-score-threshold", "0.5"]
    assert cli.main([*base, "--out", str(tmp_path / "b"), *flags, "--sync-slop", "0"]) == 0
    second = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert second["synced_frames"] == 0 and second["frames_without_detections"] == 3

    assert cli.main([*base, "--out", str(tmp_path / "c"), *flags]) == 0
    third = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert third["synced_frames"] == 3 and third["pairs"] == 3
    printed = capsys.readouterr().out
    assert "frames: 3 images, 3 synced, 3 labeled now" in printed and "frames/s" in printed


def test_params_file_layouts(tmp_path):
    from hfl_ros.bag.label_cli import ParamsFileError, options_from_params, read_params_file

    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({
        "hfl_perception": {"ros__parameters": {"device": "cuda:1", "sync_slop": 0.02, "mano_dir": ""}},
        "/**": {"ros__parameters": {"device": "cpu", "right_hand_labels": ["R"], "queue_policy": "all"}}}))
    params = options_from_params(read_params_file(path))
    # The /** section wins over a node section; empty paths mean "not set"; other node parameters are ignored.
    assert params == {"device": "cpu", "right_hand_labels": ("R",), "sync_slop": 0.02, "mano_dir": ""}
    # Values are checked by the node's own validators, and the file is named.
    for bad, needle in (({"fp16": "yes"}, "parameter 'fp16': expected true or false"),
                        ({"hand_score_threshold": 1.5}, "parameter 'hand_score_threshold': 1.5 is too large"),
                        ({"default_hand_side": "middle"}, "parameter 'default_hand_side': 'middle' is not"),
                        ({"max_batch": 0}, "parameter 'max_batch': 0 is too small")):
        path.write_text(yaml.safe_dump({"/**": {"ros__parameters": bad}}))
        with pytest.raises(ParamsFileError, match=f"^{path}: {needle}"):
            options_from_params(read_params_file(path), path)
    path.write_text("just: text\n")
    with pytest.raises(ParamsFileError, match="ros__parameters"):
        read_params_file(path)


def test_the_node_params_file_is_a_labeler_params_file(tmp_path, caplog):
    from hfl_ros.bag.label_cli import options_from_params, read_params_file
    from hfl_ros.estimator_config import ESTIMATOR_PARAMS

    node_yaml = Path(__file__).resolve().parents[1] / "config" / "perception.yaml"
    params = read_params_file(node_yaml)
    params["qos_overrides"] = {"/camera/color/image_raw": {"subscription": {"reliability": "reliable"}}}
    with caplog.at_level("WARNING"):
        options = options_from_params(params, node_yaml)
    assert caplog.records == []  # node-only parameters and QoS overrides are not "unknown"
    assert {spec.name for spec in ESTIMATOR_PARAMS} <= set(options)
    assert options["hand_labels"] == ("hand",) and options["publish_joint_tf"] is True
    with caplog.at_level("WARNING"):
        options_from_params({**params, "hand_score_treshold": 0.5}, node_yaml)
    assert "hand_score_treshold" in caplog.text


def test_list_topics(tmp_path, capsys):
    bag = write_bag(tmp_path / "in", frame_specs(2), storage="sqlite3", extra_topics=True)
    assert cli.main(["label", str(bag), "--list-topics"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert rows[IMAGE_TOPIC] == ["sensor_msgs/msg/Image", "2"]
    assert rows[DETECTIONS_TOPIC] == ["vision_msgs/msg/Detection2DArray", "2"]
    assert rows["/chatter"] == ["std_msgs/msg/String", "1"]


# ------------------------------------------------------------------------------------------------------------
# Resume


def test_resume_labels_only_the_missing_frames(tmp_path, shared_estimator):
    bag = write_bag(tmp_path / "in", frame_specs(6), storage="mcap")
    out = tmp_path / "out"
    interrupted = CountingEstimator(shared_estimator, interrupt_at_call=2)
    with pytest.raises(KeyboardInterrupt):
        label_bag(_options(bag, out, batch_size=2, copy_inputs=True), interrupted)
    assert len(jsonl(out)) == 2  # the first batch was written, and the outputs are valid
    assert len(read_bag(out / "bag")[POSES]) == 2

    with pytest.raises(OutputError, match="--resume"):
        label_bag(_options(bag, out), CountingEstimator(shared_estimator))

    resumed = CountingEstimator(shared_estimator)
    summary = label_bag(_options(bag, out, batch_size=2, copy_inputs=True, resume=True), resumed)
    assert resumed.frames == 4 and summary.resumed_frames == 2 and summary.labeled_frames == 4
    assert summary.total_labeled_frames == 6
    stamps = [T0_NS + i * PERIOD_NS for i in range(6)]
    assert sorted(r["stamp_ns"] for r in jsonl(out)) == stamps
    messages = read_bag(out / "bag")
    assert [t for t, _ in messages[POSES]] == stamps  # previous labels merged, each frame once
    assert [stamp_of(m) for _, m in messages[IMAGE_TOPIC]] == stamps  # inputs copied once
    assert not (out / ".resume").exists()
    assert_jsonl_matches_npz(out)

    again = CountingEstimator(shared_estimator)
    summary = label_bag(_options(bag, out, resume=True), again)
    assert again.calls == 0 and summary.resumed_frames == 6 and summary.labeled_frames == 0
    assert len(read_bag(out / "bag")[POSES]) == 6


def test_resume_relabels_records_whose_bag_was_lost(tmp_path, estimator):
    bag = write_bag(tmp_path / "in", frame_specs(3), storage="mcap")
    out = tmp_path / "out"
    label_bag(_options(bag, out), estimator)
    import shutil

    shutil.rmtree(out / "bag")  # e.g. deleted, or never finalised by a killed run
    with (out / "labels.jsonl").open("a") as stream:
        stream.write('{"frame": 3, "stamp_ns": 17')  # a line cut by a crash
    summary = label_bag(_options(bag, out, resume=True), estimator)
    assert summary.dropped_previous_records == 4 and summary.labeled_frames == 3
    assert len(jsonl(out)) == 3 and len(read_bag(out / "bag")[POSES]) == 3


# ------------------------------------------------------------------------------------------------------------
# Bad bags


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_truncated_bag_gives_error_and_valid_partial_output(tmp_path, assets, storage, capsys):
    bag = write_bag(tmp_path / "in", frame_specs(12), storage=storage, width=320, height=240)
    data = storage_file(bag)
    with data.open("r+b") as stream:
        stream.truncate(int(data.stat().st_size * 0.6))
    out = tmp_path / "out"
    code = cli.main(["label", str(bag), "--out", str(out), "--checkpoint", assets["checkpoint"],
                     "--mano-dir", assets["mano_dir"], "--object-models-dir", assets["object_models_dir"],
                     "--device", "cpu", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hfl-ros label: error: ")
    assert "truncated or corrupted" in err[0]
    records = jsonl(out)
    poses = read_bag(out / "bag")[POSES]  # finalised: rosbags reads it
    assert 0 < len(records) < 12
    assert [t for t, _ in poses] == [r["stamp_ns"] for r in records]
    assert_jsonl_matches_npz(out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["error_reason"] == CorruptBagError.reason and summary["labeled_frames"] == len(records)


def test_missing_topics(tmp_path, estimator, capsys):
    bag = write_bag(tmp_path / "in", frame_specs(2), drop_topics=[DETECTIONS_TOPIC])
    with pytest.raises(MissingTopicError, match="no detections topic"):
        label_bag(_options(bag, tmp_path / "out"), estimator)
    assert not (tmp_path / "out").exists()
    assert cli.main(["label", str(bag), "--out", str(tmp_path / "out"), "--image-topic", "/nope"]) == 2
    expected = f"image topic /nope is not in the bag; image topics in the bag: {IMAGE_TOPIC}"
    assert expected in capsys.readouterr().err
    assert estimator.calls == 0


def test_image_without_camera_info(tmp_path, estimator):
    specs = frame_specs(4)
    specs[0].with_info = specs[1].with_info = False  # calibration starts with the third frame
    bag = write_bag(tmp_path / "in", specs)
    out = tmp_path / "out"
    with pytest.raises(MissingCameraInfoError, match="2 of 4 frame"):
        label_bag(_options(bag, out), estimator)
    statuses = [r["status"] for r in jsonl(out)]
    assert statuses == ["no_camera_info", "no_camera_info", "ok", "ok"]
    assert estimator.frames == 2
    assert len(read_bag(out / "bag")[POSES]) == 4  # every synced frame has its (empty) array
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_without_camera_info"] == 2 and summary["error_reason"] == "no_camera_info"
    assert_jsonl_matches_npz(out)


def test_camera_info_of_another_resolution_is_a_bad_frame(tmp_path, estimator):
    """As in the node: a K calibrated for 640x480 must not be used on the bag's 200x160 images."""
    bag = write_bag(tmp_path / "in", frame_specs(3), info_size=(640, 480))
    out = tmp_path / "out"
    with contextlib.suppress(HflRosError):
        label_bag(_options(bag, out), estimator)
    records = jsonl(out)
    assert [r["status"] for r in records] == ["bad_camera_info"] * 3
    assert "640x480" in records[0]["error"] and estimator.frames == 0


def test_stamps_out_of_order(tmp_path, estimator):
    stamps = [T0_NS, T0_NS + PERIOD_NS, T0_NS + 3 * PERIOD_NS, T0_NS + 2 * PERIOD_NS, T0_NS + 4 * PERIOD_NS]
    bag = write_bag(tmp_path / "in", [FrameSpec(s) for s in stamps])
    out = tmp_path / "out"
    with pytest.raises(StampOrderError, match="1 image"):
        label_bag(_options(bag, out), estimator)
    labeled = [r["stamp_ns"] for r in jsonl(out)]
    assert labeled == [stamps[0], stamps[1], stamps[2], stamps[4]]
    assert [t for t, _ in read_bag(out / "bag")[POSES]] == labeled


def test_unsupported_encoding(tmp_path, estimator):
    specs = frame_specs(3)
    specs[1].encoding = "16UC1"
    bag = write_bag(tmp_path / "in", specs, width=40, height=30)
    out = tmp_path / "out"
    with pytest.raises(UnsupportedEncodingError, match="16UC1"):
        label_bag(_options(bag, out), estimator)
    assert [r["status"] for r in jsonl(out)] == ["ok", "unsupported_encoding", "ok"]
    assert estimator.frames == 2


# ------------------------------------------------------------------------------------------------------------
# Pieces


def test_reader_handles_missing_metadata_and_unindexed_mcap(tmp_path):
    from hfl_ros.bag.reader import BagReader

    bag = write_bag(tmp_path / "in", frame_specs(3))
    (bag / "metadata.yaml").unlink()  # the storage file is intact: it is read directly
    with BagReader(bag) as reader:
        assert not reader.is_damaged
        assert reader.topics[IMAGE_TOPIC].count == 3
        assert len(list(reader.messages([IMAGE_TOPIC]))) == 3

    # A recorder killed before writing the summary: the data records are complete, the index is missing.
    data = storage_file(bag)
    content = data.read_bytes()
    summary_start = struct.unpack_from("<Q", content, len(content) - 37 + 9)[0]  # from the MCAP footer
    data.write_bytes(content[:summary_start])
    with BagReader(bag) as reader:
        assert reader.is_damaged
        assert reader.topics[DETECTIONS_TOPIC].count == 3
        stamps = []
        with pytest.raises(CorruptBagError, match="every readable message was read"):
            for raw in reader.messages([IMAGE_TOPIC]):
                stamps.append(cdr_header(raw.data)[:2])
        assert [s * 1_000_000_000 + n for s, n in stamps] == [T0_NS + i * PERIOD_NS for i in range(3)]


def test_cdr_header_reads_stamp_and_frame_id():
    from bag_helpers import make_detections

    msg = make_detections(T0_NS + 123)
    data = typestore().serialize_cdr(msg, msg.__msgtype__)
    sec, nanosec, frame_id = cdr_header(data)
    assert (sec, nanosec, frame_id) == (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id)


def test_camera_info_sibling():
    assert camera_info_sibling("/camera/color/image_raw") == "/camera/color/camera_info"
    assert camera_info_sibling("/cam/image_raw/compressed") == "/cam/camera_info"
