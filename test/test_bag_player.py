"""hfl-ros play / bag_player: replay into live rclpy subscribers with the original stamps and /clock."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from bag_helpers import DETECTIONS_TOPIC, IMAGE_TOPIC, INFO_TOPIC, PERIOD_NS, T0_NS, frame_specs, write_bag
from ros_wait import spin_until

from hfl_ros.bag.errors import MissingTopicError
from hfl_ros.bag.player import Pacer, PlayOptions, python_message_module, select_topics
from hfl_ros.bag.reader import TopicInfo

REPO = Path(__file__).resolve().parents[1]
NUM_FRAMES = 6


def test_pacer_maps_log_time_to_wall_time_at_rate():
    now = [100.0]
    pacer = Pacer(rate=2.0, now=lambda: now[0])
    assert pacer.log_time_now() is None
    assert pacer.delay(5_000_000_000) == 0.0  # the first message starts the clock
    assert pacer.delay(7_000_000_000) == pytest.approx(1.0)  # 2 s of bag time at rate 2
    now[0] = 100.5
    assert pacer.delay(7_000_000_000) == pytest.approx(0.5)
    assert pacer.log_time_now() == 6_000_000_000
    pacer.restart()
    assert pacer.delay(1) == 0.0


def test_topic_selection_and_type_modules():
    topics = {"/a": TopicInfo("/a", "std_msgs/msg/String", 1), "/clock": TopicInfo("/clock", "x/msg/Y", 1)}
    assert list(select_topics(topics, ())) == ["/a"]  # a recorded /clock is never replayed blindly
    assert list(select_topics(topics, ["/a"])) == ["/a"]
    with pytest.raises(MissingTopicError, match="/b"):
        select_topics(topics, ["/a", "/b"])
    assert python_message_module("vision_msgs/msg/Detection2DArray") == ("vision_msgs.msg",
                                                                           "Detection2DArray")
    with pytest.raises(ValueError):
        PlayOptions(bag=Path("x"), rate=0.0).validate()


class _Recorder:
    """Subscribes to the three input topics and /clock, keeping the header stamps received."""

    def __init__(self, node, topics):
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import CameraInfo, Image
        from vision_msgs.msg import Detection2DArray

        types = {IMAGE_TOPIC: Image, INFO_TOPIC: CameraInfo, DETECTIONS_TOPIC: Detection2DArray}
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.stamps: dict[str, list[int]] = {t: [] for t in topics}
        self.frame_ids: set[str] = set()
        self.image_sizes: set[tuple[int, int]] = set()
        self.clock: list[int] = []
        for topic in topics:
            node.create_subscription(types[topic], topic, lambda msg, t=topic: self._on(t, msg), qos)
        node.create_subscription(Clock, "/clock", lambda m: self.clock.append(
            m.clock.sec * 1_000_000_000 + m.clock.nanosec), 100)

    def _on(self, topic, msg):
        self.stamps[topic].append(msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec)
        self.frame_ids.add(msg.header.frame_id)
        if hasattr(msg, "encoding"):
            self.image_sizes.add((msg.width, msg.height))


def _play(bag: Path, env: dict, topics, command: list[str], extra: list[str]):
    import rclpy

    rclpy.init()
    node = rclpy.create_node("bag_player_test_subscriber")
    recorder = _Recorder(node, topics)
    proc = subprocess.Popen([*command, str(bag), "--wait-timeout", "60", *extra], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        spin_until(node, lambda: all(len(s) == NUM_FRAMES for s in recorder.stamps.values()), 90.0,
                   "all replayed messages")
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        spin_until(node, lambda: len(recorder.clock) > 0, 10.0, "/clock")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        node.destroy_node()
        rclpy.shutdown()
    return recorder, out


def test_replay_into_live_subscriber_keeps_stamps_and_publishes_clock(tmp_path, subprocess_env):
    bag = write_bag(tmp_path / "in", frame_specs(NUM_FRAMES), storage="mcap", width=64, height=48)
    topics = [IMAGE_TOPIC, INFO_TOPIC, DETECTIONS_TOPIC]
    recorder, out = _play(bag, subprocess_env, topics, [sys.executable, "-m", "hfl_ros.cli", "play"],
                          ["--rate", "4", "--wait-for-subscribers", "1"])
    expected = [T0_NS + i * PERIOD_NS for i in range(NUM_FRAMES)]
    for topic in topics:
        assert recorder.stamps[topic] == expected, topic  # original stamps, in order, nothing lost
    assert recorder.frame_ids == {"camera_color_optical_frame"}
    assert recorder.image_sizes == {(64, 48)}
    # /clock follows the recorded time line: within the bag's log times and never backwards.
    assert recorder.clock == sorted(recorder.clock)
    assert recorder.clock[0] >= T0_NS and recorder.clock[-1] <= expected[-1] + 10_000_000
    assert f"played {3 * NUM_FRAMES} message(s)" in out


def test_bag_player_executable_plays_only_selected_topics(tmp_path, subprocess_env):
    bag = write_bag(tmp_path / "in.mcap", frame_specs(NUM_FRAMES), storage="bare-mcap", width=32, height=24)
    executable = [sys.executable, str(REPO / "scripts" / "bag_player")]
    recorder, _ = _play(bag, subprocess_env, [IMAGE_TOPIC], executable,
                        ["--topics", IMAGE_TOPIC, "--ros-args", "-p", "rate:=8.0"])
    assert recorder.stamps[IMAGE_TOPIC] == [T0_NS + i * PERIOD_NS for i in range(NUM_FRAMES)]


def test_play_missing_topic_is_a_one_line_error(tmp_path, subprocess_env):
    bag = write_bag(tmp_path / "in", frame_specs(2), storage="sqlite3", width=16, height=16)
    proc = subprocess.run([sys.executable, "-m", "hfl_ros.cli", "play", str(bag), "--topics", "/missing"],
                          env=subprocess_env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("hfl-ros play: error: topic(s) not in the bag: /missing")


# ------------------------------------------------------------------------------------------------------------
# launch/replay.launch.py, run through a minimal recording stand-in for launch / launch_ros (not on PyPI)


class _StandIn:
    """Records what a launch file declares, then resolves it the way launch / launch_ros would."""

    def __init__(self):
        import types

        names = ("launch", "launch.actions", "launch.substitutions", "launch_ros", "launch_ros.actions")
        self.modules = {name: types.ModuleType(name) for name in names}

        class LaunchDescription:
            def __init__(self, entities):
                self.entities = list(entities)

        class DeclareLaunchArgument:
            def __init__(self, name, default_value=None, description="", **_):
                self.name, self.default_value = name, default_value

        class OpaqueFunction:
            def __init__(self, function, **_):
                self.function = function

        class LaunchConfiguration:
            def __init__(self, name):
                self.name = name

            def perform(self, context):
                return context.launch_configurations[self.name]

        class Node:
            def __init__(self, **kwargs):
                self.kwargs = kwargs

        self.modules["launch"].LaunchDescription = LaunchDescription
        self.modules["launch.actions"].DeclareLaunchArgument = DeclareLaunchArgument
        self.modules["launch.actions"].OpaqueFunction = OpaqueFunction
        self.modules["launch.substitutions"].LaunchConfiguration = LaunchConfiguration
        self.modules["launch_ros.actions"].Node = Node
        self.Declare, self.Opaque, self.Node = DeclareLaunchArgument, OpaqueFunction, Node

    def nodes(self, path: Path, monkeypatch, arguments: dict[str, str]) -> list[dict]:
        import importlib.util
        import types

        for name, module in self.modules.items():
            monkeypatch.setitem(sys.modules, name, module)
        spec = importlib.util.spec_from_file_location("replay_launch", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        description = module.generate_launch_description()
        values = {e.name: e.default_value for e in description.entities if isinstance(e, self.Declare)}
        unknown = set(arguments) - set(values)
        assert not unknown, f"not declared by the launch file: {unknown}"
        values.update(arguments)
        missing = [k for k, v in values.items() if v is None]
        assert not missing, f"launch arguments without a value: {missing}"
        context = types.SimpleNamespace(launch_configurations=values)
        nodes = []
        for entity in description.entities:
            if isinstance(entity, self.Opaque):
                nodes += [n.kwargs for n in entity.function(context)]
            elif isinstance(entity, self.Node):
                nodes.append(entity.kwargs)
        return nodes


def _node_command(node: dict, tmp_path: Path) -> list[str]:
    """How launch_ros starts a node: ``<exe> --ros-args -r __node:=NAME --params-file F ... -r a:=b``."""
    import yaml

    cmd = [sys.executable, str(REPO / "scripts" / node["executable"]), "--ros-args",
           "-r", f"__node:={node['name']}"]
    for k, params in enumerate(node.get("parameters", [])):
        if isinstance(params, dict):
            path = tmp_path / f"{node['name']}_{k}.yaml"
            path.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
            params = str(path)
        cmd += ["--params-file", str(params)]
    for source, target in node.get("remappings", []):
        cmd += ["-r", f"{source}:={target}"]
    return cmd


def _get_parameters(node, target: str, names: list[str]) -> dict:
    from rcl_interfaces.srv import GetParameters
    from rclpy.parameter import parameter_value_to_python

    client = node.create_client(GetParameters, f"{target}/get_parameters")
    assert client.wait_for_service(timeout_sec=60.0), f"{target}/get_parameters not available"
    future = client.call_async(GetParameters.Request(names=names))
    # The node answers only once its Estimator is loaded, which takes long on a loaded machine.
    spin_until(node, future.done, 180.0, f"{target} parameters")
    return {n: parameter_value_to_python(v) for n, v in zip(names, future.result().values, strict=True)}


def test_replay_launch_feeds_every_frame_to_the_perception_node(tmp_path, subprocess_env, monkeypatch):
    """The launch file's two nodes replay a bag into the perception node: one output per recorded frame."""
    import rclpy
    import yaml
    from bag_helpers import write_test_assets
    from hfl_ros.msg import HandObjectPoseArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    assets = write_test_assets(tmp_path / "assets")
    params = tmp_path / "perception.yaml"
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        "checkpoint_path": assets["checkpoint"], "mano_dir": assets["mano_dir"],
        "object_models_dir": assets["object_models_dir"], "device": "cpu", "num_threads": 1}}}))
    bag = write_bag(tmp_path / "in", frame_specs(4), storage="mcap", width=160, height=120)
    nodes = _StandIn().nodes(REPO / "launch" / "replay.launch.py", monkeypatch,
                             {"bag": str(bag), "params_file": str(params), "rate": "2.0",
                              "wait_timeout": "90"})
    by_name = {n["name"]: n for n in nodes}
    assert sorted(by_name) == ["bag_player", "hfl_perception"]
    assert by_name["bag_player"]["parameters"][0]["topics"] == [IMAGE_TOPIC, INFO_TOPIC, DETECTIONS_TOPIC]

    rclpy.init()
    node = rclpy.create_node("replay_launch_test")
    stamps: list[int] = []
    def on_poses(msg):
        stamps.append(msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec)

    node.create_subscription(HandObjectPoseArray, "/hfl_perception/hand_object_poses", on_poses,
                             QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
    logs = {}
    procs = []
    try:
        for name in ("hfl_perception", "bag_player"):
            logs[name] = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - closed below
            procs.append(subprocess.Popen(_node_command(by_name[name], tmp_path), env=subprocess_env,
                                          stdout=logs[name], stderr=subprocess.STDOUT))
        reliable_image = f"qos_overrides.{IMAGE_TOPIC}.subscription.reliability"
        names = ["use_sim_time", "queue_policy", reliable_image]
        got = _get_parameters(node, "/hfl_perception", names)
        assert got == {"use_sim_time": True, "queue_policy": "all", reliable_image: "reliable"}

        def log_text():
            return "\n".join(f"--- {n}\n{(tmp_path / f'{n}.log').read_text()[-3000:]}" for n in logs)

        try:
            spin_until(node, lambda: len(stamps) >= 4, 180.0, "4 outputs of the perception node")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{log_text()}") from None
        assert procs[1].wait(timeout=60) == 0, log_text()
        assert stamps == [T0_NS + i * PERIOD_NS for i in range(4)]  # every frame, original stamps, in order
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(2)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for stream in logs.values():
            stream.close()
        node.destroy_node()
        rclpy.shutdown()


def test_replay_launch_compressed_images(monkeypatch):
    nodes = _StandIn().nodes(REPO / "launch" / "replay.launch.py", monkeypatch,
                             {"bag": "/x", "image_topic": "/cam/image_raw/compressed"})
    perception = next(n for n in nodes if n["name"] == "hfl_perception")
    assert perception["parameters"][1]["image_transport"] == "compressed"
    assert ("image/compressed", "/cam/image_raw/compressed") in perception["remappings"]


def test_replay_launch_with_real_launch_ros():
    """With the ROS 2 launch system (../shared/ros2_tools or a ROS install), the file builds a real
    description with the two nodes (test_ros2_cli.py runs it with `ros2 launch`)."""
    from user_shell import require_ros2_tools

    require_ros2_tools(shell=False)
    import importlib.util

    from launch.actions import DeclareLaunchArgument
    from launch_ros.actions import Node

    from launch import LaunchContext, LaunchDescription

    spec = importlib.util.spec_from_file_location("replay_launch_real", REPO / "launch" / "replay.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    assert isinstance(description, LaunchDescription)
    declared = {e.name: e for e in description.entities if isinstance(e, DeclareLaunchArgument)}
    values = {"bag": "/tmp/x", "rate": "0.5", "params_file": "/tmp/p.yaml", "image_topic": "/i",
              "camera_info_topic": "/c", "detections_topic": "/d", "wait_timeout": "5", "loop": "false"}
    assert set(declared) == set(values)
    context = LaunchContext()
    context.launch_configurations.update(values)
    nodes = module._nodes(context)
    assert len(nodes) == 2 and all(isinstance(n, Node) for n in nodes)
