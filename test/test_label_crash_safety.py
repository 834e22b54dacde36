"""``hfl-ros label`` killed with SIGKILL at several points, then ``--resume`` (issue 14, item 3).

A chain of runs is each killed at a different point (while loading; after a few frames of the first run;
mid-way through a resumed run; while a resumed run finalises its outputs), then a last ``--resume`` finishes.
After every kill the partial outputs must be readable (labels.jsonl parses but for at most one cut line, the
bag opens and reads, labels.npz loads when present); at the end labels.jsonl, labels.npz and the bag must
equal those of an uninterrupted run. Kill points are observed events (records in labels.jsonl, the
``PAUSE`` lines of test/stoppable_entry.py), never fixed sleeps.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bag_helpers import frame_specs, write_bag
from node_harness import process_output, start_process
from ros_helpers import REPO, make_node_assets
from user_shell import wait_until

from hfl_ros import cli
from hfl_ros.bag.reader import BagReader
from hfl_ros.bag.records import read_jsonl

HERE = Path(__file__).resolve().parent
FRAMES = 10
TIMEOUT = 180.0

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, str]:
    import torch

    torch.set_num_threads(1)
    return make_node_assets(tmp_path_factory.mktemp("crash_assets"))


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> Path:
    return write_bag(tmp_path_factory.mktemp("crash_bag") / "bag", frame_specs(FRAMES), width=160, height=120)


def _args(bag: Path, out: Path, assets: dict[str, str], *extra: str) -> list[str]:
    return ["label", str(bag), "--out", str(out), "--checkpoint", assets["checkpoint_path"], "--mano-dir",
            assets["mano_dir"], "--object-models-dir", assets["object_models_dir"], "--device", "cpu",
            "--batch-size", "1", "--copy-inputs", "--no-progress", *extra]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, bag, assets) -> Path:
    """An uninterrupted run."""
    out = tmp_path_factory.mktemp("crash_reference") / "out"
    assert cli.main(_args(bag, out, assets)) == 0
    return out


def _start(args: list[str], log_dir: Path, pauses: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "HFL_TEST_PAUSES": pauses,
           "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE), os.environ.get("PYTHONPATH", "")])}
    return start_process([sys.executable, str(HERE / "stoppable_entry.py"), "hfl-ros", *args], env, log_dir)


def _kill_when(proc: subprocess.Popen, condition, what: str) -> None:
    """SIGKILL ``proc`` as soon as ``condition()`` holds (it must still be running then)."""
    try:
        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"exited with {proc.returncode} before {what}\n"
                                     + process_output(proc.log_dir))
            return bool(condition())

        wait_until(ready, TIMEOUT, what, interval=0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, process_output(proc.log_dir)


def _records(out: Path) -> int:
    return len(read_jsonl(out / "labels.jsonl")[0])


def _paused(proc: subprocess.Popen, moment: str) -> bool:
    return f"PAUSE {moment} 1" in process_output(proc.log_dir)


def bag_messages(path: Path) -> dict[str, list[tuple[int, bytes]]]:
    """topic -> sorted (log time, CDR bytes); raises if the bag cannot be opened."""
    out: dict[str, list[tuple[int, bytes]]] = {}
    with BagReader(path) as reader:
        for raw in reader.messages():
            out.setdefault(raw.topic, []).append((raw.log_time_ns, bytes(raw.data)))
    return {topic: sorted(items) for topic, items in out.items()}


def assert_partial_outputs_readable(out: Path) -> int:
    """The outputs of a killed run can be read; returns the number of complete records."""
    if not out.exists():
        return 0
    jsonl = out / "labels.jsonl"
    records, bad = read_jsonl(jsonl)
    assert bad <= 1, f"{bad} unreadable lines"  # at most the line being written when killed
    if bad:
        assert not jsonl.read_bytes().endswith(b"\n")  # and it is the last one
    if (out / "bag").exists():
        from hfl_ros.bag.errors import CorruptBagError

        # An unfinished file raises CorruptBagError after what was written before the damage was read.
        with contextlib.suppress(CorruptBagError):
            bag_messages(out / "bag")
    if (out / "labels.npz").exists():
        with np.load(out / "labels.npz", allow_pickle=False) as npz:
            assert "frame_stamp_ns" in npz.files
    return len(records)


def assert_same_outputs(out: Path, reference: Path) -> None:
    ours = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    theirs = [json.loads(line) for line in (reference / "labels.jsonl").read_text().splitlines()]
    assert [r["stamp_ns"] for r in ours] == [r["stamp_ns"] for r in theirs]  # each frame once, in order
    assert ours == theirs
    with np.load(out / "labels.npz") as a, np.load(reference / "labels.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert bag_messages(out / "bag") == bag_messages(reference / "bag")
    assert not (out / ".resume").exists()


def test_kill_9_at_four_points_then_resume_equals_an_uninterrupted_run(tmp_path, bag, assets, reference):
    out = tmp_path / "out"
    kills: list[tuple[str, int]] = []

    # 1. While the model loads: nothing may be half-written.
    proc = _start(_args(bag, out, assets), tmp_path / "run1", "loading=60")
    _kill_when(proc, lambda: _paused(proc, "loading"), "the model loading")
    kills.append(("loading", assert_partial_outputs_readable(out)))
    assert kills[-1][1] == 0

    # 2. The first run, after a few frames (mid-forward: frames are slowed down to be caught).
    proc = _start(_args(bag, out, assets, "--resume"), tmp_path / "run2", "forward=0.15")
    _kill_when(proc, lambda: _records(out) >= 3, "three labeled frames")
    kills.append(("first run", assert_partial_outputs_readable(out)))

    # 3. A resumed run, part-way.
    proc = _start(_args(bag, out, assets, "--resume"), tmp_path / "run3", "forward=0.15")
    _kill_when(proc, lambda: _records(out) >= 6, "six labeled frames")
    kills.append(("resumed run", assert_partial_outputs_readable(out)))

    # 4. A resumed run while it finalises (the new bag written under .resume, not yet swapped in).
    proc = _start(_args(bag, out, assets, "--resume"), tmp_path / "run4", "finalise=60")
    _kill_when(proc, lambda: _paused(proc, "finalise"), "the outputs being finalised")
    kills.append(("finalising", assert_partial_outputs_readable(out)))

    final = subprocess.run([sys.executable, "-m", "hfl_ros.cli", *_args(bag, out, assets, "--resume")],
                           env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=REPO, capture_output=True,
                           text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    assert_same_outputs(out, reference)
    counts = [n for _, n in kills]
    assert counts[1] >= 3 and counts[2] >= 6, kills


def test_resume_after_a_kill_between_the_two_renames_of_the_bag_swap(tmp_path, bag, assets, reference):
    """The one moment where DIR/bag is absent: the finished new bag is found under .resume and used."""
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    (out / ".resume").mkdir()
    (out / "bag").rename(out / ".resume" / "previous")
    shutil.copytree(out / ".resume" / "previous", out / ".resume" / "bag")
    from hfl_ros.bag.label_output import ResumeState

    state = ResumeState.load(out, "/hfl_perception/hand_object_poses")
    assert len(state.done) == FRAMES and state.dropped_records == 0
    assert (out / "bag").is_dir() and not (out / ".resume" / "previous").exists()
    assert bag_messages(out / "bag") == bag_messages(reference / "bag")


def test_resume_after_a_record_cut_just_before_its_newline(tmp_path, bag, assets, reference):
    """A kill can leave the last record complete but unterminated: the next append must not join it."""
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    jsonl = out / "labels.jsonl"
    jsonl.write_bytes(jsonl.read_bytes().rstrip(b"\n"))
    from hfl_ros.bag.label_output import ResumeState

    ResumeState.load(out, "/hfl_perception/hand_object_poses")
    assert jsonl.read_bytes().endswith(b"\n")
    assert read_jsonl(jsonl) == read_jsonl(reference / "labels.jsonl")
