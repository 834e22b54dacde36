"""Fuzz of every input of the live perception node over DDS (issue 14, item 1).

    python benchmarks/fuzz_node.py [--only NAME,...] [--out results.json]

One node process (test/rigged_perception_node.py: the real node with random weights whose 2D outputs are
rigged to a known pose, so that a correct answer can be checked) gets, kind after kind, a bad input: images
(every encoding ROS defines and some it does not, odd sizes, step/data mismatches, truncated data, the
big-endian flag), camera_info (bad focal lengths, a K that is not upper triangular, sizes that disagree with
the image, each distortion model, none at all), detections (NaN, infinite, negative, zero-size and outside
boxes, 1,000 detections, empty results, unknown classes, hands without objects and the reverse, duplicate
ids), time (zero stamps, stamps going backwards or far in the future, bursts, a stalled camera_info) and
parameters set at runtime to wrong types and out-of-range values. After each kind a good frame must get its
known poses. A kind passes when the node is still up (``survived``), answers the good frame correctly
(``answered_after``), its diagnostics counter (``failures_<reason>``; for a burst, every frame processed,
dropped by the queue policy or unmatched) grew when the kind is a fault (``counted``), and that reason was
logged (``logged``); benign oddities (a big-endian flag on 8-bit data, distortion coefficients, duplicate
ids...) must simply be answered. At the
end the log is checked to be throttled (at most one line per reason every 5 s). The last line printed is one
JSON object: kinds tried, survived, answered-after, counted, and the failing kinds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TEST_DIR = REPO / "test"
sys.path[:0] = [str(REPO), str(TEST_DIR)]

NODE = "/hfl_perception"
FRAME_ID = "camera_optical"
W, H = 160, 120
K_GOOD = [200.0, 0.0, 80.0, 0.0, 200.0, 60.0, 0.0, 0.0, 1.0]
RIGHT_BOX = (30.0, 30.0, 80.0, 90.0)
LEFT_BOX = (90.0, 20.0, 140.0, 80.0)
OBJECT_BOX = (50.0, 40.0, 100.0, 100.0)
GOOD_ITEMS = [("right_hand", RIGHT_BOX, 0.9), ("left_hand", LEFT_BOX, 0.8), ("3", OBJECT_BOX, 0.7)]
LOG_PERIOD_S = 5.0  # the node's ThrottledLogger period
#: Every encoding of ROS 2's sensor_msgs/image_encodings.hpp, and some it does not define.
ROS_ENCODINGS = ["rgb8", "rgba8", "rgb16", "rgba16", "bgr8", "bgra8", "bgr16", "bgra16", "mono8", "mono16",
                 "8UC1", "8UC2", "8UC3", "8UC4", "8SC1", "8SC2", "8SC3", "8SC4", "16UC1", "16UC2", "16UC3",
                 "16UC4", "16SC1", "16SC2", "16SC3", "16SC4", "32SC1", "32SC2", "32SC3", "32SC4", "32FC1",
                 "32FC2", "32FC3", "32FC4", "64FC1", "64FC2", "64FC3", "64FC4", "bayer_rggb8", "bayer_bggr8",
                 "bayer_gbrg8", "bayer_grbg8", "bayer_rggb16", "bayer_bggr16", "bayer_gbrg16", "bayer_grbg16",
                 "yuv422", "yuv422_yuy2", "uyvy", "yuyv", "nv21", "nv24"]
SUPPORTED = {"rgb8", "bgr8", "rgba8", "bgra8", "mono8"}
NOT_ROS_ENCODINGS = ["jpeg", "", "RGB8 ", "rgb9", "\u00e9\u00e9"]
_BYTES_PER_PIXEL = {"8": 1, "16": 2, "32": 4, "64": 8}


def _bytes_per_pixel(encoding: str) -> int:
    named = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "rgb16": 6, "bgr16": 6, "rgba16": 8,
             "bgra16": 8, "mono16": 2, "yuv422": 2, "yuv422_yuy2": 2, "uyvy": 2, "yuyv": 2, "nv21": 2,
             "nv24": 3}
    if encoding in named:
        return named[encoding]
    match = re.fullmatch(r"(8|16|32|64)[USF]C([1-4])", encoding)
    if match:
        return _BYTES_PER_PIXEL[match.group(1)] * int(match.group(2))
    if encoding.startswith("bayer_"):
        return 2 if encoding.endswith("16") else 1
    return 3


@dataclass
class Kind:
    """One kind of bad input: ``send`` publishes it with the stamp given; ``counter`` is the diagnostics key
    expected to grow (None for a benign oddity that must just be answered)."""

    name: str
    group: str
    counter: str | None
    send: Callable[[Fuzzer, Any], None]
    min_count: int = 1
    transport: str = "raw"  # the node's image_transport: "compressed" kinds get a node of their own
    count_wait_s: float = 3.0  # how long the count may take before the good frame is sent


class Fuzzer:
    """The test side: publishers of the node's inputs, the poses and diagnostics received, good frames."""

    def __init__(self, session: Any, proc: Any, transport: str = "raw") -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from hfl_ros.msg import HandObjectPoseArray
        from node_harness import RELIABLE
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image
        from vision_msgs.msg import Detection2DArray

        self.session, self.proc, self.transport = session, proc, transport
        node = session.node
        if transport == "compressed":
            self.pub_image = node.create_publisher(CompressedImage, "/fuzz/image/compressed", RELIABLE)
        else:
            self.pub_image = node.create_publisher(Image, "/fuzz/image", RELIABLE)
        self.pub_info = node.create_publisher(CameraInfo, "/fuzz/camera_info", RELIABLE)
        self.pub_dets = node.create_publisher(Detection2DArray, "/fuzz/detections", RELIABLE)
        self.sub_poses, self.poses = session.subscribe(HandObjectPoseArray, f"{NODE}/hand_object_poses")
        self.sub_diag, self.diagnostics = session.subscribe(DiagnosticArray, "/diagnostics")
        self._sec = 1000
        self.rgb = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)

    # -- messages --------------------------------------------------------------------------------------
    def stamp(self, jump_s: int = 0) -> Any:
        from builtin_interfaces.msg import Time

        self._sec += 1 + jump_s
        return Time(sec=self._sec, nanosec=500)

    @staticmethod
    def header(stamp: Any) -> Any:
        from std_msgs.msg import Header

        return Header(stamp=stamp, frame_id=FRAME_ID)

    def image(self, stamp: Any, **fields: Any) -> Any:
        from sensor_msgs.msg import Image

        from hfl_ros.ros.convert import rgb_to_image_data

        values = dict(height=H, width=W, encoding="rgb8", is_bigendian=0, step=W * 3,
                      data=rgb_to_image_data(self.rgb))
        values.update(fields)
        return Image(header=self.header(stamp), **values)

    def compressed(self, stamp: Any, data: bytes | None = None, fmt: str = "jpeg") -> Any:
        """A sensor_msgs/CompressedImage: the JPEG of the good image, or ``data`` as it is."""
        import cv2
        from sensor_msgs.msg import CompressedImage

        if data is None:
            data = cv2.imencode(".jpg", self.rgb[:, :, ::-1])[1].tobytes()
        return CompressedImage(header=self.header(stamp), format=fmt, data=data)

    def info(self, stamp: Any, **fields: Any) -> Any:
        from sensor_msgs.msg import CameraInfo

        values: dict[str, Any] = dict(height=H, width=W, k=list(K_GOOD), distortion_model="plumb_bob",
                                      d=[0.0] * 5)
        values.update(fields)
        return CameraInfo(header=self.header(stamp), **values)

    def detections(self, stamp: Any, items: list[tuple[str, tuple[float, ...], float]] | None = None,
                   ids: list[str] | None = None) -> Any:
        from vision_msgs.msg import BoundingBox2D, Detection2D, Detection2DArray, ObjectHypothesisWithPose

        out = []
        for i, (label, box, score) in enumerate(GOOD_ITEMS if items is None else items):
            hyps = []
            if label is not None:
                hyp = ObjectHypothesisWithPose()
                hyp.hypothesis.class_id, hyp.hypothesis.score = label, float(score)
                hyps.append(hyp)
            bbox = BoundingBox2D(size_x=float(box[2] - box[0]), size_y=float(box[3] - box[1]))
            bbox.center.position.x, bbox.center.position.y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            out.append(Detection2D(header=self.header(stamp), results=hyps, bbox=bbox,
                                   id=ids[i] if ids else ""))
        return Detection2DArray(header=self.header(stamp), detections=out)

    def send(self, stamp: Any, *, image: Any = None, info: Any = True, dets: Any = None) -> None:
        """camera_info (unless ``info`` is None), image and detections, all with ``stamp`` by default."""
        if info is not None:
            self.pub_info.publish(self.info(stamp) if info is True else info)
        if image is None:
            image = self.compressed(stamp) if self.transport == "compressed" else self.image(stamp)
        self.pub_image.publish(image)
        self.pub_dets.publish(self.detections(stamp) if dets is None else dets)

    # -- observations ----------------------------------------------------------------------------------
    def wait(self, condition: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
        return self.session.wait_for(condition, timeout, what, self.proc)

    def wait_ready(self) -> None:
        pubs = (self.pub_image, self.pub_info, self.pub_dets)
        self.wait(lambda: all(p.get_subscription_count() > 0 for p in pubs)
                  and self.sub_poses.get_publisher_count() > 0 and self.sub_diag.get_publisher_count() > 0,
                  "the node's topics", timeout=300.0)

    def poses_at(self, stamp: Any, timeout: float = 60.0) -> Any:
        def found() -> Any:
            return next((m for m in self.poses if m.header.stamp.sec == stamp.sec
                         and m.header.stamp.nanosec == stamp.nanosec), None)

        return self.wait(found, f"the poses of stamp {stamp.sec}", timeout)

    def good_frame(self) -> bool:
        """A good frame gets both hands with status OK at the rigged wrist position."""
        from ros_helpers import HAND_T

        stamp = self.stamp()
        self.send(stamp)
        msg = self.poses_at(stamp)
        if [p.status for p in msg.poses] != [0, 0]:
            return False
        wrist = msg.poses[0].hand.wrist_pose.position
        return bool(np.allclose([wrist.x, wrist.y, wrist.z], HAND_T, atol=1e-3))

    def counters(self, min_processed: int = 0) -> dict[str, int]:
        """Integer diagnostics values of the first message (from now) counting ``min_processed`` frames."""
        start = len(self.diagnostics)

        def found() -> Any:
            for msg in self.diagnostics[start:]:
                for status in msg.status:
                    values = {kv.key: kv.value for kv in status.values}
                    if NODE[1:] in status.name and int(values.get("frames_processed", 0)) >= min_processed:
                        out = {k: int(v) for k, v in values.items() if v.lstrip("-").isdigit()}
                        # every synced image is processed, dropped by the queue policy or left unmatched
                        out["frames_accounted"] = (out.get("frames_processed", 0)
                                                   + out.get("dropped_frames", 0)
                                                   + out.get("unmatched_images", 0))
                        return out
            return None

        return self.wait(found, "a diagnostics message")

    def log_text(self) -> str:
        return "".join((self.proc.log_dir / name).read_text(errors="replace")
                       for name in ("stdout.txt", "stderr.txt"))


# ----------------------------------------------------------------------------------------------------------
# The kinds


def _image_kind(name: str, counter: str | None, **fields: Any) -> Kind:
    return Kind(name, "image", counter, lambda f, stamp: f.send(stamp, image=f.image(stamp, **fields)))


def _encoding_kind(encoding: str) -> Kind:
    bpp = _bytes_per_pixel(encoding)
    data = bytes(np.random.default_rng(1).integers(0, 256, H * W * bpp, dtype=np.uint8))
    # Case and surrounding spaces are forgiven ("RGB8 " reads as rgb8: the bytes mean the same).
    counter = None if encoding.strip().lower() in SUPPORTED else "failures_bad_image"
    return _image_kind(f"encoding_{encoding.strip() or 'empty'}", counter, encoding=encoding, step=W * bpp,
                       data=data)


def _compressed_kind(name: str, counter: str | None, data: Callable[[Fuzzer], bytes],
                     fmt: str = "jpeg") -> Kind:
    def send(f: Fuzzer, stamp: Any) -> None:
        f.send(stamp, image=f.compressed(stamp, data(f), fmt))

    return Kind(name, "image", counter, send, transport="compressed")


def _png(f: Fuzzer) -> bytes:
    import cv2

    return cv2.imencode(".png", f.rgb[:, :, ::-1])[1].tobytes()


def _info_kind(name: str, counter: str | None, **fields: Any) -> Kind:
    return Kind(name, "camera_info", counter, lambda f, stamp: f.send(stamp, info=f.info(stamp, **fields)))


def _k(**entries: float) -> list[float]:
    k = list(K_GOOD)
    index = {"fx": 0, "skew": 1, "cx": 2, "k10": 3, "fy": 4, "cy": 5, "k20": 6, "k21": 7, "k22": 8}
    for key, value in entries.items():
        k[index[key]] = value
    return k


def _dets_kind(name: str, counter: str | None, items: list, ids: list[str] | None = None) -> Kind:
    return Kind(name, "detections", counter,
                lambda f, stamp: f.send(stamp, dets=f.detections(stamp, items, ids)))


def _right(box: tuple[float, ...]) -> list:
    return [("right_hand", box, 0.9), ("left_hand", LEFT_BOX, 0.8), ("3", OBJECT_BOX, 0.7)]


def _huge_image(f: Fuzzer, stamp: Any) -> None:
    # 8000 x 6000 mono8 (48 MB) with the 160 x 120 camera_info: the sizes disagree.
    f.send(stamp, image=f.image(stamp, height=6000, width=8000, encoding="mono8", step=8000,
                                data=bytes(8000 * 6000)))


def _tiny_image(f: Fuzzer, stamp: Any) -> None:
    f.send(stamp, image=f.image(stamp, height=1, width=1, step=3, data=bytes(3)),
           info=f.info(stamp, height=1, width=1, k=[1.0, 0, 0.5, 0, 1.0, 0.5, 0, 0, 1]))


def _zero_stamp(f: Fuzzer, stamp: Any) -> None:
    from builtin_interfaces.msg import Time

    f.send(Time(sec=0, nanosec=0))


def _backwards(f: Fuzzer, stamp: Any) -> None:
    from builtin_interfaces.msg import Time

    f.send(Time(sec=stamp.sec - 600, nanosec=0))


def _future(f: Fuzzer, stamp: Any) -> None:
    from builtin_interfaces.msg import Time

    f.send(Time(sec=4_000_000_000 - 2**31 - 1, nanosec=999_999_999))  # 2038, the largest int32 second


def _burst(f: Fuzzer, stamp: Any) -> None:
    f.send(stamp)
    for _ in range(39):
        f.send(f.stamp())


def _stalled_info(f: Fuzzer, stamp: Any) -> None:
    # camera_info stops: frames within camera_info_max_age (5 s) use the last one, later ones have none.
    f.send(stamp, info=True)
    for jump in (1, 2, 10):
        f.send(f.stamp(jump_s=jump), info=None)


def _lonely_detections(f: Fuzzer, stamp: Any) -> None:
    f.pub_dets.publish(f.detections(stamp))


def _param_kind(name: str, values: dict[str, Any]) -> Kind:
    def send(f: Fuzzer, stamp: Any) -> None:
        from node_harness import set_parameters

        results = set_parameters(f.session, NODE, values)
        if any(r.successful for r in results):
            raise AssertionError(f"the node accepted {values}")

    return Kind(name, "parameters", "failures_rejected_parameter", send)


def kinds() -> list[Kind]:
    """Every kind of bad input, in the order they are tried."""
    nan, inf = math.nan, math.inf
    out = [_encoding_kind(e) for e in ROS_ENCODINGS + NOT_ROS_ENCODINGS]
    out += [
        _image_kind("size_0x0", "failures_bad_image", height=0, width=0, step=0, data=b""),
        Kind("size_1x1", "image", "failures_bad_image", _tiny_image),
        Kind("size_8000x6000", "image", "failures_bad_camera_info", _huge_image),
        _image_kind("step_smaller_than_row", "failures_bad_image", step=W * 3 - 1),
        _image_kind("step_larger_than_data", "failures_bad_image", step=W * 3 + 4),
        _image_kind("data_truncated", "failures_bad_image", data=bytes(W * 3 * H // 2)),
        _image_kind("data_empty", "failures_bad_image", data=b""),
        _image_kind("data_too_long", "failures_bad_image", data=bytes(W * 3 * H + 7)),
        _image_kind("height_disagrees", "failures_bad_image", height=H + 1),
        _image_kind("bigendian_rgb8", None, is_bigendian=1),
        _info_kind("k_zero", "failures_bad_camera_info", k=[0.0] * 9),
        _info_kind("fx_zero", "failures_bad_camera_info", k=_k(fx=0.0)),
        _info_kind("fx_negative", "failures_bad_camera_info", k=_k(fx=-200.0)),
        _info_kind("fy_negative", "failures_bad_camera_info", k=_k(fy=-200.0)),
        _info_kind("fx_nan", "failures_bad_camera_info", k=_k(fx=nan)),
        _info_kind("fy_inf", "failures_bad_camera_info", k=_k(fy=inf)),
        _info_kind("cx_nan", "failures_bad_camera_info", k=_k(cx=nan)),
        _info_kind("k_lower_entry", "failures_bad_camera_info", k=_k(k10=5.0)),
        _info_kind("k_last_row", "failures_bad_camera_info", k=_k(k20=0.1, k22=2.0)),
        _info_kind("k22_zero", "failures_bad_camera_info", k=_k(k22=0.0)),
        _info_kind("size_disagrees", "failures_bad_camera_info", width=640, height=480),
        _info_kind("size_unset", None, width=0, height=0),
        _info_kind("distortion_plumb_bob", None, distortion_model="plumb_bob",
                   d=[0.1, -0.2, 0.001, 0.0, 0.05]),
        _info_kind("distortion_rational", None, distortion_model="rational_polynomial", d=[0.1] * 8),
        _info_kind("distortion_equidistant", None, distortion_model="equidistant",
                   d=[0.1, 0.01, 0.0, 0.0]),
        _info_kind("distortion_unknown", None, distortion_model="fisheye9000", d=[1.0] * 3),
        _info_kind("distortion_nan", None, distortion_model="plumb_bob", d=[nan] * 5),
        Kind("camera_info_missing", "camera_info", "failures_bad_camera_info",
             lambda f, stamp: f.send(f.stamp(jump_s=100), info=None)),
        _dets_kind("box_nan", "failures_bad_box", _right((nan, 30.0, 80.0, 90.0))),
        _dets_kind("box_inf", "failures_bad_box", _right((30.0, 30.0, inf, 90.0))),
        _dets_kind("box_negative_size", "failures_bad_box", _right((80.0, 90.0, 30.0, 30.0))),
        _dets_kind("box_zero_size", "failures_bad_box", _right((40.0, 40.0, 40.0, 40.0))),
        _dets_kind("box_outside", "failures_bad_box", _right((500.0, 500.0, 560.0, 580.0))),
        _dets_kind("box_negative_coords", "failures_bad_box", _right((-90.0, -90.0, -30.0, -20.0))),
        _dets_kind("detections_1000", None,
                   GOOD_ITEMS + [("3", (float(i % 150), 10.0, float(i % 150) + 10, 30.0), 0.5)
                                 for i in range(997)]),
        _dets_kind("hands_300", "failures_too_many_hands",  # beyond max_hands: the best 10 estimated
                   GOOD_ITEMS + [("right_hand", (float(i % 150), 10.0, float(i % 150) + 20, 40.0), 0.3)
                                 for i in range(300)]),
        _dets_kind("detections_empty_array", None, []),
        _dets_kind("detection_without_results", "failures_unknown_class",
                   [*GOOD_ITEMS[:2], (None, OBJECT_BOX, 0)]),
        _dets_kind("unknown_class", "failures_unknown_class", [*GOOD_ITEMS[:2], ("999", OBJECT_BOX, 0.7)]),
        _dets_kind("empty_class_id", "failures_unknown_class", [*GOOD_ITEMS[:2], ("", OBJECT_BOX, 0.7)]),
        _dets_kind("score_nan", None, [*GOOD_ITEMS, ("right_hand", RIGHT_BOX, nan)]),
        _dets_kind("hands_without_objects", None, GOOD_ITEMS[:2]),
        _dets_kind("objects_without_hands", None, [("3", OBJECT_BOX, 0.7), ("3", LEFT_BOX, 0.6)]),
        _dets_kind("duplicate_ids", None, GOOD_ITEMS, ids=["a", "a", "a"]),
        _dets_kind("two_right_hands", None, [*GOOD_ITEMS, ("right_hand", RIGHT_BOX, 0.9)]),
        Kind("detections_without_image", "detections", "failures_unmatched_detections", _lonely_detections),
        Kind("stamp_zero", "time", "failures_time_jump_back", _zero_stamp),
        Kind("stamp_backwards", "time", "failures_time_jump_back", _backwards),
        Kind("stamp_far_future", "time", "failures_time_jump_back", _future),
        # Under a burst frames are processed, dropped by 'latest' or left unmatched when the synchroniser's
        # queue overflows (images arriving before their detections); a few may still wait to be matched.
        Kind("burst_40_frames", "time", "frames_accounted", _burst, min_count=30),
        # Its last frame waits camera_info_wait, then for the node's poll timer; on a loaded machine that can
        # take longer than 3 s, and the good frame sent meanwhile would replace it under 'latest'.
        Kind("camera_info_stalled", "time", "failures_bad_camera_info", _stalled_info, count_wait_s=15.0),
        _param_kind("param_wrong_type_threshold", {"hand_score_threshold": "high"}),
        _param_kind("param_out_of_range_threshold", {"hand_score_threshold": 1.5}),
        _param_kind("param_negative_threshold", {"object_score_threshold": -0.1}),
        _param_kind("param_wrong_type_bool", {"hand_score_threshold": True}),
        _param_kind("param_read_only", {"queue_policy": "all"}),
        _param_kind("param_wrong_type_read_only", {"sync_slop": "soon"}),
        _compressed_kind("compressed_garbage", "failures_bad_image",
                         lambda f: bytes(np.random.default_rng(2).integers(0, 256, 5000, dtype=np.uint8))),
        _compressed_kind("compressed_empty", "failures_bad_image", lambda f: b""),
        _compressed_kind("compressed_text", "failures_bad_image", lambda f: b"hello, not an image"),
        _compressed_kind("compressed_png_header_only", "failures_bad_image", lambda f: _png(f)[:40], "png"),
        _compressed_kind("compressed_png_labelled_jpeg", None, _png, "jpeg"),
    ]
    return out


# ----------------------------------------------------------------------------------------------------------
# Running


def input_qos(transport: str, reliability: str, depth: int) -> dict[str, Any]:
    """``qos_overrides`` of the node's three input subscriptions (remapped to /fuzz/*, see start_node)."""
    from hfl_ros.ros.names import qos_override_parameters

    image = "/fuzz/image/compressed" if transport == "compressed" else "/fuzz/image"
    params: dict[str, Any] = {}
    for topic in (image, "/fuzz/camera_info", "/fuzz/detections"):
        params.update(qos_override_parameters(topic, "subscription", reliability=reliability, depth=depth))
    return params


def node_params(assets: dict[str, str], transport: str = "raw") -> dict[str, Any]:
    return {**assets, "num_threads": 1, "device": "cpu", "diagnostics_period": 0.2,
            "camera_info_max_age": 5.0, "camera_info_wait": 0.1, **input_qos(transport, "reliable", 50),
            "publish_debug_image": False}


def start_node(directory: Path, domain: int, assets: dict[str, str], **overrides: Any) -> Any:
    """The rigged node, its inputs remapped to /fuzz/* (``overrides``: more parameters)."""
    from node_harness import start_process
    from ros_helpers import write_params_file

    directory.mkdir(parents=True, exist_ok=True)
    transport = overrides.get("image_transport", "raw")
    params = write_params_file(directory / "params.yaml", {**node_params(assets, transport), **overrides})
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), str(TEST_DIR), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, str(TEST_DIR / "rigged_perception_node.py"), "--ros-args", "--params-file",
           str(params), "-r", "image:=/fuzz/image", "-r", "image/compressed:=/fuzz/image/compressed", "-r",
           "camera_info:=/fuzz/camera_info", "-r", "detections:=/fuzz/detections"]
    return start_process(cmd, env, directory / "node")


def try_kind(fuzzer: Fuzzer, kind: Kind) -> dict[str, Any]:
    """Send one kind; wait for its count (a fault) or its answer (a benign oddity); then a good frame."""
    before = fuzzer.counters(fuzzer.processed)
    started = time.monotonic()
    row: dict[str, Any] = {"kind": kind.name, "group": kind.group, "counter": kind.counter}
    stamp = fuzzer.stamp()
    try:
        kind.send(fuzzer, stamp)
        row["sent"] = True
    except Exception as exc:  # e.g. the node accepted a bad parameter
        row["sent"], row["send_error"] = False, f"{type(exc).__name__}: {exc}"

    def count(wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while row["counted"] < kind.min_count and time.monotonic() < deadline and fuzzer.proc.poll() is None:
            row["counted"] = fuzzer.counters().get(kind.counter, 0) - before.get(kind.counter, 0)

    if kind.counter is not None:
        # Counted before the good frame is sent, so that 'latest' does not drop the bad frame unseen; some
        # faults (detections without an image) are only known once a newer frame arrives.
        row["counted"] = 0
        count(kind.count_wait_s)
    else:
        try:
            fuzzer.poses_at(stamp, timeout=10.0)
            row["answered_itself"] = True
        except Exception:
            row["answered_itself"] = False
    try:
        row["answered_after"] = fuzzer.good_frame()
    except Exception as exc:
        row["answered_after"], row["error"] = False, f"{type(exc).__name__}: {str(exc)[:300]}"
    if kind.counter is not None and row["answered_after"]:
        count(5.0)
    if kind.counter == "frames_accounted":
        after = fuzzer.counters()
        row["deltas"] = {k: after.get(k, 0) - before.get(k, 0) for k in
                         ("frames_processed", "dropped_frames", "unmatched_images",
                          "failures_unmatched_detections", "waiting_for_camera_info")}
    key = (stamp.sec, stamp.nanosec)
    bad = [m for m in fuzzer.poses if (m.header.stamp.sec, m.header.stamp.nanosec) == key]
    if bad:
        row["bad_frame"] = [(p.status, p.status_message[:120]) for p in bad[0].poses]
    row["survived"] = fuzzer.proc.poll() is None
    fuzzer.processed = len(fuzzer.poses)
    row["seconds"] = round(time.monotonic() - started, 3)
    return row


def check_log(text: str, duration_s: float, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per reason: logged lines; the log is throttled when none has more than one line per LOG_PERIOD_S."""
    lines: dict[str, int] = {}
    for reason in re.findall(r"\[([a-z_]+)\] ", text):
        lines[reason] = lines.get(reason, 0) + 1
    limit = int(duration_s / LOG_PERIOD_S) + 1
    for row in rows:
        counter = row.get("counter") or ""
        if counter.startswith("failures_"):
            row["logged"] = counter[len("failures_"):] in lines
    return {"lines_per_reason": lines, "max_lines_allowed": limit,
            "throttled": all(n <= limit for n in lines.values())}


def _run_phase(session: Any, directory: Path, domain: int, assets: dict[str, str], transport: str,
               todo: list[Kind], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One node with ``image_transport`` = ``transport`` gets ``todo``; rows appended; its log checked."""
    from node_harness import stop_process

    proc = start_node(directory, domain, assets, image_transport=transport)
    started = time.monotonic()
    fuzzer = Fuzzer(session, proc, transport)
    try:
        fuzzer.wait_ready()
        fuzzer.processed = 0
        if not fuzzer.good_frame():
            raise RuntimeError(f"the node ({transport}) does not answer a good frame before any fuzzing")
        fuzzer.processed = len(fuzzer.poses)
        for kind in todo:
            rows.append(try_kind(fuzzer, kind))
            print(json.dumps(rows[-1]), flush=True)
            if not rows[-1]["survived"]:
                break
        return check_log(fuzzer.log_text(), time.monotonic() - started, rows)
    finally:
        stop_process(proc)
        for entity in (fuzzer.pub_image, fuzzer.pub_info, fuzzer.pub_dets):
            session.node.destroy_publisher(entity)
        for entity in (fuzzer.sub_poses, fuzzer.sub_diag):
            session.node.destroy_subscription(entity)


def run(names: list[str] | None = None, work: Path | None = None) -> dict[str, Any]:
    """Start a node, try the kinds (all, or ``names``), stop the node; the summary."""
    import torch
    from node_harness import RosSession
    from ros_helpers import make_node_assets, module_domain_id

    torch.set_num_threads(1)
    tmp = tempfile.TemporaryDirectory() if work is None else None
    directory = Path(tmp.name) if tmp is not None else work
    selected = [k for k in kinds() if names is None or k.name in names]
    domain = module_domain_id("fuzz_node")
    assets = make_node_assets(directory / "assets")
    session = RosSession(domain, "fuzz_node")
    rows: list[dict[str, Any]] = []
    logs: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        for transport in ("raw", "compressed"):
            todo = [k for k in selected if k.transport == transport]
            if todo:
                phase_rows: list[dict[str, Any]] = []
                logs.append(_run_phase(session, directory / transport, domain, assets, transport, todo,
                                       phase_rows))
                rows += phase_rows
                if not all(r["survived"] for r in phase_rows):
                    break
        duration = time.monotonic() - started
    finally:
        session.close()
        if tmp is not None:
            tmp.cleanup()
    log = {"throttled": all(item["throttled"] for item in logs), "lines_per_reason": {}}
    for item in logs:
        for reason, count in item["lines_per_reason"].items():
            log["lines_per_reason"][reason] = log["lines_per_reason"].get(reason, 0) + count
    faults = [r for r in rows if r["counter"] is not None]
    kind_by_name = {k.name: k for k in selected}

    def passed(row: dict[str, Any]) -> bool:
        if row["counter"] is None:
            handled = row.get("answered_itself", False)
        else:
            minimum = kind_by_name[row["kind"]].min_count
            handled = row.get("counted", 0) >= minimum and row.get("logged", True)
        return row["survived"] and row["answered_after"] and row.get("sent", False) and handled

    return {
        "benchmark": "fuzz_node",
        "kinds_tried": len(rows),
        "survived": sum(r["survived"] for r in rows),
        "answered_after": sum(r["answered_after"] for r in rows),
        "fault_kinds": len(faults),
        "counted": sum(1 for r in faults if r.get("counted", 0) > 0),
        "logged": sum(1 for r in faults if r.get("logged", True)),
        "log_throttled": log["throttled"],
        "log_lines_per_reason": log["lines_per_reason"],
        "failed_kinds": [r["kind"] for r in rows if not passed(r)],
        "groups": sorted({r["group"] for r in rows}),
        "seconds": round(duration, 1),
        "rows": rows,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated kind names (default: all)")
    parser.add_argument("--out", type=Path, help="also write the summary JSON here")
    parser.add_argument("--work", type=Path,
                        help="keep the assets and the node logs here (default: a temporary directory)")
    args = parser.parse_args()
    summary = run(args.only.split(",") if args.only else None, args.work)
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1))
    rows = summary.pop("rows")
    print(json.dumps({**summary, "rows_written": len(rows)}))
    return 0 if not summary["failed_kinds"] and summary["log_throttled"] else 1


if __name__ == "__main__":
    sys.exit(main())
