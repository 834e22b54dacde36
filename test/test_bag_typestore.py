"""The bag typestore registers hfl_ros and vision_msgs with the type hashes rosidl generates."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from hfl_ros.bag import typestore as ts_module
from hfl_ros.bag.typestore import build_typestore, message_dir, message_types, normalize_type_name, typestore

#: Upstream RIHS01 hashes (Kilted generators on the upstream definitions), independent of this build.
UPSTREAM = {
    "tf2_msgs/msg/TFMessage": "e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087",
    "vision_msgs/msg/Detection2DArray": "214274120007f4a683866481336b70310268cfa107aebe9d594a6acf75bda968",
    "vision_msgs/msg/Detection3DArray": "793f5eab9595ac1c0da07873cc859db42eae51f0ee76056db8562515d830e018",
    "vision_msgs/msg/BoundingBox2D": "008eacbb0cf8f26e83795547bed013eec3675485ef386ec056d80eaaf1c1ce2f",
    "vision_msgs/msg/LabelInfo": "3d37df4015cdf660cc851c51897f2acd957e1ca6205ba0a99aebffb9406b0783",
}
#: Standard types the labeler and the player write or read.
USED_STANDARD_TYPES = [
    "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/CameraInfo",
    "visualization_msgs/msg/MarkerArray", "tf2_msgs/msg/TFMessage", "rosgraph_msgs/msg/Clock",
]


def _generated_hashes(package: str) -> dict[str, str]:
    """type name -> RIHS01 hash, from the rosidl-generated share/<pkg>/msg/<Type>.json files."""
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        directory = Path(prefix) / "share" / package / "msg"
        files = sorted(directory.glob("*.json")) if prefix else []
        if files:
            out = {}
            for path in files:
                first = json.loads(path.read_text())["type_hashes"][0]
                out[first["type_name"]] = first["hash_string"]
            return out
    pytest.skip(f"no generated {package} messages on AMENT_PREFIX_PATH")


@pytest.mark.parametrize("package", ["hfl_ros", "vision_msgs"])
def test_registered_types_have_rosidl_hashes(package):
    generated = _generated_hashes(package)
    store = typestore()
    registered = sorted(n for n in store.types if n.startswith(f"{package}/msg/"))
    assert registered == sorted(generated)
    for name in registered:
        assert store.hash_rihs01(name) == generated[name], name


@pytest.mark.parametrize("type_name", USED_STANDARD_TYPES)
def test_standard_types_have_rosidl_hashes(type_name):
    generated = _generated_hashes(type_name.split("/")[0])
    assert typestore().hash_rihs01(type_name) == generated[type_name]


@pytest.mark.parametrize("type_name", sorted(UPSTREAM))
def test_hashes_equal_upstream(type_name):
    assert typestore().hash_rihs01(type_name) == f"RIHS01_{UPSTREAM[type_name]}"


def test_source_tree_definitions_give_the_same_types(monkeypatch):
    """Without an install space the .msg files of the source tree are used, with identical hashes."""
    installed = typestore()
    monkeypatch.setenv("AMENT_PREFIX_PATH", "")
    assert message_dir("hfl_ros") == ts_module._SOURCE_MSG_DIRS["hfl_ros"]
    assert message_dir("vision_msgs") == ts_module._SOURCE_MSG_DIRS["vision_msgs"]
    store = build_typestore()
    for name in ("hfl_ros/msg/HandObjectPoseArray", "vision_msgs/msg/Detection2DArray"):
        assert store.hash_rihs01(name) == installed.hash_rihs01(name)


def test_hfl_ros_hashes_are_the_documented_ones():
    """Our messages' hashes (with track_id) are pinned in docs/node.md: a .msg change must update both."""
    import re

    docs = (Path(__file__).resolve().parents[1] / "docs" / "node.md").read_text()
    documented = dict(re.findall(r"^\| (hfl_ros/msg/\w+) \| (RIHS01_[0-9a-f]{64}) \|$", docs, re.M))
    store = typestore()
    assert sorted(documented) == sorted(n for n in store.types if n.startswith("hfl_ros/msg/"))
    for name, rihs01 in documented.items():
        assert store.hash_rihs01(name) == rihs01, name
    assert "track_id" in dict(store.get_msgdef("hfl_ros/msg/HandPose").fields)


def test_type_name_forms():
    assert normalize_type_name("hfl_ros/HandPose") == "hfl_ros/msg/HandPose"
    assert normalize_type_name("/hfl_ros/msg/HandPose") == "hfl_ros/msg/HandPose"
    assert message_types().get("hfl_ros/msg/HandPose") is typestore().types["hfl_ros/msg/HandPose"]


def test_cdr_from_typestore_deserialises_in_rclpy():
    """A HandObjectPoseArray built and serialised offline is read by rclpy with every value intact."""
    from hfl_ros.msg import HandObjectPoseArray
    from rclpy.serialization import deserialize_message
    from ros_helpers import make_result

    from hfl_ros.ros.pose_messages import results_to_msg

    store = typestore()
    types = message_types()
    t = store.types
    stamp = t["builtin_interfaces/msg/Time"](sec=12, nanosec=345)
    header = t["std_msgs/msg/Header"](stamp=stamp, frame_id="cam")
    results = [make_result("right", seed=1), make_result("left", seed=2, with_object=False)]
    msg = results_to_msg(results, header, types, with_vertices=True)
    data = bytes(store.serialize_cdr(msg, msg.__msgtype__))
    back = deserialize_message(data, HandObjectPoseArray)
    assert (back.header.stamp.sec, back.header.stamp.nanosec, back.header.frame_id) == (12, 345, "cam")
    assert len(back.poses) == 2
    for pose, result in zip(back.poses, results, strict=True):
        joints = np.array([[p.x, p.y, p.z] for p in pose.hand.joints])
        np.testing.assert_allclose(joints, result.hand.joints3d)
        assert len(pose.hand.vertices) == 778
        np.testing.assert_allclose(pose.hand.mano_pose, np.float32(result.hand.mano_pose))
        assert pose.hand.side == result.hand.side.msg_value
    assert back.poses[0].object.class_id == "3" and back.poses[0].object.valid
    assert not back.poses[1].object.valid
