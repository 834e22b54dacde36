"""Small synthetic input bags (noise images, camera_info, one hand and one object box per frame).

For tests and benchmarks of the bag tools and the node: they exercise reading, sync, decoding and writing, not
the model (the realistic rendered clip is ``hfl-ros make-sample-bag``). Written with rosbags, no ROS runtime
needed.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..bag.typestore import typestore
from ..ros.names import DEFAULT_CAMERA_FRAME as FRAME_ID
from ..ros.names import DEFAULT_CAMERA_INFO_TOPIC as INFO_TOPIC
from ..ros.names import DEFAULT_DETECTIONS_TOPIC as DETECTIONS_TOPIC
from ..ros.names import DEFAULT_IMAGE_TOPIC as IMAGE_TOPIC
from . import input_messages as messages

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


def _header(stamp_ns: int) -> Any:
    return messages.header(stamp_ns, FRAME_ID)


def make_image(stamp_ns: int, width: int, height: int, encoding: str = "rgb8", seed: int = 0) -> Any:
    """A sensor_msgs/Image of random pixels."""
    pixels = np.random.default_rng(seed).integers(0, 255, size=height * width * _CHANNELS[encoding],
                                                  dtype=np.uint8)
    return messages.image(_header(stamp_ns), pixels, width, height, encoding)


def make_compressed_image(stamp_ns: int, width: int, height: int, seed: int = 0) -> Any:
    """A sensor_msgs/CompressedImage (JPEG) of random pixels."""
    import cv2

    pixels = np.random.default_rng(seed).integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    ok, jpeg = cv2.imencode(".jpg", pixels)
    assert ok
    return messages.compressed_image(_header(stamp_ns), jpeg, "rgb8; jpeg compressed bgr8")


def make_camera_info(stamp_ns: int, width: int, height: int, focal: float = 500.0) -> Any:
    """A sensor_msgs/CameraInfo of a pinhole camera centred on the image."""
    K = np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])
    return messages.camera_info(_header(stamp_ns), K, width, height)


def make_detections(stamp_ns: int, object_class: str = "3") -> Any:
    """A vision_msgs/Detection2DArray with a right hand box and an object box that overlaps it."""
    detections = [messages.detection(_header(stamp_ns), HAND_BOX, "right_hand", 0.9),
                  messages.detection(_header(stamp_ns), OBJECT_BOX, object_class, 0.8)]
    return messages.detection_array(_header(stamp_ns), detections)


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
        entries.append((T0_NS, "/chatter", ts.types["std_msgs/msg/String"](data="hello")))
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
