"""Bad input of every kind against the live node (issue 14, item 1), through benchmarks/fuzz_node.py.

The pure checks the fuzz relies on run first; then one node process gets every non-encoding kind of the
benchmark and a sample of the image encodings (the benchmark itself tries every encoding).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from types import SimpleNamespace  # noqa: E402

from hfl_ros.errors import BadCameraError  # noqa: E402
from hfl_ros.ros.convert import camera_info_to_K, check_camera_info_size  # noqa: E402
from hfl_ros.ros.node_logging import ThrottledLogger  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import fuzz_node  # noqa: E402

pytestmark = pytest.mark.ros

ENCODING_SAMPLE = ["encoding_rgb8", "encoding_bgra8", "encoding_mono16", "encoding_16UC1", "encoding_32FC1",
                   "encoding_bayer_rggb8", "encoding_yuv422", "encoding_jpeg", "encoding_empty",
                   "encoding_RGB8"]


def test_throttled_logger_mixes_levels_on_a_real_rclpy_logger():
    """rclpy raises when one call site logs at two severities; that used to stop the node's executor the
    first time it logged an info line (camera_info fallback) after a warning."""
    from rclpy.logging import get_logger

    logger = ThrottledLogger(get_logger("fuzz_test"), period_s=60.0)
    for level, reason in [("warning", "a"), ("info", "b"), ("error", "c"), ("debug", "d"), ("warning", "e")]:
        logger.log(level, reason, "message")
    calls = []
    fake = ThrottledLogger(SimpleNamespace(warning=calls.append), period_s=60.0)
    for _ in range(3):
        fake.log("warning", "same", "again")
    assert calls == ["[same] again"]  # the others are suppressed, and counted in the next line
    assert fake._suppressed["same"] == 2


def test_camera_matrix_must_be_pinhole_and_match_the_image_size():
    good = [200.0, 0.0, 80.0, 0.0, 200.0, 60.0, 0.0, 0.0, 1.0]
    np.testing.assert_array_equal(camera_info_to_K(SimpleNamespace(k=good)).reshape(-1), good)
    for index, value in [(3, 5.0), (6, 0.1), (7, -2.0)]:
        k = list(good)
        k[index] = value
        with pytest.raises(BadCameraError, match="not upper triangular"):
            camera_info_to_K(SimpleNamespace(k=k))
    check_camera_info_size(SimpleNamespace(width=160, height=120), 160, 120)
    check_camera_info_size(SimpleNamespace(width=0, height=0), 160, 120)  # not filled in: accepted
    with pytest.raises(BadCameraError, match="camera_info is for 640x480 images but the image is 160x120"):
        check_camera_info_size(SimpleNamespace(width=640, height=480), 160, 120)


def test_kinds_cover_every_group_and_are_over_sixty():
    kinds = fuzz_node.kinds()
    assert len(kinds) >= 60 and len({k.name for k in kinds}) == len(kinds)
    assert {k.group for k in kinds} == {"image", "camera_info", "detections", "time", "parameters"}
    assert {f"encoding_{e}" for e in fuzz_node.ROS_ENCODINGS} <= {k.name for k in kinds}


@pytest.mark.slow
def test_live_node_survives_counts_logs_and_answers_after_each_kind(tmp_path):
    names = [k.name for k in fuzz_node.kinds()
             if not k.name.startswith("encoding_")]
    names += ENCODING_SAMPLE
    summary = fuzz_node.run(names, work=tmp_path)
    rows = {r["kind"]: r for r in summary["rows"]}
    assert summary["kinds_tried"] == len(names) >= 60
    assert summary["survived"] == summary["answered_after"] == len(names), summary["failed_kinds"]
    assert summary["failed_kinds"] == [], [rows[k] for k in summary["failed_kinds"]]
    assert summary["counted"] == summary["fault_kinds"] and summary["log_throttled"]
    # a bad image answers each hand with BAD_INPUT and the reason
    assert [s for s, _ in rows["encoding_yuv422"]["bad_frame"]] == [4, 4]
    assert "unsupported image encoding 'yuv422'" in rows["encoding_yuv422"]["bad_frame"][0][1]
