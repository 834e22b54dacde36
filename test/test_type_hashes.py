"""The locally built (or installed) interface packages carry the upstream RIHS01 type hashes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

UPSTREAM = {
    "tf2_msgs/msg/TFMessage": "RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087",
    "vision_msgs/msg/Detection2DArray": "RIHS01_214274120007f4a683866481336b70310268cfa107aebe9d594a6acf75bda968",  # noqa: E501
    "vision_msgs/msg/Detection3DArray": "RIHS01_793f5eab9595ac1c0da07873cc859db42eae51f0ee76056db8562515d830e018",  # noqa: E501
    "vision_msgs/msg/BoundingBox2D": "RIHS01_008eacbb0cf8f26e83795547bed013eec3675485ef386ec056d80eaaf1c1ce2f",  # noqa: E501
    "vision_msgs/msg/LabelInfo": "RIHS01_3d37df4015cdf660cc851c51897f2acd957e1ca6205ba0a99aebffb9406b0783",
}


def _share_json(type_name: str) -> Path:
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        candidate = Path(prefix) / "share" / f"{type_name}.json"
        if prefix and candidate.is_file():
            return candidate
    pytest.fail(f"{type_name}.json not found on AMENT_PREFIX_PATH; run scripts/setup.sh")


@pytest.mark.parametrize("type_name", sorted(UPSTREAM))
def test_generated_type_hash_equals_upstream(type_name):
    data = json.loads(_share_json(type_name).read_text())
    hashes = {h["type_name"]: h["hash_string"] for h in data["type_hashes"]}
    assert hashes[type_name] == UPSTREAM[type_name]


@pytest.mark.parametrize("module,cls,type_name", [
    ("tf2_msgs.msg", "TFMessage", "tf2_msgs/msg/TFMessage"),
    ("vision_msgs.msg", "Detection2DArray", "vision_msgs/msg/Detection2DArray"),
    ("vision_msgs.msg", "Detection3DArray", "vision_msgs/msg/Detection3DArray"),
])
def test_endpoint_advertises_upstream_hash(module, cls, type_name, ros_domain_id):
    """The hash a live publisher advertises on the graph (what DDS peers compare) is the upstream one."""
    rclpy = pytest.importorskip("rclpy")
    import importlib

    msg_cls = getattr(importlib.import_module(module), cls)
    rclpy.init()
    try:
        node = rclpy.create_node("type_hash_probe")
        node.create_publisher(msg_cls, "probe", 1)
        infos = node.get_publishers_info_by_topic("probe")
        assert len(infos) == 1
        assert str(infos[0].topic_type_hash) == UPSTREAM[type_name]
        node.destroy_node()
    finally:
        rclpy.shutdown()
