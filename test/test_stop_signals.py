"""SIGINT and SIGTERM at any moment: the perception node, ``hfl-ros label``, ``play`` and ``train`` stop
within 2 s (train: once its step and checkpoint are done), without a traceback, with one line saying they
stopped and their outputs closed (issue 16).

The moments are made long and announced by the test double stoppable_entry.py (``PAUSE <moment>`` on stderr)
or observed on the ROS graph and in the logs; every wait has a deadline. Also: start-up failures are one FATAL
line naming the parameter, exit code 2; and the signal handling itself (hfl_ros.stop_signals), in process.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from ros_helpers import REPO, make_node_assets, module_domain_id, reliable_inputs, write_params_file
from user_shell import wait_until

from hfl_ros.nodes.perception_node import MainThreadCalls
from hfl_ros.ros.frame_queue import FrameQueue
from hfl_ros.stop_signals import Interrupted, StopSignals

HERE = Path(__file__).resolve().parent
STOP_LIMIT_S = 2.0  # issue 16: a stop at any moment takes at most this long
#: hfl-ros train first finishes the step in progress and writes its checkpoint (network and optimiser state).
TRAIN_STOP_LIMIT_S = 15.0
START_TIMEOUT = 180.0


# ------------------------------------------------------------------------------------------------------------
# In process


def test_first_signal_raises_and_later_ones_only_count():
    stop = StopSignals()
    previous = signal.getsignal(signal.SIGINT)
    with stop.handling():
        with pytest.raises(Interrupted) as info:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)  # the handler interrupts it at once
        assert (info.value.name, info.value.exit_code) == ("SIGTERM", 143)
        os.kill(os.getpid(), signal.SIGINT)  # a second one (ros2 launch forwards Ctrl-C again): no raise
        time.sleep(0.05)
        assert stop.name == "SIGTERM"
    assert signal.getsignal(signal.SIGINT) is previous and not stop.requested


def test_deferred_signal_is_raised_at_the_next_check():
    stop = StopSignals()
    with stop.handling():
        with stop.deferred():
            os.kill(os.getpid(), signal.SIGINT)
            assert stop.wait(10.0)  # recorded, nothing raised
        with pytest.raises(Interrupted, match="SIGINT"):
            stop.check()


def test_main_thread_calls_run_on_the_main_thread_and_end_with_the_stop():
    stop = StopSignals()
    calls = MainThreadCalls(stop)
    outcome: dict[str, object] = {}
    closed = threading.Event()

    def caller() -> None:
        outcome["result"] = calls.call(lambda: threading.current_thread() is threading.main_thread())
        closed.wait(10.0)
        try:
            calls.call(lambda: None)
        except Interrupted as exc:
            outcome["second"] = exc

    thread = threading.Thread(target=caller)
    thread.start()
    wait_until(lambda: calls.run_pending() or "result" in outcome, 10.0, "the first call", interval=0.01)
    calls.close()  # the process stops: a later call is refused, not left waiting
    closed.set()
    thread.join(10.0)
    assert outcome["result"] is True and isinstance(outcome["second"], Interrupted)


def test_closing_the_queue_can_drop_what_waits():
    queue = FrameQueue("all", maxsize=5)
    for i in range(3):
        queue.put(i)
    assert queue.close(discard=True) == 3
    assert queue.get(timeout=0) is None and queue.closed and not queue.put(4)


# ------------------------------------------------------------------------------------------------------------
# Processes


def _output(proc: subprocess.Popen) -> str:
    return "".join((proc.log_dir / name).read_text(errors="replace") for name in ("stdout.txt", "stderr.txt"))


def _start(cmd: list[str], log_dir: Path, pauses: str = "", **env_extra: str) -> subprocess.Popen:
    from node_harness import start_process

    env = {**os.environ, "ROS_DOMAIN_ID": str(module_domain_id(__name__)), "OMP_NUM_THREADS": "1",
           "PYTHONUNBUFFERED": "1", "HFL_TEST_PAUSES": pauses, **env_extra,
           "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE), os.environ.get("PYTHONPATH", "")])}
    return start_process(cmd, env, log_dir)


def _wait_text(proc: subprocess.Popen, pattern: str, timeout: float = START_TIMEOUT) -> None:
    def seen() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode} before {pattern!r}\n{_output(proc)}")
        return re.search(pattern, _output(proc)) is not None

    wait_until(seen, timeout, repr(pattern), interval=0.02)


def _signal(proc: subprocess.Popen, signum: int) -> tuple[int, float]:
    """Send ``signum``; return the exit code and the seconds until the process had ended."""
    start = time.monotonic()
    proc.send_signal(signum)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        name = signal.Signals(signum).name
        raise AssertionError(f"still running 60 s after {name}\n{_output(proc)}") from None
    return code, time.monotonic() - start


def _assert_stopped(proc: subprocess.Popen, code: int, elapsed: float, signum: int, expected_code: int = 0,
                    line: str = r"stopped \({name}\)", limit_s: float = STOP_LIMIT_S) -> str:
    out = _output(proc)
    name = signal.Signals(signum).name
    assert code == expected_code, out
    assert elapsed < limit_s, f"{name} took {elapsed:.2f} s\n{out}"
    assert "Traceback" not in out, out
    stopped = re.findall(line.format(name=name) + ".*", out)
    assert len(stopped) == 1, out  # one line says it stopped
    return stopped[0]


@pytest.fixture(scope="module")
def node_assets(tmp_path_factory) -> dict[str, str]:
    import torch

    torch.set_num_threads(1)
    return make_node_assets(tmp_path_factory.mktemp("stop_assets"))


@pytest.fixture(scope="module")
def session():
    from node_harness import RosSession

    session = RosSession(module_domain_id(__name__), "stop_signals_test")
    yield session
    session.close()


FRAME_SEC = iter(range(1000, 100000, 100))


def _send_frames(session, count: int) -> list[int]:
    from node_harness import publish_hand_frames

    return publish_hand_frames(session, count, next(FRAME_SEC))


def _node(tmp_path: Path, assets: dict[str, str], pauses: str = "", **params) -> subprocess.Popen:
    values = {**assets, "device": "cpu", "num_threads": 1, **reliable_inputs(), **params}
    params_file = write_params_file(tmp_path / "params.yaml", values)
    return _start([sys.executable, str(HERE / "stoppable_entry.py"), "node", "--ros-args",
                   "--params-file", str(params_file)], tmp_path / "node", pauses)


#: (moment, signal) pairs: each signal at several points of the node's life.
NODE_MOMENTS = [("arguments", signal.SIGTERM), ("loading", signal.SIGINT), ("loading", signal.SIGTERM),
                ("warm-up", signal.SIGINT), ("ready", signal.SIGINT), ("idle", signal.SIGTERM),
                ("inference", signal.SIGTERM), ("queued", signal.SIGINT)]


@pytest.mark.parametrize(("moment", "signum"), NODE_MOMENTS,
                         ids=[f"{m}-{signal.Signals(s).name}" for m, s in NODE_MOMENTS])
def test_perception_node_stops_at_any_moment(tmp_path, node_assets, session, moment, signum):
    from hfl_ros.msg import HandObjectPoseArray

    pauses = {"arguments": "arguments=60", "loading": "loading=60", "warm-up": "forward=60",
              "inference": "forward=0.6", "queued": "forward=0.6"}.get(moment, "")
    params = {"queue_policy": "all", "diagnostics_period": 0.1} if moment == "queued" else {}
    if moment == "ready":
        params["device"] = "auto"  # on a host without a usable GPU: the CPU, with a warning saying why
    # The previous case's node must be gone from the graph: while its subscriptions still count, frames can be
    # published before the new node's readers are matched, and be lost.
    publishers = getattr(session, "frame_publishers", [])
    session.wait_for(lambda: all(p.get_subscription_count() == 0 for p in publishers), 60.0,
                     "the previous node's subscriptions to leave the graph")
    proc = _node(tmp_path, node_assets, pauses, **params)
    try:
        if moment in ("arguments", "loading"):
            _wait_text(proc, f"PAUSE {moment} 1")
        elif moment == "warm-up":
            _wait_text(proc, "PAUSE forward 1")
        else:
            _wait_text(proc, r"\]: ready: device ")
        if moment == "idle":
            sub, results = session.subscribe(HandObjectPoseArray, "/hfl_perception/hand_object_poses")
            session.wait_for(lambda: sub.get_publisher_count() > 0, 60.0, "the node's results topic", proc)
            (stamp,) = _send_frames(session, 1)
            session.wait_for(lambda: any(m.header.stamp.sec == stamp for m in results), 60.0, "a result",
                             proc)
        elif moment == "inference":
            _send_frames(session, 1)
            _wait_text(proc, "PAUSE forward 2", 60.0)  # the warm-up was the first forward
        elif moment == "queued":
            from diagnostic_msgs.msg import DiagnosticArray

            _, diagnostics = session.subscribe(DiagnosticArray, "/diagnostics")
            _send_frames(session, 6)

            def queued() -> bool:
                values = [{kv.key: kv.value for kv in s.values} for m in diagnostics for s in m.status
                          if "hfl_perception" in s.name]
                return any(int(v.get("queue_length", 0)) >= 3 for v in values)

            session.wait_for(queued, 60.0, "frames waiting in the queue", proc)
        code, elapsed = _signal(proc, signum)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    line = _assert_stopped(proc, code, elapsed, signum)
    out = _output(proc)
    assert ("ready:" in out) == (moment not in ("arguments", "loading", "warm-up")), out
    if moment in ("idle", "inference"):
        assert line.endswith("1 frame(s) processed"), line  # the frame in progress was finished
    if moment == "queued":
        dropped = re.search(r"(\d+) queued frame\(s\) dropped", line)
        assert dropped and int(dropped.group(1)) >= 1, line
    if moment == "ready" and "asks for a GPU" not in out:
        from hfl_ros.devices import cuda_unusable_reason

        if cuda_unusable_reason() is not None:
            assert "parameter 'device': auto: running on the CPU because" in out, out


# ------------------------------------------------------------------------------------------------------------
# Start-up failures: one FATAL line naming the parameter, exit code 2, no traceback


def test_unusable_gpu_is_one_fatal_line_naming_device(tmp_path, node_assets):
    params_file = write_params_file(tmp_path / "params.yaml", {**node_assets, "device": "cuda:7"})
    proc = _start([sys.executable, str(REPO / "scripts" / "perception_node"), "--ros-args",
                   "--params-file", str(params_file)], tmp_path / "node")
    assert proc.wait(timeout=120) == 2, _output(proc)
    out = _output(proc)
    assert "Traceback" not in out
    (fatal,) = [line for line in out.splitlines() if "FATAL" in line]
    assert re.search(r"\[FATAL\].*\]: parameter 'device': 'cuda:7' (asks for a GPU but|: there is no GPU 7)",
                     fatal), fatal


@pytest.fixture
def in_process_node(node_assets):
    """Builds a PerceptionNode in this process with parameter overrides (its own rclpy context)."""
    rclpy = pytest.importorskip("rclpy")
    from rclpy.parameter import Parameter

    from hfl_ros.nodes.perception import PerceptionNode

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=module_domain_id(__name__ + "in_process"))
    nodes = []

    def build(**params) -> PerceptionNode:
        values = {**node_assets, "num_threads": 1, **params}
        nodes.append(PerceptionNode(context=context, parameter_overrides=[Parameter(k, value=v)
                                                                          for k, v in values.items()]))
        return nodes[-1]

    yield build
    for node in nodes:
        node.destroy_node()
    rclpy.try_shutdown(context=context)


def _fake_cuda(monkeypatch, *, build: str | None = "12.4", count: int = 1, init_error: str | None = None):
    """Make this process's torch look like a build with ``count`` usable GPUs (or a failing driver)."""
    import torch

    def init() -> None:
        if init_error:
            raise RuntimeError(init_error)

    monkeypatch.setattr(torch.version, "cuda", build)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "init", init)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)


