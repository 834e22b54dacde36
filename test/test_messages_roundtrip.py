"""HandObjectPoseArray crosses DDS between two processes with every field intact."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from ros_wait import spin_until  # noqa: E402

HERE = Path(__file__).resolve().parent


def _as_plain(msg):
    """Message -> nested plain Python values, so that a failing comparison names the field."""
    if hasattr(msg, "get_fields_and_field_types"):
        return {name: _as_plain(getattr(msg, name)) for name in msg.get_fields_and_field_types()}
    if isinstance(msg, (list, tuple)):
        return [_as_plain(m) for m in msg]
    if isinstance(msg, np.ndarray):
        return msg.tolist()
    if hasattr(msg, "tolist"):
        return msg.tolist()
    return msg


def test_hand_object_pose_array_round_trip(subprocess_env):
    sys.path.insert(0, str(HERE))
    from full_message import make_full_message
    from hfl_ros.msg import HandObjectPoseArray

    rclpy.init()
    node = rclpy.create_node("roundtrip_subscriber")
    received = []
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
    node.create_subscription(HandObjectPoseArray, "roundtrip", received.append, qos)
    env = dict(subprocess_env)
    env["PYTHONPATH"] = f"{HERE}:{env['PYTHONPATH']}"
    child = subprocess.Popen([sys.executable, str(HERE / "roundtrip_publisher.py")], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        spin_until(node, lambda: received or child.poll() is not None, 60.0, "the round-trip message")
        assert received, f"publisher exited early: {child.communicate()[1]}"
    finally:
        child.terminate()
        child.wait(timeout=20)
        node.destroy_node()
        rclpy.shutdown()

    from rclpy.serialization import deserialize_message, serialize_message

    # float32 fields are rounded on the wire: compare against the locally CDR-normalised message.
    expected = deserialize_message(serialize_message(make_full_message()), HandObjectPoseArray)
    got = received[0]
    assert _as_plain(got) == _as_plain(expected)
    # Spot checks that make a silent default-valued transfer impossible to pass.
    assert got.header.frame_id == "camera_color_optical_frame"
    assert len(got.poses) == 2 and len(got.poses[0].hand.vertices) == 778
    assert got.poses[1].hand.side == got.poses[1].hand.LEFT
    assert got.poses[1].status_message.startswith("too few")
    np.testing.assert_allclose(got.poses[1].hand.mano_pose, np.linspace(-1, 1, 48) * 2, rtol=1e-6)
