"""The perception node as a ROS 2 lifecycle (managed) node: selected by the launch file's ``managed``
argument, driven through its real lifecycle services (lifecycle_msgs/srv/ChangeState and GetState, what
``ros2 lifecycle set`` and ``get`` call), and stopped by a signal in the middle of ``configure``.

The launch file is resolved with the recording stand-ins of test_launch.py; test_ros2_cli.py runs the
``ros2 lifecycle`` commands of docs/node.md with the real tools.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")

from hfl_ros.msg import HandObjectPoseArray  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from node_harness import (  # noqa: E402
    RosSession,
    process_output,
    publish_hand_frames,
    set_parameters,
    start_process,
)
from rclpy.qos import ReliabilityPolicy  # noqa: E402
from ros_helpers import REPO, make_node_assets, module_domain_id, reliable_inputs, write_params_file  # noqa: E402
from test_launch import load_launch_description, resolve, ros_args  # noqa: E402

HERE = Path(__file__).resolve().parent
NODE = "/hfl_perception"
POSES = f"{NODE}/hand_object_poses"
LOAD_TIMEOUT = 180.0


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, str]:
    import torch

    torch.set_num_threads(1)
    return make_node_assets(tmp_path_factory.mktemp("managed_assets"))


@pytest.fixture
def session():
    session = RosSession(module_domain_id(__name__), "managed_node_test")
    yield session
    session.close()


def _start(command: list[str], log_dir: Path, pauses: str = "") -> subprocess.Popen:
    env = {**os.environ, "ROS_DOMAIN_ID": str(module_domain_id(__name__)), "OMP_NUM_THREADS": "1",
           "PYTHONUNBUFFERED": "1", "HFL_TEST_PAUSES": pauses,
           "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE), os.environ.get("PYTHONPATH", "")])}
    return start_process(command, env, log_dir)


def _launched_managed_node(monkeypatch, tmp_path: Path, assets: dict[str, str]) -> list[str]:
    """The command line launch_ros runs for perception.launch.py with ``managed:=true``."""
    params = write_params_file(tmp_path / "params.yaml", {**assets, "device": "cpu", "num_threads": 1,
                                                           **reliable_inputs()})
    arguments = {"params_file": str(params), "managed": "true"}
    _, (node,) = resolve(load_launch_description(monkeypatch), arguments)
    assert node.arguments == ["--managed", "true"]
    return [str(REPO / "scripts" / node.executable), *node.arguments, *ros_args(node, tmp_path)]


def _state(session: RosSession) -> str:
    return session.call(GetState, f"{NODE}/get_state", GetState.Request(), LOAD_TIMEOUT).current_state.label


def _change(session: RosSession, transition: int) -> bool:
    request = ChangeState.Request(transition=Transition(id=transition))
    return session.call(ChangeState, f"{NODE}/change_state", request, LOAD_TIMEOUT, idempotent=False).success


def _image_subscriptions(session: RosSession) -> list:
    return [i for i in session.node.get_subscriptions_info_by_topic("/image") if i.node_name == NODE[1:]]


def _endpoints(session: RosSession) -> tuple[int, int]:
    """(publishers of the results, subscriptions to the image) of the node."""
    return session.node.count_publishers(POSES), len(_image_subscriptions(session))


def _log(proc: subprocess.Popen) -> str:
    return process_output(proc.log_dir)


def test_lifecycle_transitions_over_the_services(monkeypatch, tmp_path, assets, session):
    proc = _start([sys.executable, *_launched_managed_node(monkeypatch, tmp_path, assets)], tmp_path / "node")
    _, results = session.subscribe(HandObjectPoseArray, POSES)
    try:
        assert _state(session) == "unconfigured"
        assert _endpoints(session) == (0, 0)

        # A bad asset: configure fails, logs why, and the node stays unconfigured (its parameters writable).
        missing = str(tmp_path / "missing.pt")
        assert set_parameters(session, NODE, {"checkpoint_path": missing})[0].successful
        assert not _change(session, Transition.TRANSITION_CONFIGURE)
        assert _state(session) == "unconfigured"
        session.wait_for(lambda: "configure failed, still unconfigured: parameter 'checkpoint_path': file "
                         f"'{missing}' does not exist" in _log(proc), 30.0, "the reason", proc)

        assert set_parameters(session, NODE, {"checkpoint_path": assets["checkpoint_path"]})[0].successful
        assert _change(session, Transition.TRANSITION_CONFIGURE)
        assert _state(session) == "inactive" and _endpoints(session) == (0, 0)  # loaded, not processing
        refused = set_parameters(session, NODE, {"queue_policy": "all"})[0]
        assert not refused.successful and "unconfigured state" in refused.reason

        frame = iter(range(10, 1000))
        for round_ in range(2):  # activate, process, deactivate: twice on one configure
            assert _change(session, Transition.TRANSITION_ACTIVATE) and _state(session) == "active"
            session.wait_for(lambda: _endpoints(session) == (1, 1), 60.0, "the node's topics", proc)
            # The qos_overrides of the params file apply on every activate (best effort without them).
            (image,) = _image_subscriptions(session)
            assert image.qos_profile.reliability == ReliabilityPolicy.RELIABLE
            (stamp,) = publish_hand_frames(session, 1, next(frame))
            session.wait_for(lambda s=stamp: any(m.header.stamp.sec == s for m in results), 60.0,
                             f"the result of round {round_}", proc)
            assert _change(session, Transition.TRANSITION_DEACTIVATE) and _state(session) == "inactive"
            session.wait_for(lambda: _endpoints(session) == (0, 0), 60.0, "the topics to go", proc)
        log = _log(proc)
        assert log.count("configured: device cpu, model loaded") == 1, log  # deactivate kept the model
        assert log.count("inactive: not processing (model kept)") == 2, log

        assert _change(session, Transition.TRANSITION_CLEANUP) and _state(session) == "unconfigured"
        session.wait_for(lambda: "unconfigured: model freed" in _log(proc), 30.0, "the cleanup", proc)
        assert set_parameters(session, NODE, {"queue_policy": "all"})[0].successful  # writable again
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, _log(proc)
        assert time.monotonic() - start < 2.0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = _log(proc)
    assert "Traceback" not in log
    assert re.findall(r"stopped \(SIGTERM\): .*", log) == ["stopped (SIGTERM): in state unconfigured, "
                                                           "2 frame(s) processed"]


def test_signal_during_configure_stops_the_loading(tmp_path, assets, session):
    """configure loads the model on the main thread, so Ctrl-C interrupts it at once (the test double makes
    the loading long and says when it starts)."""
    params = write_params_file(tmp_path / "params.yaml", {**assets, "device": "cpu", "num_threads": 1})
    proc = _start([sys.executable, str(HERE / "stoppable_entry.py"), "node", "--managed", "--ros-args",
                   "--params-file", str(params)], tmp_path / "node", "loading=60")
    client = session.node.create_client(ChangeState, f"{NODE}/change_state")
    try:
        assert client.wait_for_service(timeout_sec=LOAD_TIMEOUT)
        configure = Transition(id=Transition.TRANSITION_CONFIGURE)
        reply = client.call_async(ChangeState.Request(transition=configure))
        session.wait_for(lambda: "PAUSE loading 1" in _log(proc), LOAD_TIMEOUT, "the loading", proc)
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, _log(proc)
        assert time.monotonic() - start < 2.0
    finally:
        session.node.destroy_client(client)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = _log(proc)
    assert "Traceback" not in log and "ready: managed node, unconfigured" in log
    assert "configure interrupted: the node is stopping" in log
    assert re.findall(r"stopped \(SIGINT\).*", log) == ["stopped (SIGINT): in state unconfigured, before the "
                                                        "model was loaded"]
    assert not reply.done() or not reply.result().success