@pytest.mark.parametrize(("case", "params", "name", "needle"), [
    ("absent GPU index", {"device": "cuda:7"}, "device", "there is no GPU 7"),
    ("CPU-only torch", {"device": "cuda"}, "device", "has no CUDA support"),
    ("driver error", {"device": "cuda:0"}, "device", "CUDA cannot start: CUDA driver version is"),
    ("fp16 on the CPU", {"device": "cpu", "fp16": True}, "fp16", "half precision needs a CUDA GPU"),
    ("fp16, auto fell back", {"device": "auto", "fp16": True}, "fp16", "device auto: CUDA cannot start"),
])
def test_device_and_fp16_failures_name_the_parameter(in_process_node, monkeypatch, case, params, name,
                                                     needle):
    from hfl_ros.ros.params import ParameterError

    if case == "CPU-only torch":
        _fake_cuda(monkeypatch, build=None)
    elif case in ("driver error", "fp16, auto fell back"):
        _fake_cuda(monkeypatch, init_error="CUDA driver version is insufficient for CUDA runtime version")
    elif case == "absent GPU index":
        _fake_cuda(monkeypatch, count=2)
    node = in_process_node(**params)
    with pytest.raises(ParameterError) as info:
        node.load()
    assert info.value.name == name and needle in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


