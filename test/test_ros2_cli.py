"""The user's own commands, for real: ``ros2 launch``, ``ros2 node``, ``ros2 topic``, ``ros2 param``,
``hfl-ros`` and colcon, with the ROS 2 launch system and command-line tools (``../shared/ros2_tools`` here
and in CI).

The command lines are read from the docs that give them (docs/node.md, README.md) and run as written, each in
a fresh bash that sources the activation file, in a folder holding the files they name (``my_params.yaml``:
test assets of the smallest network with random weights; ``my_demo_bag/``: a synthetic bag of the camera
topics). Their outputs are checked with the ``ros2`` command and with a test-side rclpy session, which also
provides the waits on the ROS graph. Without the tools these tests skip with a reason naming
../shared/ros2_tools.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from ros_helpers import make_node_assets, write_params_file
from user_shell import (
    ENV_FILE,
    REPO,
    VENV,
    UserShell,
    find_command,
    make_rviz2_standin,
    markdown_commands,
    require_colcon,
    require_ros2_tools,
    wait_until,
)

from hfl_ros.demo.synthetic_bag import FRAME_ID, PERIOD_NS, T0_NS, frame_specs, write_bag

pytestmark = pytest.mark.slow

NODE = "/hfl_perception"
POSES_TOPIC = f"{NODE}/hand_object_poses"
BAG_B_T0_NS = T0_NS + 100 * 1_000_000_000  # the second bag's header stamps, after the threshold change
#: RViz display class -> message type of its topic.
RVIZ_TYPES = {"rviz_default_plugins/MarkerArray": "visualization_msgs/msg/MarkerArray",
              "rviz_default_plugins/Image": "sensor_msgs/msg/Image"}


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, str]:
    require_ros2_tools()
    return make_node_assets(tmp_path_factory.mktemp("ros2_cli_assets"))


def _user_folder(root: Path, assets: dict[str, str], frames: int, **params) -> Path:
    """A working folder with ``my_params.yaml`` and ``my_demo_bag/`` (``frames`` frames, 200 x 160)."""
    root.mkdir(parents=True, exist_ok=True)
    write_params_file(root / "my_params.yaml", {**assets, "device": "cpu", "num_threads": 1, **params})
    write_bag(root / "my_demo_bag", frame_specs(frames))
    return root


def _stamp_ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def _node_info(text: str) -> dict[str, dict[str, str]]:
    """`ros2 node info` output as {section: {name: type}}."""
    sections: dict[str, dict[str, str]] = {}
    current = None
    for line in text.splitlines():
        if re.match(r"^  \S.*:$", line):
            current = sections.setdefault(line.strip()[:-1], {})
        elif line.startswith("    ") and current is not None:
            name, _, type_name = line.strip().partition(": ")
            current[name] = type_name
    return sections


def _graph_ready(session, proc, what: str, image_topic: str = "/camera/color/image_raw") -> None:
    """Wait until the node publishes its results and subscribes ``image_topic``."""
    def ready() -> bool:
        subscribed = any(i.node_name == "hfl_perception"
                         for i in session.node.get_subscriptions_info_by_topic(image_topic))
        return subscribed and session.node.count_publishers(POSES_TOPIC) > 0

    session.wait_for(ready, 180.0, what, proc)


def _assert_stopped_cleanly(shell: UserShell, launch, executables: list[str]) -> None:
    """After Ctrl-C, `ros2 launch` exited 0 and so did each of its processes (launch itself exits 0 even when
    one of them died)."""
    log = shell.output(launch, tail=200_000)
    assert launch.returncode == 0, log
    assert "process has died" not in log, log
    for exe in executables:
        assert re.search(rf"\[INFO\] \[{exe}-\d+\]: process has finished cleanly", log), (exe, log)


def _check_rviz_layout(recorded_args: list[str], share: Path, publishers: dict[str, str]) -> None:
    """RViz was given the package's layout, and each of its displays shows a topic the node publishes, with
    the type the display expects."""
    assert recorded_args[:1] == ["-d"] and Path(recorded_args[1]) == share / "config" / "hfl.rviz", \
        recorded_args
    layout = yaml.safe_load(Path(recorded_args[1]).read_text())
    displays = layout["Visualization Manager"]["Displays"]
    shown = {}
    for display in displays:
        if display["Class"] in RVIZ_TYPES:
            shown["/" + display["Topic"]["Value"].lstrip("/")] = RVIZ_TYPES[display["Class"]]
        elif display["Class"] == "rviz_default_plugins/TF":
            shown["/tf"] = "tf2_msgs/msg/TFMessage"
    assert set(shown) == {f"{NODE}/markers", f"{NODE}/debug_image", "/tf"}, shown
    for topic, type_name in shown.items():
        assert publishers.get(topic) == type_name, (topic, type_name, publishers)


# ------------------------------------------------------------------------------------------------------------


def test_first_five_minutes_on_a_robot(tmp_path, assets, ros_domain_id):
    """docs/node.md, "First five minutes on a robot": every command, in order, with a bag for the camera."""
    require_ros2_tools()
    from hfl_ros.msg import HandObjectPoseArray
    from node_harness import RosSession

    commands = markdown_commands(REPO / "docs" / "node.md", "First five minutes on a robot")
    launch_cmd = find_command(commands, "ros2 launch hfl_ros perception.launch.py")
    play_cmd = find_command(commands, "hfl-ros play my_demo_bag/")
    node_info_cmd = find_command(commands, "ros2 node info")
    echo_cmd = find_command(commands, "ros2 topic echo --once")
    rviz_cmd = find_command(commands, "ros2 run rviz2 rviz2")
    get_cmd = find_command(commands, "ros2 param get")
    set_cmd = find_command(commands, "ros2 param set")
    assert len(commands) == 7, f"a command of the section is not exercised here: {commands}"
    assert set_cmd.split()[3:5] == get_cmd.split()[3:5] == [NODE, "hand_score_threshold"]
    new_threshold = float(set_cmd.split()[5])
    assert new_threshold > 0.9  # above the bag's hand scores (0.9): the change must show in the outputs

    work = _user_folder(tmp_path / "work", assets, 12, hand_score_threshold=0.5)
    write_bag(work / "bag_b", frame_specs(12, BAG_B_T0_NS))
    standin = make_rviz2_standin(tmp_path / "rviz2_standin")
    shell = UserShell(work, f"source {ENV_FILE}\nexport AMENT_PREFIX_PATH=\"$AMENT_PREFIX_PATH:{standin}\"",
                      {"ROS_DOMAIN_ID": str(ros_domain_id),
                       "RVIZ2_STANDIN_RECORD": str(tmp_path / "rviz2_args.txt")}, tmp_path / "logs")
    session = RosSession(ros_domain_id)
    received: list = []
    try:
        # The first `ros2` command would start the daemon (ros2's graph cache) anyway; starting it before the
        # node lets it watch the node come up, so that every later command sees the same graph.
        shell.check("ros2 daemon start")
        _, received = session.subscribe(HandObjectPoseArray, POSES_TOPIC)
        launch = shell.start(launch_cmd)
        _graph_ready(session, launch, "the launched node")

        # 2. inputs and outputs (the remapped camera topics, the node's results), then one result.
        def info() -> dict:
            # The daemon learns of the node's endpoints one by one ("Unable to find node" at first): wait
            # until it lists as many as the node creates at start-up, then check which.
            result = shell.run(node_info_cmd)
            sections = _node_info(result.stdout) if result.returncode == 0 else {}
            counts = [len(sections.get(k, {})) for k in ("Subscribers", "Publishers", "Service Servers")]
            return sections if counts[0] >= 3 and counts[1] >= 8 and counts[2] >= 6 else {}

        sections = wait_until(info, 60.0, "the node's endpoints in `ros2 node info`")
        assert {"/camera/color/image_raw": "sensor_msgs/msg/Image",
                "/camera/color/camera_info": "sensor_msgs/msg/CameraInfo",
                "/detections": "vision_msgs/msg/Detection2DArray"}.items() <= sections["Subscribers"].items()
        publishers = sections["Publishers"]
        assert {f"{NODE}/hand_object_poses": "hfl_ros/msg/HandObjectPoseArray",
                f"{NODE}/objects": "vision_msgs/msg/Detection3DArray",
                f"{NODE}/markers": "visualization_msgs/msg/MarkerArray",
                "/tf": "tf2_msgs/msg/TFMessage",
                "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray"}.items() <= publishers.items()
        assert f"{NODE}/set_parameters" in sections["Service Servers"]

        echo = shell.start(echo_cmd)
        session.wait_for(lambda: session.node.count_subscribers(POSES_TOPIC) >= 2, 60.0,
                         "`ros2 topic echo` to subscribe", echo)
        # The graph lists the echo's subscription before the node's publisher has matched it; on a loaded
        # machine a whole bag can be answered in that gap, so the user plays it again, as they would.
        for _ in range(3):
            played = shell.check(play_cmd)
            assert "played 36 message(s) from my_demo_bag" in played  # 12 frames x 3 topics
            try:
                echo.wait(timeout=20)
                break
            except subprocess.TimeoutExpired:
                continue
        assert echo.wait(timeout=20) == 0, shell.output(echo)
        echoed = next(yaml.safe_load_all((echo.log_dir / "stdout.txt").read_text()))
        bag_a = {T0_NS + i * PERIOD_NS for i in range(12)}
        assert echoed["header"]["frame_id"] == FRAME_ID
        assert echoed["header"]["stamp"]["sec"] * 10**9 + echoed["header"]["stamp"]["nanosec"] in bag_a
        (pose,) = echoed["poses"]  # the bag's one hand (score 0.9 >= 0.5), paired with its object "3"
        assert pose["hand"]["side"] == 0 and math.isclose(pose["hand"]["detection_score"], 0.9, rel_tol=1e-6)
        assert len(pose["hand"]["joints"]) == 21 and pose["object"]["class_id"] == "3"
        assert pose["status"] in range(7) and isinstance(pose["status_message"], str)

        # 3. RViz (a stand-in recording its arguments): the package's layout, showing what the node publishes.
        shell.check(rviz_cmd)
        _check_rviz_layout((tmp_path / "rviz2_args.txt").read_text().split("\n")[:-1],
                           VENV / "share" / "hfl_ros", publishers)

        # 4. The threshold from my_params.yaml, changed at run time; hands scoring 0.9 are then ignored.
        assert shell.check(get_cmd).strip() == "Double value is: 0.5"
        assert "Set parameter successful" in shell.check(set_cmd)
        assert shell.check(get_cmd).strip() == f"Double value is: {new_threshold}"
        shell.check(play_cmd.replace("my_demo_bag/", "bag_b/"))
        bag_b = {BAG_B_T0_NS + i * PERIOD_NS for i in range(12)}
        session.wait_for(lambda: any(_stamp_ns(m.header.stamp) in bag_b for m in received), 60.0,
                         "a result of the second bag", launch)
        before = [m for m in received if _stamp_ns(m.header.stamp) in bag_a]
        after = [m for m in received if _stamp_ns(m.header.stamp) in bag_b]
        assert before and all(len(m.poses) == 1 for m in before)
        assert after and all(len(m.poses) == 0 for m in after)
        assert len(before) + len(after) == len(received)
    finally:
        session.close()
        shell.close()
    _assert_stopped_cleanly(shell, launch, ["perception_node"])


def test_managed_node_with_ros2_lifecycle(tmp_path, assets, ros_domain_id):
    """docs/node.md, "Managed node": `ros2 launch ... managed:=true`, then every `ros2 lifecycle` command as
    written, in order. The node's state and topics follow each transition; Ctrl-C stops everything cleanly."""
    require_ros2_tools()
    from lifecycle_msgs.srv import GetState
    from node_harness import RosSession

    commands = markdown_commands(REPO / "docs" / "node.md", "Managed node")
    launch_cmd = find_command(commands, "ros2 launch hfl_ros perception.launch.py")
    lifecycle = [c for c in commands if c.startswith("ros2 lifecycle ")]
    assert "managed:=true" in launch_cmd and len(commands) == len(lifecycle) + 1
    assert [c.split()[2:] for c in lifecycle] == [["get", NODE], ["set", NODE, "configure"],
                                                   ["set", NODE, "activate"], ["set", NODE, "deactivate"],
                                                   ["set", NODE, "cleanup"]]
    after = {"configure": "inactive", "activate": "active", "deactivate": "inactive",
             "cleanup": "unconfigured"}
    work = _user_folder(tmp_path / "work", assets, 1)
    shell = UserShell(work, f"source {ENV_FILE}", {"ROS_DOMAIN_ID": str(ros_domain_id)}, tmp_path / "logs")
    session = RosSession(ros_domain_id)

    def state() -> str:
        return session.call(GetState, f"{NODE}/get_state", GetState.Request(), 120.0).current_state.label

    try:
        shell.check("ros2 daemon start")
        launch = shell.start(launch_cmd)
        assert state() == "unconfigured" and session.node.count_publishers(POSES_TOPIC) == 0
        # The daemon may list the node a moment after it answers ("Node not found"): the user asks again.
        got = wait_until(lambda: shell.run(lifecycle[0]).stdout.strip(), 60.0, "`ros2 lifecycle get`")
        assert got == "unconfigured [1]"
        for command in lifecycle[1:]:
            assert "Transitioning successful" in shell.check(command, timeout=300), command
            transition = command.split()[-1]
            assert state() == after[transition], command
            publishing = 1 if transition == "activate" else 0
            session.wait_for(lambda n=publishing: session.node.count_publishers(POSES_TOPIC) == n, 60.0,
                             f"the node's results topic after {transition}", launch)
    finally:
        session.close()
        shell.close()
    _assert_stopped_cleanly(shell, launch, ["perception_node"])
    log = shell.output(launch, tail=200_000)
    assert "stopped (SIGINT): in state unconfigured" in log and "Traceback" not in log, log


