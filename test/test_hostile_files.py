"""Hostile and broken files for the node, the labeler and training (issue 14, item 2).

Pickles that try to run code (checkpoints and MANO hand models whose ``__reduce__`` calls os.system, exec or
eval) must be refused without running anything: each payload would create a marker file, and every test
asserts that the marker never appears. Broken files (truncated, foreign, empty, NaN or millimetre object
models, wrongly typed params files, bags with the wrong message types) give one error naming the file and
the problem.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from bag_helpers import IMAGE_TOPIC, frame_specs, write_bag, write_test_assets
from ros_helpers import REPO, module_domain_id

from hfl_ros import cli
from hfl_ros.errors import CheckpointError, HandModelError, ObjectModelError
from hfl_ros.geometry.object_models import ObjectModelLibrary
from hfl_ros.model.checkpoint import load_network
from hfl_ros.model.mano import load_hand_model_file

HERE = Path(__file__).resolve().parent


class Payload:
    """Pickles as a call of ``how`` that would create ``marker`` (never, if the loader is safe)."""

    def __init__(self, how: str, marker: Path) -> None:
        self.how, self.marker = how, str(marker)

    def __reduce__(self):
        write = f"open({self.marker!r}, 'w').write('pwned')"
        if self.how == "os.system":
            return os.system, (f"touch {self.marker}",)
        if self.how == "exec":
            return exec, (write,)
        return eval, (write,)


PAYLOADS = ["os.system", "exec", "eval"]
#: What the refused global is called in the error (os.system pickles as posix.system on Linux).
GLOBAL_NAME = {"os.system": "system", "exec": "exec", "eval": "eval"}


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, str]:
    torch.set_num_threads(1)
    return write_test_assets(tmp_path_factory.mktemp("hostile_assets"))


def _evil_checkpoint(path: Path, how: str, marker: Path, legacy: bool = False) -> Path:
    content = {"format": "hfl_ros", "state_dict": {"w": Payload(how, marker)}}
    if legacy:  # the pre-1.6 torch format: a bare pickle stream
        with path.open("wb") as stream:
            pickle.dump(content, stream, protocol=2)
    else:
        torch.save(content, path)
    return path


def _evil_hand_model(path: Path, how: str, marker: Path, nested: bool) -> Path:
    content = {"f": np.zeros((3, 3), np.int64), "v_template": Payload(how, marker)} if nested \
        else Payload(how, marker)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as stream:
        pickle.dump(content, stream, protocol=2)
    return path


# ------------------------------------------------------------------------------------------------------------
# Checkpoints


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("how", PAYLOADS)
def test_checkpoint_payload_is_refused_and_never_runs(tmp_path, how, legacy):
    marker = tmp_path / "pwned"
    path = _evil_checkpoint(tmp_path / "evil.pt", how, marker, legacy)
    with pytest.raises(CheckpointError) as info:
        load_network(path)
    message = str(info.value)
    assert str(path) in message and GLOBAL_NAME[how] in message and "must not hold" in message
    assert "weights_only=False" not in message and "\n" not in message  # no advice to disable the guard
    assert not marker.exists()


def _truncated(tmp_path: Path, assets: dict[str, str]) -> Path:
    data = Path(assets["checkpoint"]).read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: len(data) // 2])
    return path


def _foreign_zip(tmp_path: Path, assets: dict[str, str]) -> Path:
    path = tmp_path / "foreign.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02garbage")
    return path


def _write(name: str, data: bytes):
    def make(tmp_path: Path, assets: dict[str, str]) -> Path:
        path = tmp_path / name
        path.write_bytes(data)
        return path

    return make


def _saved(obj):
    def make(tmp_path: Path, assets: dict[str, str]) -> Path:
        torch.save(obj, tmp_path / "other.pt")
        return tmp_path / "other.pt"

    return make


BROKEN_CHECKPOINTS = {
    "empty": (_write("empty.pt", b""), "the file is empty"),
    "text": (_write("notes.pt", b"these are my notes\n"), "not a PyTorch checkpoint"),
    "truncated": (_truncated, "not a PyTorch checkpoint, or a truncated one"),
    "foreign_zip": (_foreign_zip, "not a PyTorch checkpoint"),
    "list": (_saved([1, 2, 3]), "holds no state_dict"),
    "foreign_state_dict": (_saved({"conv.weight": torch.zeros(2)}), "does not match the network"),
}


@pytest.mark.parametrize("case", list(BROKEN_CHECKPOINTS))
def test_broken_checkpoint_names_the_file_and_problem(tmp_path, assets, case):
    make, needle = BROKEN_CHECKPOINTS[case]
    path = make(tmp_path, assets)
    with pytest.raises(CheckpointError) as info:
        load_network(path, mano_path=Path(assets["mano_dir"]) / "STANDIN_HAND_RIGHT.pkl")
    assert str(path) in str(info.value) and needle in str(info.value), str(info.value)


def test_training_resume_from_a_payload_checkpoint_never_runs_it(tmp_path):
    from test_data_ho3d import write_standin_mano, write_tiny_ho3d
    from test_train import smoke_config

    from hfl_ros.model.mano import ManoLayer
    from hfl_ros.train.config import config_from_dict
    from hfl_ros.train.trainer import Trainer

    torch.set_num_threads(1)
    mano_dir = write_standin_mano(tmp_path / "mano")
    write_tiny_ho3d(tmp_path / "ho3d", n_train=2, n_eval=0,
                    mano_layer=ManoLayer(mano_dir, side="right", center_idx=0).eval())
    marker = tmp_path / "pwned"
    evil = _evil_checkpoint(tmp_path / "evil_state.pt", "os.system", marker)
    with pytest.raises(CheckpointError) as info:
        Trainer(config_from_dict(smoke_config((tmp_path / "ho3d", mano_dir), tmp_path / "run")), resume=evil)
    assert str(evil) in str(info.value) and "posix.system" in str(info.value)
    assert not marker.exists()


# ------------------------------------------------------------------------------------------------------------
# MANO hand models


@pytest.mark.parametrize("nested", [False, True], ids=["top", "nested"])
@pytest.mark.parametrize("how", PAYLOADS)
def test_hand_model_payload_is_refused_and_never_runs(tmp_path, how, nested):
    marker = tmp_path / "pwned"
    path = _evil_hand_model(tmp_path / "MANO_RIGHT.pkl", how, marker, nested)
    with pytest.raises(HandModelError) as info:
        load_hand_model_file(path)
    assert str(path) in str(info.value) and GLOBAL_NAME[how] in str(info.value)
    assert "refuses" in str(info.value)
    assert not marker.exists()


def test_truncated_hand_model_names_the_file(tmp_path, assets):
    source = Path(assets["mano_dir"]) / "STANDIN_HAND_RIGHT.pkl"
    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(source.read_bytes()[:2000])
    with pytest.raises(HandModelError) as info:
        load_hand_model_file(path)
    assert str(path) in str(info.value)


# ------------------------------------------------------------------------------------------------------------
# Object models


OBJECT_MODELS = {
    "nan_points": (np.r_[np.random.default_rng(0).uniform(-0.05, 0.05, (20, 3)), [[np.nan, 0, 0]]],
                   "non-finite"),
    "no_points": (np.zeros((0, 3)), "only 0 points"),
    "millimetres": (np.random.default_rng(0).uniform(-50.0, 50.0, (20, 3)), "millimetres"),
}


@pytest.mark.parametrize("case", list(OBJECT_MODELS))
def test_broken_object_model_names_the_file(tmp_path, case):
    points, needle = OBJECT_MODELS[case]
    class_dir = tmp_path / "objects" / "7"
    class_dir.mkdir(parents=True)
    np.savetxt(class_dir / "points.xyz", points)
    with pytest.raises(ObjectModelError) as info:
        ObjectModelLibrary(tmp_path / "objects").get("7")
    assert str(class_dir / "points.xyz") in str(info.value) and needle in str(info.value)


# ------------------------------------------------------------------------------------------------------------
# The labeler: payloads, params files and bags


def _label(bag: Path, out: Path, assets: dict[str, str], *extra: str) -> list[str]:
    return ["label", str(bag), "--out", str(out), "--checkpoint", assets["checkpoint"], "--mano-dir",
            assets["mano_dir"], "--object-models-dir", assets["object_models_dir"], "--device", "cpu",
            "--no-progress", *extra]


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory) -> Path:
    return write_bag(tmp_path_factory.mktemp("hostile_bag") / "bag", frame_specs(3), width=160, height=120)


def test_labeler_with_payload_files_fails_cleanly(tmp_path, assets, small_bag, capsys):
    marker = tmp_path / "pwned"
    evil_ckpt = _evil_checkpoint(tmp_path / "evil.pt", "exec", marker)
    code = cli.main(_label(small_bag, tmp_path / "out1", {**assets, "checkpoint": str(evil_ckpt)}))
    err = capsys.readouterr().err
    assert code != 0 and str(evil_ckpt) in err and "exec" in err and "Traceback" not in err
    evil_hand = tmp_path / "hand"
    _evil_hand_model(evil_hand / "STANDIN_HAND_RIGHT.pkl", "os.system", marker, nested=True)
    _evil_hand_model(evil_hand / "STANDIN_HAND_LEFT.pkl", "os.system", marker, nested=True)
    code = cli.main(_label(small_bag, tmp_path / "out2", {**assets, "mano_dir": str(evil_hand)}))
    err = capsys.readouterr().err
    assert code != 0 and str(evil_hand) in err and "system" in err and "Traceback" not in err
    assert not marker.exists()
    assert not (tmp_path / "out1" / "labels.jsonl").exists()


@pytest.mark.parametrize(("value", "param"), [("fast", "hand_score_threshold"), ([1, 2], "sync_slop")])
def test_labeler_params_file_with_wrong_types_names_file_and_parameter(tmp_path, assets, small_bag, capsys,
                                                                        value, param):
    from ros_helpers import write_params_file

    params = write_params_file(tmp_path / "params.yaml", {param: value})
    code = cli.main(_label(small_bag, tmp_path / "out", assets, "--params-file", str(params)))
    err = capsys.readouterr().err
    assert code != 0 and str(params) in err and param in err and "Traceback" not in err, err


def test_bag_with_wrong_message_type_on_the_image_topic(tmp_path, assets, small_bag, capsys):
    """A topic declared sensor_msgs/Image whose messages are std_msgs/String: named, not misread as stamps."""
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer

    from hfl_ros.bag.typestore import typestore

    store = typestore()
    liar = tmp_path / "liar"
    string_type = "std_msgs/msg/String"
    string = store.serialize_cdr(store.types[string_type](data="not an image"), string_type)
    with Reader(small_bag) as reader, Writer(liar, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connections = {}
        for connection, log_time, data in reader.messages():
            if connection.topic not in connections:
                connections[connection.topic] = writer.add_connection(connection.topic, connection.msgtype,
                                                                      typestore=store)
            writer.write(connections[connection.topic], log_time,
                         string if connection.topic == IMAGE_TOPIC else data)
    code = cli.main(_label(liar, tmp_path / "out", assets))
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert f"a message on {IMAGE_TOPIC}" in err and "is not a valid sensor_msgs/msg/Image" in err, err
    assert "out of order" not in err


# ------------------------------------------------------------------------------------------------------------
# The node: a payload checkpoint or hand model is a FATAL start-up error naming the parameter and file


@pytest.mark.slow
@pytest.mark.parametrize("which", ["checkpoint_path", "mano_dir"])
def test_node_refuses_payload_files_at_start_up(tmp_path, assets, which):
    marker = tmp_path / "pwned"
    values = {"checkpoint_path": assets["checkpoint"], "mano_dir": assets["mano_dir"]}
    if which == "checkpoint_path":
        values[which] = str(_evil_checkpoint(tmp_path / "evil.pt", "os.system", marker))
    else:
        for side in ("RIGHT", "LEFT"):
            _evil_hand_model(tmp_path / "hand" / f"STANDIN_HAND_{side}.pkl", "exec", marker, nested=True)
        values[which] = str(tmp_path / "hand")
    env = {**os.environ, "ROS_DOMAIN_ID": str(module_domain_id(__name__)), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    args = [arg for name, value in values.items() for arg in ("-p", f"{name}:={value}")]
    cmd = [sys.executable, "-m", "hfl_ros.nodes.perception_node", "--ros-args", *args, "-p", "device:=cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 2, proc.stderr
    assert f"parameter '{which}': cannot load it" in proc.stderr and values[which] in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not marker.exists()
