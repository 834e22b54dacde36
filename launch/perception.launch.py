"""Start the hfl_ros perception node (and RViz on request).

    ros2 launch hfl_ros perception.launch.py params_file:=my_params.yaml image:=/camera/color/image_raw \
        camera_info:=/camera/color/camera_info detections:=/detector/detections use_rviz:=true

With ``managed:=true`` the node is a lifecycle (managed) node that waits, unconfigured, for
``ros2 lifecycle set /hfl_perception configure`` and ``activate`` (docs/node.md, "Managed node").

QoS overrides go in the params file as ``qos_overrides.<topic>...`` parameters, with the topic names after the
remapping (e.g. ``qos_overrides./camera/color/image_raw.subscription.reliability: reliable``).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from hfl_ros.ros.names import (
    CAMERA_INFO_INPUT,
    COMPRESSED_IMAGE_INPUT,
    DETECTIONS_INPUT,
    IMAGE_INPUT,
    PERCEPTION_NODE,
)
from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("hfl_ros")
    params_file = LaunchConfiguration("params_file")
    use_sim_time = LaunchConfiguration("use_sim_time")
    image = LaunchConfiguration("image")
    arguments = [
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "perception.yaml"),
                              description="Parameters of the perception node (YAML, ros__parameters)."),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the node."),
        DeclareLaunchArgument("use_rviz", default_value="false", description="Also start RViz (true/false)."),
        DeclareLaunchArgument("managed", default_value="false",
                              description="Run the node as a lifecycle (managed) node, started with "
                                          "`ros2 lifecycle set` (true/false)."),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="Use /clock (replayed bags) instead of the wall clock."),
        DeclareLaunchArgument("image", default_value=IMAGE_INPUT,
                              description="Image topic (its /compressed sub-topic with image_transport "
                                          "compressed)."),
        DeclareLaunchArgument("camera_info", default_value=CAMERA_INFO_INPUT,
                              description="CameraInfo topic."),
        DeclareLaunchArgument("detections", default_value=DETECTIONS_INPUT,
                              description="vision_msgs/Detection2DArray topic."),
    ]
    perception = Node(
        package="hfl_ros",
        executable="perception_node",
        name=PERCEPTION_NODE,
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        emulate_tty=True,
        arguments=["--managed", LaunchConfiguration("managed")],
        parameters=[params_file, {"use_sim_time": use_sim_time}],
        remappings=[
            (IMAGE_INPUT, image),
            (COMPRESSED_IMAGE_INPUT, [image, "/compressed"]),
            (CAMERA_INFO_INPUT, LaunchConfiguration("camera_info")),
            (DETECTIONS_INPUT, LaunchConfiguration("detections")),
        ],
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        namespace=LaunchConfiguration("namespace"),
        arguments=["-d", os.path.join(share, "config", "hfl.rviz")],
        parameters=[{"use_sim_time": use_sim_time}],
        condition=IfCondition(LaunchConfiguration("use_rviz")),
    )
    return LaunchDescription([*arguments, perception, rviz])
