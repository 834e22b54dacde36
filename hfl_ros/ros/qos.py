"""QoS profiles of the perception node and their standard overrides (ROS runtime module: imports rclpy).

Every endpoint is created with :func:`overridable`, rclpy's ``QoSOverridingOptions.with_default_policies()``:
its history, depth and reliability can be changed at start-up by the read-only parameters
``qos_overrides.<topic>.<publisher|subscription>.<policy>`` (``<topic>`` fully resolved, after remapping), as
for any rclcpp or rclpy node that offers them.

The profiles are functions: rclpy writes the overrides into the profile object it is given.
"""

from __future__ import annotations

from rcl_interfaces.msg import SetParametersResult
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions


def _keep_last(depth: int, reliability: ReliabilityPolicy) -> QoSProfile:
    return QoSProfile(depth=depth, reliability=reliability, durability=DurabilityPolicy.VOLATILE,
                      history=HistoryPolicy.KEEP_LAST)


def input_qos() -> QoSProfile:
    """The inputs: sensor data (best effort, keep last 5, volatile)."""
    return _keep_last(5, ReliabilityPolicy.BEST_EFFORT)


def output_qos() -> QoSProfile:
    """The node's own outputs: reliable, keep last 10, volatile."""
    return _keep_last(10, ReliabilityPolicy.RELIABLE)


def tf_qos() -> QoSProfile:
    """/tf as tf2_ros publishes it: reliable, keep last 100, volatile."""
    return _keep_last(100, ReliabilityPolicy.RELIABLE)


def diagnostics_qos() -> QoSProfile:
    """/diagnostics: reliable, keep last 10, volatile."""
    return _keep_last(10, ReliabilityPolicy.RELIABLE)


def _check(profile: QoSProfile) -> SetParametersResult:
    if profile.history == HistoryPolicy.KEEP_LAST and profile.depth < 1:
        return SetParametersResult(successful=False, reason=f"depth must be >= 1 with history keep_last, "
                                   f"got {profile.depth}")
    return SetParametersResult(successful=True)


def overridable() -> QoSOverridingOptions:
    """History, depth and reliability overridable by ``qos_overrides.*`` parameters (depth at least 1)."""
    return QoSOverridingOptions.with_default_policies(callback=_check)
