"""``hfl-ros make-sample-bag``: a short synthetic rosbag2 (MCAP) clip of a hand moving an object.

Topics (stamps start at :data:`START_TIME_NS` and advance by 1/fps; every message of a frame has its stamp):

- ``/camera/color/image_raw`` (sensor_msgs/Image, rgb8), ``/camera/color/camera_info`` (CameraInfo);
- ``/detections`` (vision_msgs/Detection2DArray): hand ("right_hand") and object (class id) boxes as HFL-Net
  is trained with them (the 2D joints' box grown by 1.1, about the hand's outline; the box of the projected 3D
  object bounds), with detector-like noise (centre jitter, scale noise, score noise, occasional misses);
- ``/ground_truth/hand_object_poses`` (hfl_ros/HandObjectPoseArray, with mesh vertices), built with the same
  message builders as the labeler's output, so estimates and ground truth compare field by field.

The clip is deterministic for a given seed: same arguments, same bytes in every message.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.sample import HandObjectSample
from ..errors import InputError
from ..geometry.boxes import box_from_points
from ..geometry.rotations import axis_angle_to_matrix
from ..results import Detection, HandEstimate, HandObjectResult, ObjectEstimate, Side, Status
from ..ros.names import DEFAULT_CAMERA_FRAME as FRAME_ID
from ..ros.names import DEFAULT_CAMERA_INFO_TOPIC as CAMERA_INFO_TOPIC
from ..ros.names import DEFAULT_DETECTIONS_TOPIC as DETECTIONS_TOPIC
from ..ros.names import DEFAULT_IMAGE_TOPIC as IMAGE_TOPIC

GROUND_TRUTH_TOPIC = "/ground_truth/hand_object_poses"
START_TIME_NS = 1_700_000_000_000_000_000
#: Detections are logged this long after their image, as a detector's output would be.
DETECTION_LATENCY_NS = 30_000_000
HAND_LABELS = {Side.RIGHT: "right_hand", Side.LEFT: "left_hand"}
#: Growth of the 2D joints' box that gives the hand box (HFL-Net's hand box, spec §1).
HAND_BOX_FACTOR = 1.1


def default_assets_dir() -> Path:
    """Where the generated stand-in hand models and object models are cached (``$XDG_CACHE_HOME/hfl_ros``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hfl_ros" / "synthetic_assets"


@dataclass(frozen=True)
class DetectionNoise:
    """How far the simulated detector's boxes stray from the ground truth."""

    centre_sigma: float = 0.03  # of the box size
    scale_sigma: float = 0.05
    score_mean: float = 0.9
    score_sigma: float = 0.05
    miss_probability: float = 0.05


def _noisy_box(rng: np.random.Generator, box: np.ndarray, noise: DetectionNoise, image_wh) -> np.ndarray:
    centre, size = (box[:2] + box[2:]) / 2.0, box[2:] - box[:2]
    centre = centre + rng.normal(0.0, noise.centre_sigma, 2) * size
    size = size * np.clip(1.0 + rng.normal(0.0, noise.scale_sigma, 2), 0.7, 1.3)
    out = np.concatenate([centre - size / 2.0, centre + size / 2.0])
    return np.clip(out, 0.0, np.array([*image_wh, *image_wh], np.float64))


def ground_truth_boxes(sample: HandObjectSample) -> tuple[np.ndarray, np.ndarray]:
    """HFL-Net's training boxes: the 2D joints' box grown by 1.1, the projected 3D object bounds' box."""
    return box_from_points(sample.joints2d, HAND_BOX_FACTOR), box_from_points(sample.control_points2d, 1.0)


def noisy_detections(
    rng: np.random.Generator, sample: HandObjectSample, noise: DetectionNoise
) -> list[Detection]:
    """The simulated detector's output for one frame (hand first, then the object; either may be missed)."""
    height, width = sample.image.shape[:2]
    hand_box, obj_box = ground_truth_boxes(sample)
    out = []
    for box, make in (
        (hand_box, lambda b, s: Detection.hand(b, sample.side, s)),
        (obj_box, lambda b, s: Detection.object(b, sample.class_id, s)),
    ):
        noisy = _noisy_box(rng, box, noise, (width, height))
        score = float(np.clip(rng.normal(noise.score_mean, noise.score_sigma), 0.3, 0.999))
        if rng.random() >= noise.miss_probability:
            out.append(make(noisy, score))
    return out


def ground_truth_result(
    sample: HandObjectSample, hand_box: np.ndarray, object_box: np.ndarray
) -> HandObjectResult:
    """A sample's ground truth as a HandObjectResult (scores 1, errors 0), for the ground-truth topic."""
    hand = HandEstimate(
        side=sample.side,
        box=hand_box,
        detection_score=1.0,
        estimate_score=1.0,
        joints3d=sample.joints3d,
        verts3d=sample.verts3d,
        joints2d=sample.joints2d,
        wrist_rotation=axis_angle_to_matrix(sample.mano_pose[:3]),
        wrist_translation=sample.joints3d[0],
        translation_valid=True,
        reprojection_error_px=0.0,
        mano_pose=sample.mano_pose,
        mano_shape=sample.mano_shape,
    )
    obj = ObjectEstimate(
        class_id=sample.class_id,
        box=object_box,
        score=1.0,
        valid=True,
        rotation=sample.object_R,
        translation=sample.object_t,
        control_points_2d=sample.control_points2d,
        inlier_count=21,
        vote_count=21,
        reprojection_error_px=0.0,
        estimate_score=1.0,
    )
    return HandObjectResult(Status.OK, hand, obj)


def _detections_msg(header: Any, detections: list[Detection]) -> Any:
    """The simulated detector's Detection2DArray (each detection's id is its label)."""
    from . import input_messages as messages

    out = []
    for det in detections:
        label = HAND_LABELS[det.side] if det.is_hand else str(det.class_id)
        out.append(messages.detection(header, det.box, label, det.score, detection_id=label))
    return messages.detection_array(header, out)


@dataclass
class SampleBagInfo:
    """What was written."""

    path: Path
    frames: int
    detections: int
    missed_detections: int


def write_sample_bag(
    out,
    *,
    frames: int = 45,
    fps: float = 15.0,
    image_size: tuple[int, int] = (640, 480),
    seed: int = 0,
    assets_dir=None,
    noise: DetectionNoise | None = None,
) -> SampleBagInfo:
    """Render a clip and write it as a rosbag2 MCAP directory at ``out`` (which must not exist yet)."""
    from ..bag.typestore import message_types
    from ..bag.writer import BagWriter
    from ..data.synthetic import SceneConfig, SyntheticScenes
    from ..ros.pose_messages import results_to_msg
    from . import input_messages as messages

    if frames < 1:
        raise InputError(f"--frames must be at least 1, got {frames}")
    if fps <= 0:
        raise InputError(f"--fps must be positive, got {fps}")
    noise = noise or DetectionNoise()
    assets = Path(assets_dir) if assets_dir is not None else default_assets_dir()
    types = message_types()
    count = missed = 0
    with (
        SyntheticScenes(assets, SceneConfig(image_size=image_size), seed=seed) as scenes,
        BagWriter(Path(out)) as bag,
    ):
        for frame, sample in enumerate(scenes.sequence(frames, fps=fps)):
            stamp = START_TIME_NS + round(frame * 1e9 / fps)
            header = messages.header(stamp, FRAME_ID)
            width, height = image_size
            rng = np.random.default_rng([seed, frame, 11])
            detections = noisy_detections(rng, sample, noise)
            count += len(detections)
            missed += 2 - len(detections)
            hand_box, obj_box = ground_truth_boxes(sample)
            bag.write(CAMERA_INFO_TOPIC, messages.camera_info(header, sample.K, width, height), stamp)
            bag.write(IMAGE_TOPIC, messages.image(header, sample.image, width, height), stamp)
            ground_truth = ground_truth_result(sample, hand_box, obj_box)
            bag.write(
                GROUND_TRUTH_TOPIC, results_to_msg([ground_truth], header, types, with_vertices=True), stamp
            )
            bag.write(DETECTIONS_TOPIC, _detections_msg(header, detections), stamp + DETECTION_LATENCY_NS)
    return SampleBagInfo(Path(out), frames, count, missed)


def parse_size(text: str) -> tuple[int, int]:
    """'640x480' -> (640, 480)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"image size must look like 640x480, got {text!r}") from None
    if width < 32 or height < 32:
        raise argparse.ArgumentTypeError(f"image size {text!r} is too small (at least 32x32)")
    return width, height


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="bag directory to create (must not exist)")
    parser.add_argument("--frames", type=int, default=45, help="number of frames (default 45)")
    parser.add_argument("--fps", type=float, default=15.0, help="frame rate (default 15)")
    parser.add_argument(
        "--size", type=parse_size, default=(640, 480), help="image size WxH (default 640x480)"
    )
    parser.add_argument("--seed", type=int, default=0, help="scene seed (default 0)")
    parser.add_argument(
        "--assets",
        type=Path,
        default=None,
        help=f"cache of generated hand/object models (default {default_assets_dir()})",
    )


def run(args: argparse.Namespace) -> int:
    info = write_sample_bag(
        args.out,
        frames=args.frames,
        fps=args.fps,
        image_size=args.size,
        seed=args.seed,
        assets_dir=args.assets,
    )
    print(
        f"wrote {info.path}: {info.frames} frames, {info.detections} detections "
        f"({info.missed_detections} simulated misses)"
    )
    return 0