def test_unreadable_object_model_names_object_models_dir(in_process_node, tmp_path):
    from hfl_ros.ros.params import ParameterError

    broken = tmp_path / "objects" / "7"
    broken.mkdir(parents=True)
    (broken / "points.xyz").write_text("not\na point cloud\n")
    node = in_process_node(device="cpu", object_models_dir=str(broken.parent))
    with pytest.raises(ParameterError, match=r"^parameter 'object_models_dir': cannot load it: ") as info:
        node.load()
    assert node.estimator is None and "\n" not in str(info.value)


# ------------------------------------------------------------------------------------------------------------
# hfl-ros label (then --resume) and hfl-ros play


@pytest.fixture(scope="module")
def label_bag(tmp_path_factory) -> Path:
    from bag_helpers import frame_specs, write_bag

    return write_bag(tmp_path_factory.mktemp("stop_bag") / "bag", frame_specs(8), width=160, height=120)


def _label_cmd(bag: Path, out: Path, assets: dict[str, str], *extra: str) -> list[str]:
    return ["label", str(bag), "--out", str(out), "--checkpoint", assets["checkpoint_path"], "--mano-dir",
            assets["mano_dir"], "--object-models-dir", assets["object_models_dir"], "--device", "cpu",
            "--batch-size", "1", "--no-progress", *extra]


