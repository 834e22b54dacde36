"""QoS profiles of the perception node, from its parameters (ROS runtime module: imports rclpy)."""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

_RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}

#: /tf as tf2_ros publishes it: reliable, volatile, depth 100.
TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE,
                    history=HistoryPolicy.KEEP_LAST)


def make_qos(reliability: str, depth: int) -> QoSProfile:
    """KEEP_LAST ``depth``, volatile, with ``reliability`` "best_effort" (sensor data) or "reliable"."""
    return QoSProfile(depth=depth, reliability=_RELIABILITY[reliability],
                      durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST)