def test_replay_launch_end_to_end_matches_offline_labels(tmp_path, assets, ros_domain_id):
    """docs/node.md's `ros2 launch hfl_ros replay.launch.py`: every frame of the bag gives one result on each
    output topic, and the results equal those of the README's `hfl-ros label` for the same bag."""
    require_ros2_tools()
    from hfl_ros.msg import HandObjectPoseArray
    from node_harness import RosSession
    from vision_msgs.msg import Detection3DArray

    replay_cmd = find_command(markdown_commands(REPO / "docs" / "node.md", "Launch file"),
                              "ros2 launch hfl_ros replay.launch.py")
    offline = markdown_commands(REPO / "README.md", "Offline: labeling rosbags, training, evaluation")
    label_cmd = find_command(offline, "hfl-ros label my_demo_bag/")
    frames = 6
    work = _user_folder(tmp_path / "work", assets, frames)
    shell = UserShell(work, f"source {ENV_FILE}", {"ROS_DOMAIN_ID": str(ros_domain_id)}, tmp_path / "logs")
    session = RosSession(ros_domain_id)
    try:
        _, poses = session.subscribe(HandObjectPoseArray, POSES_TOPIC)
        _, objects = session.subscribe(Detection3DArray, f"{NODE}/objects")
        launch = shell.start(replay_cmd)
        session.wait_for(lambda: len(poses) >= frames and len(objects) >= frames, 240.0,
                         f"{frames} results on each output topic", launch)
        shell.stop(launch)
    finally:
        session.close()
        shell.close()
    _assert_stopped_cleanly(shell, launch, ["perception_node", "bag_player"])
    expected = [T0_NS + i * PERIOD_NS for i in range(frames)]
    assert [_stamp_ns(m.header.stamp) for m in poses] == expected  # every frame once, in order
    assert [_stamp_ns(m.header.stamp) for m in objects] == expected

    shell.check(label_cmd, timeout=300)
    records = [json.loads(line) for line in (work / "labels" / "labels.jsonl").read_text().splitlines()]
    assert [r["stamp_ns"] for r in records] == expected
    for record, msg in zip(records, poses, strict=True):
        assert len(record["pairs"]) == len(msg.poses) == 1
        pair, pose = record["pairs"][0], msg.poses[0]
        assert pair["status_code"] == pose.status and pair["hand"]["side"] == "right" and pose.hand.side == 0
        assert pair["object"]["class_id"] == pose.object.class_id == "3"
        live = [[p.x, p.y, p.z] for p in pose.hand.joints]
        np.testing.assert_allclose(pair["hand"]["joints"], live, atol=1e-5, err_msg=str(record["stamp_ns"]))