def _labels(out: Path) -> list[int]:
    return [json.loads(line)["stamp_ns"] for line in (out / "labels.jsonl").read_text().splitlines()]


def _bag_poses(out: Path) -> list[int]:
    from hfl_ros.bag.reader import BagReader

    with BagReader(out / "bag") as reader:  # finalised: opens and reads to the end without error
        return [m.log_time_ns for m in reader.messages(["/hfl_perception/hand_object_poses"])]


def test_label_stopped_mid_run_then_resume_finishes(tmp_path, node_assets, label_bag):
    from bag_helpers import PERIOD_NS, T0_NS

    out = tmp_path / "labels"
    proc = _start([sys.executable, str(HERE / "stoppable_entry.py"), "hfl-ros",
                   *_label_cmd(label_bag, out, node_assets)], tmp_path / "label", "forward=0.4")
    try:
        wait_until(lambda: (out / "labels.jsonl").exists() and len(_labels(out)) >= 2, START_TIMEOUT,
                   "two labeled frames", interval=0.02)
        code, elapsed = _signal(proc, signal.SIGINT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    line = _assert_stopped(proc, code, elapsed, signal.SIGINT, 0, r"hfl-ros label: stopped \({name}\)")
    assert "run the same command with --resume to finish" in line
    done = _labels(out)
    assert 2 <= len(done) < 8 and _bag_poses(out) == done  # closed: every record has its bag message
    assert np.load(out / "labels.npz")["frame_stamp_ns"].tolist() == sorted(done)
    assert json.loads((out / "summary.json").read_text())["error_reason"] == "interrupted"

    resumed = subprocess.run([sys.executable, "-m", "hfl_ros.cli", *_label_cmd(label_bag, out, node_assets),
                              "--resume"], env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=REPO,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    expected = [T0_NS + i * PERIOD_NS for i in range(8)]
    assert sorted(_labels(out)) == expected and sorted(_bag_poses(out)) == expected


def _stop_hfl_ros_at(args: list[str], log_dir: Path, pauses: str, moment: str,
                     signum: int) -> tuple[subprocess.Popen, int, float]:
    """Run ``hfl-ros ARGS`` with ``pauses``; once it prints ``PAUSE <moment>``, send ``signum``. Returns the
    process, its exit code and the seconds it took to end."""
    proc = _start([sys.executable, str(HERE / "stoppable_entry.py"), "hfl-ros", *args], log_dir, pauses)
    try:
        _wait_text(proc, f"PAUSE {moment}")
        code, elapsed = _signal(proc, signum)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc, code, elapsed


def test_label_stopped_while_loading_writes_nothing(tmp_path, node_assets, label_bag):
    out = tmp_path / "labels"
    proc, code, elapsed = _stop_hfl_ros_at(_label_cmd(label_bag, out, node_assets), tmp_path / "label",
                                           "loading=60", "loading 1", signal.SIGTERM)
    line = _assert_stopped(proc, code, elapsed, signal.SIGTERM, 0, r"hfl-ros label: stopped \({name}\)")
    assert "nothing was written" in line
    assert not (out / "labels.jsonl").exists() and not (out / "bag").exists()


@pytest.fixture(scope="module")
def train_config(tmp_path_factory) -> Path:
    import yaml
    from test_data_ho3d import write_standin_mano, write_tiny_ho3d

    from hfl_ros.model.mano import ManoLayer

    base = tmp_path_factory.mktemp("train_stop")
    mano_dir = write_standin_mano(base / "mano")
    write_tiny_ho3d(base / "ho3d", n_train=8, n_eval=0, mano_layer=ManoLayer(mano_dir, side="right").eval())
    config = {"model": {"trunk": "resnet18", "input_size": 64, "imagenet_weights": False,
                        "mano_dir": str(mano_dir)},
              "data": {"kind": "ho3d", "root": str(base / "ho3d"), "workers": 0},
              "augment": {"enabled": False},
              "run": {"batch_size": 2, "device": "cpu", "progress": False, "log_every": 1}}
    path = base / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_train_stopped_mid_run_saves_then_resumes(tmp_path, train_config, signum):
    from hfl_ros.model.checkpoint import read_checkpoint_file

    out = tmp_path / "run"
    cmd = ["train", "--config", str(train_config), "--out", str(out), "--no-progress"]
    proc, code, elapsed = _stop_hfl_ros_at(cmd, tmp_path / "train", "step=0.3", "step 3", signum)  # 3rd step
    line = _assert_stopped(proc, code, elapsed, signum, 0, r"hfl-ros train: stopped \({name}\)",
                           TRAIN_STOP_LIMIT_S)
    checkpoint = out / "checkpoint_last.pt"
    assert f"after step 3; continue with --resume {checkpoint}" in line
    assert read_checkpoint_file(checkpoint)["train_state"]["global_step"] == 3  # the step in progress ended

    resume = ["train", "--resume", str(checkpoint), "--max-steps", "5", "--no-progress"]
    resumed = subprocess.run([sys.executable, "-m", "hfl_ros.cli", *resume], cwd=REPO, capture_output=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"}, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "stopped" not in resumed.stderr
    assert read_checkpoint_file(checkpoint)["train_state"]["global_step"] == 5


def test_train_stopped_while_building_writes_nothing(tmp_path, train_config):
    out = tmp_path / "run"
    cmd = ["train", "--config", str(train_config), "--out", str(out)]
    proc, code, elapsed = _stop_hfl_ros_at(cmd, tmp_path / "train", "building=60", "building 1",
                                           signal.SIGINT)
    _assert_stopped(proc, code, elapsed, signal.SIGINT, 0, r"hfl-ros train: stopped \({name}\) before it")
    assert not (out / "checkpoint_last.pt").exists()


@pytest.mark.parametrize("moment", ["waiting for subscribers", "playing"])
def test_play_stops_at_any_moment(tmp_path, session, moment):
    from bag_helpers import IMAGE_TOPIC, frame_specs, write_bag
    from sensor_msgs.msg import Image

    bag = write_bag(tmp_path / "bag", frame_specs(6), width=32, height=24)
    received: list = []
    topics = []
    if moment == "playing":  # only the image topic, once this test subscribes to it; a frame every 0.67 s
        _, received = session.subscribe(Image, IMAGE_TOPIC)
        topics = ["--topics", IMAGE_TOPIC]
    proc = _start([sys.executable, "-m", "hfl_ros.cli", "play", str(bag), "--rate", "0.05", *topics,
                   "--wait-timeout", "60"], tmp_path / "play")
    signum = signal.SIGINT if moment == "playing" else signal.SIGTERM
    try:
        if moment == "playing":
            session.wait_for(lambda: received, 60.0, "a replayed image", proc)
        else:  # its publishers exist: it waits for subscribers to every topic, which never come
            session.wait_for(lambda: session.node.count_publishers(IMAGE_TOPIC) > 0, 60.0, "the player", proc)
        code, elapsed = _signal(proc, signum)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _assert_stopped(proc, code, elapsed, signum)
    played = int(re.search(r"played (\d+) message\(s\)", _output(proc)).group(1))
    assert (played == 0) if moment != "playing" else (0 < played < 6), _output(proc)
