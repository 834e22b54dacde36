"""Small synthetic input bags (noise images, camera_info, one hand and one object box per frame).

For tests and benchmarks of the bag tools: they exercise reading, sync, decoding and writing, not the model
(the realistic rendered clip is ``hfl-ros make-sample-bag``). Written with rosbags, no ROS runtime needed.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .typestore import typestore

IMAGE_TOPIC = "/camera/color/image_raw"
INFO_TOPIC = "/camera/color/camera_info"
DETECTIONS_TOPIC = "/detections"
FRAME_ID = "camera_color_optical_frame"
T0_NS = 1_700_000_000_000_000_000
PERIOD_NS = 33_333_333
HAND_BOX = (60.0, 50.0, 140.0, 130.0)
OBJECT_BOX = (100.0, 70.0, 180.0, 150.0)
_CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1, "16UC1": 2}


@dataclass
class FrameSpec:
    """One input frame: the image stamp and which messages are recorded for it."""

    stamp_ns: int
    with_info: bool = True
    with_detections: bool = True
    encoding: str = "rgb8"


def frame_specs(count: int, t0_ns: int = T0_NS) -> list[FrameSpec]:
    """``count`` regular frames at 30 Hz."""
    return [FrameSpec(t0_ns + i * PERIOD_NS) for i in range(count)]


def _new(name: str, **fields: Any) -> Any:
    return typestore().types[name](**fields)


def _header(stamp_ns: int) -> Any:
    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    stamp = _new("builtin_interfaces/msg/Time", sec=sec, nanosec=nanosec)
    return _new("std_msgs/msg/Header", stamp=stamp, frame_id=FRAME_ID)


def make_image(stamp_ns: int, width: int, height: int, encoding: str = "rgb8", seed: int = 0) -> Any:
    """A sensor_msgs/Image of random pixels."""
    step = width * _CHANNELS[encoding]
    pixels = np.random.default_rng(seed).integers(0, 255, size=height * step, dtype=np.uint8)
    return _new("sensor_msgs/msg/Image", header=_header(stamp_ns), height=height, width=width,
                encoding=encoding, is_bigendian=0, step=step, data=pixels)


def make_compressed_image(stamp_ns: int, width: int, height: int, seed: int = 0) -> Any:
    """A sensor_msgs/CompressedImage (JPEG) of random pixels."""
    import cv2

    pixels = np.random.default_rng(seed).integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    ok, jpeg = cv2.imencode(".jpg", pixels)
    assert ok
    return _new("sensor_msgs/msg/CompressedImage", header=_header(stamp_ns),
                format="rgb8; jpeg compressed bgr8", data=jpeg.reshape(-1))


def make_camera_info(stamp_ns: int, width: int, height: int, focal: float = 500.0) -> Any:
    """A sensor_msgs/CameraInfo of a pinhole camera centred on the image."""
    roi = _new("sensor_msgs/msg/RegionOfInterest", x_offset=0, y_offset=0, height=0, width=0,
               do_rectify=False)
    cx, cy = width / 2.0, height / 2.0
    return _new("sensor_msgs/msg/CameraInfo", header=_header(stamp_ns), height=height, width=width,
                distortion_model="plumb_bob", d=np.zeros(5),
                k=np.array([focal, 0, cx, 0, focal, cy, 0, 0, 1]),
                r=np.eye(3).reshape(-1), p=np.array([focal, 0, cx, 0, 0, focal, cy, 0, 0, 0, 1, 0]),
                binning_x=0, binning_y=0, roi=roi)


def _detection(stamp_ns: int, box: Sequence[float], class_id: str, score: float) -> Any:
    x1, y1, x2, y2 = box
    centre = _new("vision_msgs/msg/Pose2D", theta=0.0,
                  position=_new("vision_msgs/msg/Point2D", x=(x1 + x2) / 2, y=(y1 + y2) / 2))
    pose = _new("geometry_msgs/msg/Pose", position=_new("geometry_msgs/msg/Point", x=0.0, y=0.0, z=0.0),
                orientation=_new("geometry_msgs/msg/Quaternion", x=0.0, y=0.0, z=0.0, w=1.0))
    hypothesis = _new("vision_msgs/msg/ObjectHypothesisWithPose",
                      hypothesis=_new("vision_msgs/msg/ObjectHypothesis", class_id=class_id, score=score),
                      pose=_new("geometry_msgs/msg/PoseWithCovariance", pose=pose, covariance=np.zeros(36)))
    bbox = _new("vision_msgs/msg/BoundingBox2D", center=centre, size_x=x2 - x1, size_y=y2 - y1)
    return _new("vision_msgs/msg/Detection2D", header=_header(stamp_ns), results=[hypothesis], bbox=bbox,
                id="")


def make_detections(stamp_ns: int, object_class: str = "3") -> Any:
    """A vision_msgs/Detection2DArray with a right hand box and an object box that overlaps it."""
    detections = [_detection(stamp_ns, HAND_BOX, "right_hand", 0.9),
                  _detection(stamp_ns, OBJECT_BOX, object_class, 0.8)]
    return _new("vision_msgs/msg/Detection2DArray", header=_header(stamp_ns), detections=detections)


def write_bag(path: Path, frames: Sequence[FrameSpec], *, storage: str = "mcap", width: int = 200,
              height: int = 160, detection_delay_ns: int = 5_000_000, detection_offset_ns: int = 0,
              extra_topics: bool = False, drop_topics: Sequence[str] = (), compressed: bool = False,
              info_size: tuple[int, int] | None = None) -> Path:
    """Write a bag of ``frames``; ``storage`` is "mcap", "sqlite3" or "bare-mcap" (a single .mcap file).

    Frame i is recorded at T0 + i * PERIOD whatever its header stamp (so stamps can go backwards): camera_info
    and image at that time, the detections ``detection_delay_ns`` later (as a detector node would publish
    them). Detection headers carry the image stamp plus ``detection_offset_ns``. Topics in ``drop_topics`` are
    not written. ``compressed`` records JPEG sensor_msgs/CompressedImage on ``<IMAGE_TOPIC>/compressed``.
    ``info_size`` (width, height) gives the camera_info another resolution than the images'. Returns the bag
    path to read.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    ts = typestore()
    plugin = StoragePlugin.SQLITE3 if storage == "sqlite3" else StoragePlugin.MCAP
    bag_dir = path if storage != "bare-mcap" else path.with_name(path.name + "_dir")
    entries: list[tuple[int, str, Any]] = []
    for i, spec in enumerate(frames):
        recorded = T0_NS + i * PERIOD_NS
        if spec.with_info:
            info_w, info_h = info_size or (width, height)
            entries.append((recorded, INFO_TOPIC, make_camera_info(spec.stamp_ns, info_w, info_h)))
        if compressed:
            entries.append((recorded + 1, f"{IMAGE_TOPIC}/compressed",
                            make_compressed_image(spec.stamp_ns, width, height, seed=i)))
        else:
            image = make_image(spec.stamp_ns, width, height, spec.encoding, i)
            entries.append((recorded + 1, IMAGE_TOPIC, image))
        if spec.with_detections:
            detections = make_detections(spec.stamp_ns + detection_offset_ns)
            entries.append((recorded + detection_delay_ns, DETECTIONS_TOPIC, detections))
    if extra_topics:
        entries.append((T0_NS, "/chatter", _new("std_msgs/msg/String", data="hello")))
    entries = sorted((e for e in entries if e[1] not in drop_topics), key=lambda entry: entry[0])
    with Writer(bag_dir, version=9, storage_plugin=plugin) as writer:
        connections = {}
        for log_ns, topic, msg in entries:
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msg.__msgtype__, typestore=ts)
            writer.write(connections[topic], log_ns, ts.serialize_cdr(msg, msg.__msgtype__))
    if storage == "bare-mcap":
        shutil.move(str(next(bag_dir.glob("*.mcap"))), str(path))
        shutil.rmtree(bag_dir)
    return path
