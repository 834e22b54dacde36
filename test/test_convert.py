"""ROS message -> numpy conversions, for rclpy-style and rosbags-style messages."""

from __future__ import annotations

import array
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from ros_helpers import rosbags_typestore

from hfl_ros.errors import BadCameraError, BadImageError
from hfl_ros.results import Side
from hfl_ros.ros.convert import (
    LabelMap,
    camera_info_to_K,
    compressed_to_rgb,
    detections_from_msg,
    image_to_rgb,
    rgb_to_image_data,
    stamp_to_ns,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (7, 5, 3), dtype=np.uint8)


def _encode(rgb: np.ndarray, encoding: str) -> np.ndarray:
    if encoding == "rgb8":
        return rgb
    if encoding == "bgr8":
        return rgb[:, :, ::-1]
    if encoding == "rgba8":
        return np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)])
    if encoding == "bgra8":
        return np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 200, np.uint8)])
    if encoding == "mono8":
        return rgb[:, :, 0]
    raise AssertionError(encoding)


def _image(pixels: np.ndarray, encoding: str, padding: int = 0, data_kind: str = "bytes") -> SimpleNamespace:
    h, w = pixels.shape[:2]
    rows = pixels.reshape(h, -1)
    step = rows.shape[1] + padding
    buf = np.zeros((h, step), np.uint8)
    buf[:, : rows.shape[1]] = rows
    kinds = {"bytes": buf.tobytes(), "array": array.array("B", buf.tobytes()), "numpy": buf.reshape(-1)}
    data = kinds[data_kind]
    return SimpleNamespace(height=h, width=w, encoding=encoding, is_bigendian=0, step=step, data=data)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
@pytest.mark.parametrize("padding", [0, 3])
@pytest.mark.parametrize("data_kind", ["bytes", "array", "numpy"])
def test_image_to_rgb_decodes_every_encoding(encoding, padding, data_kind):
    msg = _image(_encode(RGB, encoding), encoding, padding, data_kind)
    out = image_to_rgb(msg)
    assert out.shape == (7, 5, 3) and out.dtype == np.uint8
    expected = np.repeat(RGB[:, :, :1], 3, axis=2) if encoding == "mono8" else RGB
    np.testing.assert_array_equal(out, expected)


def test_image_to_rgb_accepts_rclpy_and_rosbags_messages():
    from sensor_msgs.msg import Image

    ros = Image(height=7, width=5, encoding="bgr8", step=15, data=rgb_to_image_data(RGB[:, :, ::-1]))
    np.testing.assert_array_equal(image_to_rgb(ros), RGB)

    store = rosbags_typestore()
    Header = store.types["std_msgs/msg/Header"]
    Time = store.types["builtin_interfaces/msg/Time"]
    bag = store.types["sensor_msgs/msg/Image"](
        header=Header(stamp=Time(sec=1, nanosec=2), frame_id="cam"), height=7, width=5, encoding="rgb8",
        is_bigendian=0, step=15, data=RGB.reshape(-1).copy())
    np.testing.assert_array_equal(image_to_rgb(bag), RGB)


@pytest.mark.parametrize(
    ("msg", "needle"),
    [
        (_image(RGB, "16UC1"), "unsupported image encoding '16UC1'"),
        (SimpleNamespace(height=7, width=5, encoding="rgb8", step=10, data=bytes(70)), "step 10 is smaller"),
        (SimpleNamespace(height=7, width=5, encoding="rgb8", step=15, data=bytes(100)), "has 100 bytes"),
        (SimpleNamespace(height=0, width=5, encoding="rgb8", step=15, data=b""), "empty image"),
    ],
)
def test_image_to_rgb_rejects_bad_images_with_a_reason(msg, needle):
    with pytest.raises(BadImageError, match=needle) as info:
        image_to_rgb(msg)
    assert info.value.reason == "bad_image"


def test_compressed_round_trip_and_garbage():
    ok, png = cv2.imencode(".png", RGB[:, :, ::-1])
    assert ok
    out = compressed_to_rgb(SimpleNamespace(format="png", data=png.tobytes()))
    np.testing.assert_array_equal(out, RGB)
    with pytest.raises(BadImageError, match="cannot decode"):
        compressed_to_rgb(SimpleNamespace(format="jpeg", data=b"not an image"))
    with pytest.raises(BadImageError, match="empty"):
        compressed_to_rgb(SimpleNamespace(format="jpeg", data=b""))


def test_rgb_to_image_data_round_trip():
    data = rgb_to_image_data(RGB)
    assert isinstance(data, array.array) and data.typecode == "B"
    assert bytes(data) == RGB.tobytes()


