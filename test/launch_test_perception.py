"""launch_testing test of the installed ``perception.launch.py``, as ROS packages run them: by the
``launch_test`` command (test_launch.py::test_real_launch_file runs it; the launch_testing pytest plugin is
off, see pyproject.toml). The file name keeps pytest from collecting it.

    launch_test test/launch_test_perception.py params_file:=PARAMS.yaml namespace:=NS image:=TOPIC

While the launch runs: the node logs that it is ready, its parameters come from the params file (``tf_prefix``
must be set there) and its image input follows the remap. After shutdown (SIGINT): every process exited 0.
"""

from __future__ import annotations

import os
import re
import time
import unittest

import launch_testing
import launch_testing.actions
import launch_testing.asserts
import rclpy
from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration

from launch import LaunchDescription

NODE_NAME = "hfl_perception"
TIMEOUT_S = 180.0


def generate_test_description() -> LaunchDescription:
    launch_file = os.path.join(get_package_share_directory("hfl_ros"), "launch", "perception.launch.py")
    names = ("params_file", "namespace", "image")
    return LaunchDescription([
        *(DeclareLaunchArgument(n) for n in names),
        IncludeLaunchDescription(PythonLaunchDescriptionSource(launch_file),
                                 launch_arguments={n: LaunchConfiguration(n) for n in names}.items()),
        launch_testing.actions.ReadyToTest(),
    ])


class TestRunningNode(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        rclpy.init()
        cls.node = rclpy.create_node("launch_test_probe")

    @classmethod
    def tearDownClass(cls) -> None:
        cls.node.destroy_node()
        rclpy.shutdown()

    def _wait(self, condition, what: str) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while not condition():
            self.assertLess(time.monotonic(), deadline, f"timed out waiting for {what}")
            rclpy.spin_once(self.node, timeout_sec=0.1)

    def test_node_is_ready_with_the_params_file_and_the_remap(self, proc_output, test_args) -> None:
        image = re.escape(test_args["image"])
        ready = re.compile(rf"[.\[]{NODE_NAME}\]: ready: device cpu, .*input '{image}'")  # [ns.name]
        proc_output.assertWaitFor(ready, timeout=TIMEOUT_S)
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        full_name = f"/{test_args['namespace']}/{NODE_NAME}"
        client = self.node.create_client(GetParameters, f"{full_name}/get_parameters")
        self.assertTrue(client.wait_for_service(timeout_sec=60.0), f"{full_name}/get_parameters")
        future = client.call_async(GetParameters.Request(names=["tf_prefix", "device", "use_sim_time"]))
        self._wait(future.done, "the node's parameters")
        values = [parameter_value_to_python(v) for v in future.result().values]
        self.assertEqual(values[1:], ["cpu", False])
        self.assertTrue(values[0], "tf_prefix must be set in the params file")
        self._wait(lambda: any((i.node_name, i.node_namespace) == (NODE_NAME, f"/{test_args['namespace']}")
                               for i in self.node.get_subscriptions_info_by_topic(test_args["image"])),
                   "the node's image subscription")
        print(f"tf_prefix={values[0]}")  # read back by test_real_launch_file


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_every_process_exited_cleanly(self, proc_info) -> None:
        launch_testing.asserts.assertExitCodes(proc_info)
