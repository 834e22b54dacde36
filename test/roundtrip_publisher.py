"""Child process of test_messages_roundtrip: publishes make_full_message() once a subscriber matches."""

from __future__ import annotations

import sys
import time

import rclpy
from full_message import make_full_message
from hfl_ros.msg import HandObjectPoseArray
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy


def main() -> int:
    rclpy.init()
    node = rclpy.create_node("roundtrip_publisher")
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
    pub = node.create_publisher(HandObjectPoseArray, "roundtrip", qos)
    deadline = time.monotonic() + 60.0
    while pub.get_subscription_count() == 0:
        if time.monotonic() > deadline:
            print("no subscriber matched", file=sys.stderr)
            return 1
        rclpy.spin_once(node, timeout_sec=0.05)
    pub.publish(make_full_message())
    print("published", flush=True)
    # Stay alive (transient local) until the test terminates us once it has received the message.
    try:
        while time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
    except KeyboardInterrupt:
        pass
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
