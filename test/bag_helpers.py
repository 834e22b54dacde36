"""Small synthetic input bags for the labeler and player tests (written with rosbags, no ROS runtime)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hfl_ros.bag.typestore import typestore

IMAGE_TOPIC = "/camera/color/image_raw"
INFO_TOPIC = "/camera/color/camera_info"
DETECTIONS_TOPIC = "/detections"
FRAME_ID = "camera_color_optical_frame"
T0_NS = 1_700_000_000_000_000_000
PERIOD_NS = 33_333_333
HAND_BOX = (60.0, 50.0, 140.0, 130.0)
OBJECT_BOX = (100.0, 70.0, 180.0, 150.0)


@dataclass
class FrameSpec:
    """One input frame: the image stamp and which messages are recorded for it."""

    stamp_ns: int
    with_info: bool = True
    with_detections: bool = True
    encoding: str = "rgb8"


def frame_specs(count: int, t0_ns: int = T0_NS) -> list[FrameSpec]:
    return [FrameSpec(t0_ns + i * PERIOD_NS) for i in range(count)]


def _header(stamp_ns: int):
    ts = typestore()
    Time = ts.types["builtin_interfaces/msg/Time"]
    Header = ts.types["std_msgs/msg/Header"]
    return Header(stamp=Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000), frame_id=FRAME_ID)


def make_image(stamp_ns: int, width: int, height: int, encoding: str = "rgb8", seed: int = 0):
    ts = typestore()
    rng = np.random.default_rng(seed)
    channels = 3 if encoding in ("rgb8", "bgr8") else 2 if encoding == "16UC1" else 1
    pixels = rng.integers(0, 255, size=(height, width * channels), dtype=np.uint8)
    return ts.types["sensor_msgs/msg/Image"](
        header=_header(stamp_ns), height=height, width=width, encoding=encoding, is_bigendian=0,
        step=width * channels, data=pixels.reshape(-1))


def make_camera_info(stamp_ns: int, width: int, height: int):
    ts = typestore()
    roi = ts.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    k = np.array([500.0, 0, width / 2, 0, 500.0, height / 2, 0, 0, 1])
    p = np.array([500.0, 0, width / 2, 0, 0, 500.0, height / 2, 0, 0, 0, 1, 0])
    return ts.types["sensor_msgs/msg/CameraInfo"](
        header=_header(stamp_ns), height=height, width=width, distortion_model="plumb_bob", d=np.zeros(5),
        k=k, r=np.eye(3).reshape(-1), p=p, binning_x=0, binning_y=0, roi=roi)


def _bbox(box: Sequence[float]):
    t = typestore().types
    x1, y1, x2, y2 = box
    center = t["vision_msgs/msg/Pose2D"](position=t["vision_msgs/msg/Point2D"](x=(x1 + x2) / 2, y=(y1 + y2) / 2),
                                         theta=0.0)
    return t["vision_msgs/msg/BoundingBox2D"](center=center, size_x=x2 - x1, size_y=y2 - y1)


def _detection(stamp_ns: int, box: Sequence[float], class_id: str, score: float):
    t = typestore().types
    pose = t["geometry_msgs/msg/PoseWithCovariance"](
        pose=t["geometry_msgs/msg/Pose"](position=t["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0),
                                         orientation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)),
        covariance=np.zeros(36))
    hyp = t["vision_msgs/msg/ObjectHypothesisWithPose"](
        hypothesis=t["vision_msgs/msg/ObjectHypothesis"](class_id=class_id, score=score), pose=pose)
    return t["vision_msgs/msg/Detection2D"](header=_header(stamp_ns), results=[hyp], bbox=_bbox(box), id="")


def make_detections(stamp_ns: int, object_class: str = "3"):
    t = typestore().types
    dets = [_detection(stamp_ns, HAND_BOX, "right_hand", 0.9), _detection(stamp_ns, OBJECT_BOX, object_class, 0.8)]
    return t["vision_msgs/msg/Detection2DArray"](header=_header(stamp_ns), detections=dets)


def write_bag(path: Path, frames: Sequence[FrameSpec], *, storage: str = "mcap", width: int = 200,
              height: int = 160, detection_delay_ns: int = 5_000_000, detection_offset_ns: int = 0,
              extra_topics: bool = False, drop_topics: Sequence[str] = ()) -> Path:
    """Write a bag of ``frames``; ``storage`` is "mcap", "sqlite3" or "bare-mcap" (a single .mcap file).

    Frame i is recorded at T0 + i * PERIOD whatever its header stamp (so stamps can go backwards): camera_info
    and image at that time, the detections ``detection_delay_ns`` later (as a detector node would publish them).
    Detection headers carry the image stamp plus ``detection_offset_ns``. Topics in ``drop_topics`` are not
    written. Returns the bag path to read.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    ts = typestore()
    plugin = StoragePlugin.SQLITE3 if storage == "sqlite3" else StoragePlugin.MCAP
    bag_dir = path if storage != "bare-mcap" else path.with_name(path.name + "_dir")
    entries: list[tuple[int, str, object]] = []
    for i, spec in enumerate(frames):
        recorded = T0_NS + i * PERIOD_NS
        if spec.with_info:
            entries.append((recorded, INFO_TOPIC, make_camera_info(spec.stamp_ns, width, height)))
        entries.append((recorded + 1, IMAGE_TOPIC, make_image(spec.stamp_ns, width, height, spec.encoding, i)))
        if spec.with_detections:
            entries.append((recorded + detection_delay_ns, DETECTIONS_TOPIC,
                            make_detections(spec.stamp_ns + detection_offset_ns)))
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


def storage_file(bag: Path) -> Path:
    """The single storage file of a bag path (the path itself for a bare file)."""
    if bag.is_file():
        return bag
    return next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))


def write_test_assets(root: Path) -> dict[str, str]:
    """A random-weight checkpoint (resnet18 trunk, 128 px input), the stand-in hand model and one object model."""
    import torch

    from hfl_ros.model.checkpoint import save_checkpoint
    from hfl_ros.model.hflnet import HFLNet
    from hfl_ros.model.standin_hand import write_standin_hand_model

    mano = root / "hand"
    mano.mkdir(parents=True)
    write_standin_hand_model(mano / "STANDIN_HAND_RIGHT.pkl", "right", 0)
    write_standin_hand_model(mano / "STANDIN_HAND_LEFT.pkl", "left", 0)
    torch.manual_seed(0)
    net = HFLNet(mano / "STANDIN_HAND_RIGHT.pkl", trunk="resnet18", input_size=128)
    checkpoint = save_checkpoint(root / "random.pt", net, {"note": "random weights for tests"})
    objects = root / "objects" / "3"
    objects.mkdir(parents=True)
    np.savetxt(objects / "points.xyz", np.random.default_rng(0).uniform(-0.04, 0.04, (300, 3)))
    return {"checkpoint": str(checkpoint), "mano_dir": str(mano), "object_models_dir": str(objects.parent)}