def test_colcon_workspace_install_launches_the_node(tmp_path, assets, ros_domain_id):
    """README, "Using it on a robot": `colcon build` of the clone in a workspace's src/, then its
    `ros2 launch` (use_rviz:=true, with a stand-in for RViz) starts the node from the workspace's install."""
    require_ros2_tools()
    require_colcon()
    from node_harness import RosSession, get_parameters

    robot = markdown_commands(REPO / "README.md", "Using it on a robot (ROS 2 Humble, Jazzy or Kilted)")
    build_cmd = find_command(robot, "colcon build")
    launch_cmd = find_command(robot, "ros2 launch hfl_ros perception.launch.py")
    assert "source install/setup.bash" in build_cmd and "params_file:=/path/to/perception.yaml" in launch_cmd

    ws = tmp_path / "ws"
    _copy_clone(ws / "src" / "hfl_ros")
    params = write_params_file(tmp_path / "perception.yaml", {**assets, "device": "cpu", "num_threads": 1,
                                                               "tf_prefix": "colcon_"})
    standin = make_rviz2_standin(tmp_path / "rviz2_standin")
    # What /opt/ros/$ROS_DISTRO/setup.bash is on a robot: here the venv with the ROS wheels and ros2_tools,
    # without the source tree on PYTHONPATH or PATH.
    ros_setup = (f"source {VENV}/bin/activate\nexport AMENT_PREFIX_PATH={VENV}:{standin}\n"
                 f"export CMAKE_PREFIX_PATH={VENV}")
    shell = UserShell(ws, ros_setup, {"ROS_DOMAIN_ID": str(ros_domain_id),
                                      "RVIZ2_STANDIN_RECORD": str(tmp_path / "rviz2_args.txt")},
                      tmp_path / "logs")
    session = RosSession(ros_domain_id)
    try:
        assert "Summary: 1 package finished" in shell.check(build_cmd, timeout=600)
        installed = ws / "install" / "hfl_ros"
        where = shell.check("source install/setup.bash && ros2 pkg prefix hfl_ros && command -v hfl-ros && "
                            "python -c 'import hfl_ros.nodes.perception_node as m; print(m.__file__)' && "
                            "hfl-ros --help")
        assert where.splitlines()[:3] == [
            str(installed), str(installed / "bin" / "hfl-ros"),
            str(next(installed.glob("lib/python3*/site-packages/hfl_ros/nodes/perception_node.py")))]
        assert "usage: hfl-ros" in where
        launch = shell.start("source install/setup.bash && "
                             + launch_cmd.replace("/path/to/perception.yaml", str(params)))
        _graph_ready(session, launch, "the node launched from the colcon install")
        assert get_parameters(session, NODE, ["tf_prefix"]) == {"tf_prefix": "colcon_"}
        started = re.findall(r"\[INFO\] \[perception_node-\d+\]: process started with pid \[(\d+)\]",
                             (launch.log_dir / "stdout.txt").read_text())
        assert len(started) == 1, shell.output(launch)
        cmdline = Path(f"/proc/{started[0]}/cmdline").read_bytes().split(b"\0")
        assert str(installed / "lib" / "hfl_ros" / "perception_node").encode() in cmdline, cmdline
        args = wait_until(lambda: (tmp_path / "rviz2_args.txt").exists()
                          and (tmp_path / "rviz2_args.txt").read_text().split("\n")[:-1], 30.0, "RViz")
        assert args[:2] == ["-d", str(installed / "share" / "hfl_ros" / "config" / "hfl.rviz")], args
    finally:
        session.close()
        shell.close()
    _assert_stopped_cleanly(shell, launch, ["perception_node", "rviz2"])


def _copy_clone(dest: Path) -> None:
    """The files a clone of the repository has: tracked ones and new ones git does not ignore (outside a git
    checkout, the folders that make up the package)."""
    import shutil
    import subprocess

    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True)
    if listed.returncode != 0:
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        for name in ("CMakeLists.txt", "package.xml", "msg", "hfl_ros", "scripts", "launch", "config"):
            source = REPO / name
            if source.is_dir():
                shutil.copytree(source, dest / name, ignore=ignore, symlinks=True)
            else:
                dest.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, dest / name)
        return
    for rel in filter(None, listed.stdout.decode().split("\0")):
        source = REPO / rel
        if source.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / rel)
