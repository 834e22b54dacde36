"""launch/perception.launch.py: its arguments, and that the parameters of its YAML reach the running node.

``launch`` and ``launch_ros`` are not on PyPI (spec ros_env.md), so the launch file is executed against small
recording stand-ins of the classes it uses; the recorded node is then started the way launch_ros starts it
(``<exe> --ros-args -r __node:=NAME -r __ns:=NS --params-file FILE -r from:=to``) and its parameters are read
back through its parameter service. Where the ROS 2 launch tools are installed (../shared/ros2_tools), the
last test runs the launch_testing test launch_test_perception.py with `launch_test`; test_ros2_cli.py runs
the user's `ros2 launch` commands.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
import yaml
from ros_helpers import REPO, make_node_assets, module_domain_id, reliable_inputs, write_params_file

LAUNCH_FILE = REPO / "launch" / "perception.launch.py"
NODE_NAME = "hfl_perception"

# ----------------------------------------------------------------------------------------------------------
# Recording stand-ins of the launch API used by the launch file


class LaunchConfiguration:
    def __init__(self, name: str):
        self.name = name


class DeclareLaunchArgument:
    def __init__(self, name: str, default_value: Any = None, description: str = ""):
        self.name, self.default_value, self.description = name, default_value, description


class IfCondition:
    def __init__(self, predicate: Any):
        self.predicate = predicate


class LaunchDescription:
    def __init__(self, entities: list[Any]):
        self.entities = list(entities)


class Node:
    def __init__(self, **kwargs: Any):
        self.kwargs = kwargs


@dataclass
class ResolvedNode:
    package: str
    executable: str
    name: str
    namespace: str
    parameters: list[Any]  # file paths and dicts, in order
    remappings: list[tuple[str, str]]
    arguments: list[str] = field(default_factory=list)


def _substitute(value: Any, config: dict[str, str]) -> Any:
    """Evaluate a substitution (a LaunchConfiguration, text, or a list of both concatenated)."""
    if isinstance(value, LaunchConfiguration):
        return config[value.name]
    if isinstance(value, list | tuple):
        return "".join(str(_substitute(v, config)) for v in value)
    return value


def _as_bool(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise ValueError(f"not a boolean: {text!r}")
    return text.lower() == "true"


def resolve(description: LaunchDescription, launch_args: dict[str, str]) -> tuple[dict, list[ResolvedNode]]:
    """The argument values (defaults overridden by ``launch_args``) and the nodes whose condition holds."""
    declared = {e.name: e for e in description.entities if isinstance(e, DeclareLaunchArgument)}
    unknown = set(launch_args) - set(declared)
    assert not unknown, f"launch arguments not declared by the launch file: {unknown}"
    config = {name: launch_args.get(name, arg.default_value) for name, arg in declared.items()}
    nodes = []
    for entity in description.entities:
        if not isinstance(entity, Node):
            continue
        kw = entity.kwargs
        condition = kw.get("condition")
        if condition is not None and not _as_bool(_substitute(condition.predicate, config)):
            continue
        parameters = []
        for item in kw.get("parameters", []):
            if isinstance(item, dict):
                # launch_ros evaluates the substitutions and reads each value as YAML ("false" -> False)
                parameters.append({k: yaml.safe_load(str(_substitute(v, config))) for k, v in item.items()})
            else:
                parameters.append(str(_substitute(item, config)))
        nodes.append(ResolvedNode(
            package=kw["package"], executable=kw["executable"], name=kw.get("name", ""),
            namespace=str(_substitute(kw.get("namespace", ""), config)), parameters=parameters,
            remappings=[(str(_substitute(a, config)), str(_substitute(b, config)))
                        for a, b in kw.get("remappings", [])],
            arguments=[str(_substitute(a, config)) for a in kw.get("arguments", [])]))
    return config, nodes


def load_launch_description(monkeypatch) -> LaunchDescription:
    """Execute the launch file with the stand-ins in place of launch / launch_ros."""
    modules = {
        "launch": types.ModuleType("launch"),
        "launch.actions": types.ModuleType("launch.actions"),
        "launch.conditions": types.ModuleType("launch.conditions"),
        "launch.substitutions": types.ModuleType("launch.substitutions"),
        "launch_ros": types.ModuleType("launch_ros"),
        "launch_ros.actions": types.ModuleType("launch_ros.actions"),
    }
    modules["launch"].LaunchDescription = LaunchDescription
    modules["launch.actions"].DeclareLaunchArgument = DeclareLaunchArgument
    modules["launch.conditions"].IfCondition = IfCondition
    modules["launch.substitutions"].LaunchConfiguration = LaunchConfiguration
    modules["launch_ros.actions"].Node = Node
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("perception_launch_under_test", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def ros_args(node: ResolvedNode, tmp_path: Path) -> list[str]:
    """The arguments launch_ros gives a node: name, namespace, parameter files, remappings."""
    args = ["--ros-args", "-r", f"__node:={node.name}"]
    if node.namespace:
        args += ["-r", f"__ns:=/{node.namespace.strip('/')}"]
    for i, item in enumerate(node.parameters):
        if isinstance(item, dict):  # launch_ros writes dict parameters to a temporary file
            item = str(write_params_file(tmp_path / f"launch_params_{i}.yaml", item))
        args += ["--params-file", item]
    for src, dst in node.remappings:
        args += ["-r", f"{src}:={dst}"]
    return args


# ----------------------------------------------------------------------------------------------------------
# Tests


def test_launch_arguments_and_defaults(monkeypatch):
    from ament_index_python.packages import get_package_share_directory

    description = load_launch_description(monkeypatch)
    config, nodes = resolve(description, {})
    assert sorted(config) == sorted(["params_file", "namespace", "use_rviz", "managed", "use_sim_time",
                                     "image", "camera_info", "detections"])
    share = get_package_share_directory("hfl_ros")
    assert config["params_file"] == os.path.join(share, "config", "perception.yaml")
    assert [n.executable for n in nodes] == ["perception_node"]  # no RViz unless asked
    (node,) = nodes
    assert (node.package, node.name, node.namespace) == ("hfl_ros", NODE_NAME, "")
    assert node.parameters == [config["params_file"], {"use_sim_time": False}]
    assert node.arguments == ["--managed", "false"]  # a plain node unless managed:=true
    assert node.remappings == [("image", "image"), ("image/compressed", "image/compressed"),
                               ("camera_info", "camera_info"), ("detections", "detections")]


def test_launch_rviz_with_the_shipped_config(monkeypatch):
    _, nodes = resolve(load_launch_description(monkeypatch), {"use_rviz": "true", "use_sim_time": "true",
                                                              "namespace": "robot1"})
    assert [n.executable for n in nodes] == ["perception_node", "rviz2"]
    rviz = nodes[1]
    assert rviz.package == "rviz2" and rviz.namespace == "robot1"
    assert rviz.arguments[0] == "-d" and Path(rviz.arguments[1]).name == "hfl.rviz"
    assert rviz.parameters == [{"use_sim_time": True}]
    layout = yaml.safe_load((REPO / "config" / "hfl.rviz").read_text())
    displays = {d["Class"]: d for d in layout["Visualization Manager"]["Displays"]}
    assert {"rviz_default_plugins/Image", "rviz_default_plugins/MarkerArray",
            "rviz_default_plugins/TF"} <= set(displays)
    assert displays["rviz_default_plugins/MarkerArray"]["Topic"]["Value"] == f"{NODE_NAME}/markers"
    assert displays["rviz_default_plugins/Image"]["Topic"]["Value"] == f"{NODE_NAME}/debug_image"


def test_yaml_parameters_and_remaps_reach_the_launched_node(monkeypatch, tmp_path):
    pytest.importorskip("rclpy")
    import torch
    from hfl_ros.msg import HandObjectPoseArray
    from node_harness import RosSession, get_parameters, process_output, start_process, stop_process

    torch.set_num_threads(1)
    assets = make_node_assets(tmp_path / "assets")
    yaml_values = {**assets, "num_threads": 1, "sync_slop": 0.02, "tf_prefix": "launch_",
                   "queue_policy": "all", "hand_score_threshold": 0.25, "right_hand_labels": ["rh", "right"],
                   "marker_lifetime": 2, **reliable_inputs("/cam/image_raw", "/robot1/camera_info",
                                                            "/detector/detections")}
    params_file = write_params_file(tmp_path / "user_params.yaml", yaml_values)
    _, (node,) = resolve(load_launch_description(monkeypatch), {
        "params_file": str(params_file), "namespace": "robot1", "use_sim_time": "true",
        "image": "/cam/image_raw", "detections": "/detector/detections"})

    # In this source-tree setup the executable `lib/hfl_ros/perception_node` is scripts/perception_node.
    executable = REPO / "scripts" / node.executable
    domain = module_domain_id(__name__)
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = start_process([sys.executable, str(executable), *node.arguments, *ros_args(node, tmp_path)], env,
                         tmp_path / "node")
    session = RosSession(domain)
    try:
        full_name = f"/robot1/{NODE_NAME}"

        def subscribed() -> set[str]:  # by this node (another test run may share the domain)
            from rclpy.node import NodeNameNonExistentError

            try:
                topics = session.node.get_subscriber_names_and_types_by_node(NODE_NAME, "/robot1")
                return {t for t, _ in topics}
            except NodeNameNonExistentError:
                return set()

        # Its three inputs and /clock (use_sim_time), all created at start-up, and its results.
        session.wait_for(lambda: len(subscribed()) >= 4
                         and session.node.count_publishers(f"{full_name}/hand_object_poses") > 0,
                         180.0, "the launched node's topics", proc)
        # camera_info is not remapped: a relative name, in the namespace.
        assert {"/cam/image_raw", "/detector/detections", "/robot1/camera_info"} <= subscribed()
        names = ["sync_slop", "tf_prefix", "queue_policy", "hand_score_threshold", "right_hand_labels",
                 "marker_lifetime", "checkpoint_path", "use_sim_time", "publish_tf",
                 "qos_overrides./robot1/camera_info.subscription.depth"]
        values = get_parameters(session, full_name, names)
        assert values == {"sync_slop": 0.02, "tf_prefix": "launch_", "queue_policy": "all",
                          "hand_score_threshold": 0.25, "right_hand_labels": ["rh", "right"],
                          "marker_lifetime": 2, "checkpoint_path": assets["checkpoint_path"],
                          "use_sim_time": True, "publish_tf": True,
                          "qos_overrides./robot1/camera_info.subscription.depth": 10}
        # queue_policy "all" from the YAML: a burst of frames is answered frame by frame, none dropped.
        sub, answers = session.subscribe(HandObjectPoseArray, f"{full_name}/hand_object_poses")
        stamps = _send_burst(session, sub, 4, proc)
        session.wait_for(lambda: len(answers) >= len(stamps), 120.0, "an answer to every frame", proc)
        assert [a.header.stamp.sec for a in answers] == stamps
        assert all(len(a.poses) == 1 and a.poses[0].hand.side == 0 for a in answers)  # "rh": right hand
    finally:
        stop_process(proc)
        session.close()
    assert proc.returncode == 0, process_output(proc.log_dir)


def _send_burst(session, answer_sub, count: int, proc) -> list[int]:
    """Publish ``count`` frames (160x120, one "rh" hand and one object) back to back; return their stamps."""
    import numpy as np
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import Header
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

    from hfl_ros.ros.convert import rgb_to_image_data

    node = session.node
    pubs = [node.create_publisher(t, n, 10) for t, n in ((CameraInfo, "/robot1/camera_info"),
                                                        (Image, "/cam/image_raw"),
                                                        (Detection2DArray, "/detector/detections"))]
    session.wait_for(lambda: all(p.get_subscription_count() > 0 for p in pubs)
                     and answer_sub.get_publisher_count() > 0, 60.0, "the node's inputs", proc)
    rgb = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    stamps = []
    for i in range(count):
        header = Header(stamp=Time(sec=50 + i), frame_id="cam")
        dets = Detection2DArray(header=header)
        for label, (x1, y1, x2, y2) in (("rh", (30, 30, 80, 90)), ("3", (50, 40, 100, 100))):
            det = Detection2D(header=header, results=[ObjectHypothesisWithPose()])
            det.results[0].hypothesis.class_id, det.results[0].hypothesis.score = label, 0.9
            det.bbox.center.position.x, det.bbox.center.position.y = (x1 + x2) / 2, (y1 + y2) / 2
            det.bbox.size_x, det.bbox.size_y = float(x2 - x1), float(y2 - y1)
            dets.detections.append(det)
        pubs[0].publish(CameraInfo(header=header, k=[200.0, 0, 80, 0, 200, 60, 0, 0, 1]))
        pubs[1].publish(Image(header=header, height=120, width=160, encoding="rgb8", step=480,
                              data=rgb_to_image_data(rgb)))
        pubs[2].publish(dets)
        stamps.append(50 + i)
    return stamps


def test_real_launch_file(tmp_path):
    """The launch_testing test launch_test_perception.py, run by `launch_test` as ROS packages run theirs: the
    installed perception.launch.py starts the node with the params file and remap, and it stops cleanly."""
    from user_shell import ENV_FILE, UserShell, require_ros2_tools

    require_ros2_tools()
    assets = make_node_assets(tmp_path / "assets")
    params_file = write_params_file(tmp_path / "params.yaml", {**assets, "device": "cpu", "num_threads": 1,
                                                                "tf_prefix": "real_launch_"})
    domain = module_domain_id(__name__ + "real")
    shell = UserShell(tmp_path, f"source {ENV_FILE}", {"ROS_DOMAIN_ID": str(domain)}, tmp_path / "logs")
    try:
        result = shell.run(f"launch_test --junit-xml {tmp_path / 'launch_test.xml'} "
                           f"{REPO / 'test' / 'launch_test_perception.py'} params_file:={params_file} "
                           "namespace:=real image:=/real/cam/image_raw", timeout=300)
    finally:
        shell.close()
    assert result.returncode == 0, f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
    assert "tf_prefix=real_launch_" in result.stdout + result.stderr
    suites = ElementTree.parse(tmp_path / "launch_test.xml").getroot()
    cases = {c.get("name"): c for c in suites.iter("testcase")}
    assert sorted(cases) == ["test_every_process_exited_cleanly",
                             "test_node_is_ready_with_the_params_file_and_the_remap"], sorted(cases)
    assert all(len(c) == 0 for c in cases.values()), "a launch test failed or was skipped"