def test_camera_info_to_K():
    k = [500.0, 0.0, 80.0, 0.0, 510.0, 60.0, 0.0, 0.0, 1.0]
    K = camera_info_to_K(SimpleNamespace(k=np.array(k)))
    np.testing.assert_array_equal(K, np.array(k).reshape(3, 3))
    from sensor_msgs.msg import CameraInfo

    np.testing.assert_array_equal(camera_info_to_K(CameraInfo(k=k)), K)


@pytest.mark.parametrize(
    ("msg", "needle"),
    [
        (None, "camera_info missing"),
        (SimpleNamespace(k=np.zeros(9)), "all zero"),
        (SimpleNamespace(k=np.array([np.nan, 0, 80, 0, 500, 60, 0, 0, 1])), "non-finite"),
        (SimpleNamespace(k=np.array([-5.0, 0, 80, 0, 500, 60, 0, 0, 1])), "non-positive focal"),
        (SimpleNamespace(k=np.ones(4)), "4 values"),
    ],
)
def test_camera_info_to_K_rejects_bad_K(msg, needle):
    with pytest.raises(BadCameraError, match=needle) as info:
        camera_info_to_K(msg)
    assert info.value.reason == "bad_camera_info"


def test_stamp_to_ns():
    assert stamp_to_ns(SimpleNamespace(sec=3, nanosec=25)) == 3_000_000_025


def _detection(store, cx, cy, w, h, hypotheses):
    t = store.types
    results = [
        t["vision_msgs/msg/ObjectHypothesisWithPose"](
            hypothesis=t["vision_msgs/msg/ObjectHypothesis"](class_id=c, score=s),
            pose=t["geometry_msgs/msg/PoseWithCovariance"](
                pose=t["geometry_msgs/msg/Pose"](position=t["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0),
                                                 orientation=t["geometry_msgs/msg/Quaternion"](
                                                     x=0.0, y=0.0, z=0.0, w=1.0)),
                covariance=np.zeros(36)))
        for c, s in hypotheses
    ]
    bbox = t["vision_msgs/msg/BoundingBox2D"](
        center=t["vision_msgs/msg/Pose2D"](position=t["vision_msgs/msg/Point2D"](x=cx, y=cy), theta=0.0),
        size_x=w, size_y=h)
    header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=0, nanosec=0), frame_id="c")
    return t["vision_msgs/msg/Detection2D"](header=header, results=results, bbox=bbox, id="")


def test_detections_from_rosbags_msg_classifies_hands_and_objects():
    store = rosbags_typestore()
    dets = [
        _detection(store, 50.0, 40.0, 20.0, 10.0, [("Right_Hand", 0.9)]),
        _detection(store, 10.0, 10.0, 4.0, 4.0, [("left_hand", 0.8)]),
        _detection(store, 30.0, 30.0, 6.0, 8.0, [("hand", 0.7)]),
        _detection(store, 80.0, 60.0, 10.0, 10.0, [("3", 0.2), ("006_mustard_bottle", 0.6)]),
        _detection(store, 5.0, 5.0, 2.0, 2.0, []),
    ]
    msg = store.types["vision_msgs/msg/Detection2DArray"](header=dets[0].header, detections=dets)
    out = detections_from_msg(msg, LabelMap(default_hand_side="left"))
    assert [d.side for d in out] == [Side.RIGHT, Side.LEFT, Side.LEFT, None, None]
    assert [d.class_id for d in out] == [None, None, None, "006_mustard_bottle", ""]
    np.testing.assert_allclose(out[0].box, [40.0, 35.0, 60.0, 45.0])
    assert out[0].score == pytest.approx(0.9)
    assert out[3].score == pytest.approx(0.6)


def test_detections_from_rclpy_msg():
    from vision_msgs.msg import BoundingBox2D, Detection2D, Detection2DArray, ObjectHypothesisWithPose

    hyp = ObjectHypothesisWithPose()
    hyp.hypothesis.class_id = "rh"
    hyp.hypothesis.score = 0.5
    bbox = BoundingBox2D(size_x=10.0, size_y=20.0)
    bbox.center.position.x = 15.0
    bbox.center.position.y = 25.0
    msg = Detection2DArray(detections=[Detection2D(results=[hyp], bbox=bbox)])
    (det,) = detections_from_msg(msg, LabelMap(right_hand_labels=("rh",)))
    assert det.side is Side.RIGHT
    np.testing.assert_allclose(det.box, [10.0, 15.0, 20.0, 35.0])


def test_label_map_rejects_a_label_on_both_sides():
    with pytest.raises(ValueError, match="both right and left"):
        LabelMap(right_hand_labels=("hand",), left_hand_labels=("Hand",))
