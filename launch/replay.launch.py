"""Replay a bag into the perception node on simulated time, dropping no frame.

    ros2 launch hfl_ros replay.launch.py bag:=<bag> [rate:=0.5] [params_file:=<node yaml>]
        [image_topic:=...] [camera_info_topic:=...] [detections_topic:=...]

An image topic ending in ``/compressed`` (sensor_msgs/CompressedImage) is fed to the node's compressed input.

The bag_player publishes the recorded image, camera_info and detections with their original stamps and /clock;
it starts once the perception node's subscriptions are matched. The perception node runs with use_sim_time,
``queue_policy: all`` (its inference queue never drops a frame: the input callbacks wait instead) and
reliable, deep input subscriptions (``qos_overrides`` of the three topics), so every recorded frame is
processed. Lower ``rate`` if inference is
slower than the recording: the queues then only delay frames, but a very long backlog costs memory.
"""

from __future__ import annotations

from pathlib import Path

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from hfl_ros.ros.names import (
    BAG_PLAYER_NODE,
    CAMERA_INFO_INPUT,
    COMPRESSED_IMAGE_INPUT,
    DEFAULT_CAMERA_INFO_TOPIC,
    DEFAULT_DETECTIONS_TOPIC,
    DEFAULT_IMAGE_TOPIC,
    DETECTIONS_INPUT,
    IMAGE_INPUT,
    PERCEPTION_NODE,
    qos_override_parameters,
)
from launch import LaunchDescription

#: History depth of the perception node's inputs: room for a long backlog of recorded frames.
INPUT_DEPTH = 1000


def _default_params_file() -> str:
    # launch/ and config/ sit side by side in the source tree and in share/hfl_ros.
    return str(Path(__file__).resolve().parents[1] / "config" / "perception.yaml")


def _nodes(context) -> list:
    """The two nodes, with the launch arguments resolved to plain typed values."""

    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    topics = [arg("image_topic"), arg("camera_info_topic"), arg("detections_topic")]
    # A sensor_msgs/CompressedImage topic (".../compressed") goes to the node's compressed input.
    compressed = topics[0].rstrip("/").endswith("/compressed")
    reliable_inputs = {}
    for topic in topics:  # the node has no namespace: a relative name resolves under /
        reliable_inputs.update(qos_override_parameters("/" + topic.lstrip("/"), "subscription",
                                                       reliability="reliable", depth=INPUT_DEPTH))
    perception = Node(
        package="hfl_ros", executable="perception_node", name=PERCEPTION_NODE, output="screen",
        parameters=[arg("params_file"), {
            "use_sim_time": True,
            "queue_policy": "all",
            **reliable_inputs,
            "image_transport": "compressed" if compressed else "raw",
        }],
        remappings=[(COMPRESSED_IMAGE_INPUT if compressed else IMAGE_INPUT, topics[0]),
                    (CAMERA_INFO_INPUT, topics[1]), (DETECTIONS_INPUT, topics[2])],
    )
    player = Node(
        package="hfl_ros", executable="bag_player", name=BAG_PLAYER_NODE, output="screen",
        parameters=[{
            "bag": arg("bag"),
            "rate": float(arg("rate")),
            "topics": topics,
            "loop": arg("loop").strip().lower() in ("1", "true", "yes"),
            "clock": True,
            "wait_for_subscribers": 1,
            "wait_timeout": float(arg("wait_timeout")),
        }],
    )
    return [perception, player]


def generate_launch_description() -> LaunchDescription:
    arguments = [
        DeclareLaunchArgument("bag", description="rosbag2 directory or .mcap / .db3 file to replay"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback speed factor"),
        DeclareLaunchArgument("params_file", default_value=_default_params_file(),
                              description="perception node parameters (checkpoint_path, mano_dir, ...)"),
        DeclareLaunchArgument("image_topic", default_value=DEFAULT_IMAGE_TOPIC),
        DeclareLaunchArgument("camera_info_topic", default_value=DEFAULT_CAMERA_INFO_TOPIC),
        DeclareLaunchArgument("detections_topic", default_value=DEFAULT_DETECTIONS_TOPIC),
        DeclareLaunchArgument("wait_timeout", default_value="30.0",
                              description="seconds the player waits for the node's subscriptions"),
        DeclareLaunchArgument("loop", default_value="false", description="replay again at the end"),
    ]
    return LaunchDescription([*arguments, OpaqueFunction(function=_nodes)])
