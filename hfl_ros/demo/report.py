"""The demo's outputs after labeling: estimates compared with the ground-truth topic, pictures and a summary.

Estimates are read from the labeled bag's HandObjectPoseArray topic and the ground truth from the sample
bag's, matched by header stamp, and scored with the training metrics (:mod:`hfl_ros.train.metrics`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import transforms3d.quaternions as tq
from PIL import Image

from ..bag.reader import BagReader
from ..data.ycb import name_for_class_id
from ..errors import HflRosError
from ..geometry.object_models import ObjectModelLibrary
from ..results import Side, Status
from ..ros.convert import camera_info_to_K, image_to_rgb, stamp_to_ns
from ..train.metrics import HandMetrics, ObjectMetrics
from .overlay import draw_caption, draw_mesh, draw_object, draw_skeleton
from .sample_bag import CAMERA_INFO_TOPIC, GROUND_TRUTH_TOPIC, IMAGE_TOPIC

SYNTHETIC_ONLY_NOTE = (
    "The demo model was trained only on synthetic scenes of the stand-in hand model (which is not MANO) "
    "holding four synthetic YCB-like objects. It knows nothing else and does not work on real camera images; "
    "for real cameras use the official HFL-Net checkpoint with MANO and the YCB models (see docs/demo.md)."
)
_NO_HAND = {Status.BAD_INPUT, Status.INTERNAL_ERROR}


@dataclass
class PoseEntry:
    """One hfl_ros/HandObjectPose message as arrays."""

    status: Status
    side: Side
    joints: np.ndarray  # (21, 3)
    joints2d: np.ndarray  # (21, 2)
    verts: np.ndarray  # (V, 3), V = 0 when not published
    translation_valid: bool
    object_class: str
    object_valid: bool
    object_R: np.ndarray
    object_t: np.ndarray

    @property
    def has_hand(self) -> bool:
        return self.status not in _NO_HAND and bool(np.any(self.joints != 0))


def _xyz(points) -> np.ndarray:
    return np.array([[p.x, p.y, p.z] for p in points], np.float64).reshape(-1, 3)


def entries_from_msg(msg: Any) -> list[PoseEntry]:
    """The poses of a HandObjectPoseArray message (rosbags or rclpy)."""
    out = []
    for pose in msg.poses:
        hand, obj = pose.hand, pose.object
        q = obj.pose.orientation
        out.append(
            PoseEntry(
                status=Status(int(pose.status)),
                side=Side.RIGHT if int(hand.side) == 0 else Side.LEFT,
                joints=_xyz(hand.joints),
                joints2d=np.array([[p.x, p.y] for p in hand.joints_2d], np.float64).reshape(-1, 2),
                verts=_xyz(hand.vertices),
                translation_valid=bool(hand.translation_valid),
                object_class=str(obj.class_id),
                object_valid=bool(obj.valid),
                object_R=tq.quat2mat([q.w, q.x, q.y, q.z]),
                object_t=_xyz([obj.pose.position])[0],
            )
        )
    return out


@dataclass
class DemoFrame:
    """One frame of the clip with its ground truth and the estimate of the same hand (None if none)."""

    index: int
    stamp_ns: int
    image: np.ndarray
    K: np.ndarray
    ground_truth: PoseEntry | None
    estimate: PoseEntry | None
    errors: dict[str, Any] = field(default_factory=dict)


def _by_stamp(reader: BagReader, topic: str) -> dict[int, Any]:
    out = {}
    for raw in reader.messages([topic]):
        msg = raw.deserialize()
        out[stamp_to_ns(msg.header.stamp)] = msg
    return out


def load_frames(input_bag: Path, labeled_bag: Path, poses_topic: str) -> list[DemoFrame]:
    """Frames of the sample bag (image order) with their ground truth and estimates."""
    with BagReader(input_bag) as reader:
        images = _by_stamp(reader, IMAGE_TOPIC)
        infos = _by_stamp(reader, CAMERA_INFO_TOPIC)
        truths = _by_stamp(reader, GROUND_TRUTH_TOPIC)
    with BagReader(labeled_bag) as reader:
        estimates = _by_stamp(reader, poses_topic)
    frames = []
    for index, stamp in enumerate(sorted(images)):
        gt = entries_from_msg(truths[stamp]) if stamp in truths else []
        est = entries_from_msg(estimates[stamp]) if stamp in estimates else []
        truth = gt[0] if gt else None
        same_side = [e for e in est if truth is None or e.side is truth.side]
        frames.append(
            DemoFrame(
                index,
                stamp,
                image_to_rgb(images[stamp]),
                camera_info_to_K(infos[stamp]),
                truth,
                same_side[0] if same_side else None,
            )
        )
    return frames


def _name(class_id: str) -> str:
    try:
        return name_for_class_id(class_id)
    except HflRosError:
        return class_id


def score_frames(frames: list[DemoFrame], object_models: ObjectModelLibrary) -> dict[str, Any]:
    """Hand and object metrics over the frames (each frame's errors are also stored in ``frame.errors``)."""
    hand = HandMetrics()
    objects = ObjectMetrics(names={cid: _name(cid) for cid in object_models.class_ids})
    hand_found = object_valid = 0
    for frame in frames:
        gt, est = frame.ground_truth, frame.estimate
        if gt is None:
            continue
        if est is None or not est.has_hand:
            hand.add_missing()
        else:
            hand_found += 1
            verts_ok = len(est.verts) and len(est.verts) == len(gt.verts)
            errors = hand.add(
                est.joints,
                gt.joints,
                pred_verts=est.verts if verts_ok else None,
                gt_verts=gt.verts if verts_ok else None,
                translation_valid=est.translation_valid,
            )
            frame.errors.update({k: v for k, v in errors.items() if v is not None})
        if gt.object_class in object_models:
            model = object_models.get(gt.object_class)
            if est is None or est.object_class != gt.object_class:
                objects.add_missing(gt.object_class)
            else:
                object_valid += int(est.object_valid)
                errors = objects.add(
                    gt.object_class,
                    model.points,
                    model.diameter,
                    est.object_R,
                    est.object_t,
                    gt.object_R,
                    gt.object_t,
                    frame.K,
                    valid=est.object_valid,
                )
                frame.errors.update({f"object_{k}": v for k, v in errors.items()})
    n = sum(f.ground_truth is not None for f in frames)
    hand_summary, object_summary = hand.summary(), objects.summary()
    return {
        "frames": len(frames),
        "pa_mpjpe_mm": hand_summary["pa_mpjpe_mm"],
        "mpjpe_mm": hand_summary["mpjpe_fitted_mm"],
        "add_0.1d": object_summary["add_01d_frame_mean"],
        "rep5": object_summary["rep5_frame_mean"],
        "hand_detection_rate": hand_found / n if n else None,
        "object_pose_rate": object_valid / n if n else None,
        "hand": hand_summary,
        "objects": {"summary": object_summary, "per_class": objects.per_class()},
    }


def overlay_image(
    frame: DemoFrame, faces: dict[Side, np.ndarray], object_models: ObjectModelLibrary
) -> np.ndarray:
    """The frame with the estimated hand mesh, skeleton, object box and axes drawn over it."""
    image = frame.image.copy()
    est = frame.estimate
    if est is not None and est.has_hand:
        if len(est.verts) and est.translation_valid:
            image = draw_mesh(image, est.verts, faces[est.side], frame.K)
        draw_skeleton(image, est.joints2d)
        if est.object_valid and est.object_class in object_models:
            draw_object(
                image, est.object_R, est.object_t, frame.K, object_models.get(est.object_class).control_points
            )
    return image


def caption(frame: DemoFrame) -> list[str]:
    """Text lines describing a frame's estimate and its errors."""
    lines = [f"estimate, frame {frame.index}"]
    est = frame.estimate
    if est is None or not est.has_hand:
        return [*lines, "no hand estimate"]
    if "pa_mpjpe" in frame.errors:
        lines.append(f"hand PA-MPJPE {frame.errors['pa_mpjpe'] * 1000:.1f} mm")
    if "object_add" in frame.errors:
        lines.append(
            f"object ADD {frame.errors['object_add'] * 1000:.0f} mm"
            if est.object_valid
            else "object: no pose"
        )
    return lines


def _resize(image: np.ndarray, width: int) -> np.ndarray:
    height = round(image.shape[0] * width / image.shape[1])
    return np.array(Image.fromarray(image).resize((width, height), Image.Resampling.LANCZOS))


def picture_sheet(
    frames: list[DemoFrame], overlays: list[np.ndarray], rows: int = 4, panel_width: int = 480
) -> np.ndarray:
    """Rows of [input | overlay] for ``rows`` frames spread evenly over the clip's frames with a hand estimate
    (over all frames when there are too few)."""
    shown = [i for i, f in enumerate(frames) if f.estimate is not None and f.estimate.has_hand]
    if len(shown) < min(rows, len(frames)):
        shown = list(range(len(frames)))
    picks = [
        shown[k] for k in np.unique(np.linspace(0, len(shown) - 1, min(rows, len(shown))).round().astype(int))
    ]
    gap = 4
    rows_img = []
    for i in picks:
        left, right = _resize(frames[i].image, panel_width), _resize(overlays[i], panel_width)
        draw_caption(left, [f"input, frame {frames[i].index}"])
        draw_caption(right, caption(frames[i]))
        spacer = np.full((left.shape[0], gap, 3), 255, np.uint8)
        rows_img.append(np.concatenate([left, spacer, right], axis=1))
    spacer = np.full((gap, rows_img[0].shape[1], 3), 255, np.uint8)
    out = [rows_img[0]]
    for row in rows_img[1:]:
        out += [spacer, row]
    return np.concatenate(out, axis=0)


def write_gif(
    path: Path, frames: list[DemoFrame], overlays: list[np.ndarray], fps: float, width: int = 320
) -> None:
    """An animated GIF of the overlays, captioned, looping."""
    images = []
    for frame, overlay in zip(frames, overlays):
        small = _resize(overlay, width)
        draw_caption(small, caption(frame)[:2])
        images.append(Image.fromarray(small))
    images[0].save(path, save_all=True, append_images=images[1:], duration=max(20, round(1000 / fps)), loop=0)


def _fmt(value, scale: float = 1.0, digits: int = 1, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value * scale:.{digits}f}{suffix}"


def summary_markdown(summary: dict[str, Any]) -> str:
    """The human-readable summary."""
    hand = summary["hand"]
    per_class = summary["objects"]["per_class"]
    lines = [
        "# hfl_ros demo: estimates vs. ground truth",
        "",
        f"**{summary.get('note', SYNTHETIC_ONLY_NOTE)}**",
        "",
        f"Sample bag: `{summary['input_bag']}` ({summary['frames']} frames). Labeled with `hfl-ros label` "
        f"through the Estimator, checkpoint `{summary['checkpoint']}`; output bag "
        f"`{summary['labeled_bag']}`.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| hand detected and estimated | {_fmt(summary['hand_detection_rate'], 100, 0, ' %')} of frames |",
        f"| hand PA-MPJPE (after similarity alignment) | {_fmt(summary['pa_mpjpe_mm'], suffix=' mm')} |",
        f"| hand MPJPE (camera frame, fitted translation) | {_fmt(summary['mpjpe_mm'], suffix=' mm')} |",
        f"| hand MPJPE (wrist aligned) | {_fmt(hand['mpjpe_wrist_aligned_mm'], suffix=' mm')} |",
        f"| hand PA-MPVPE | {_fmt(hand['pa_mpvpe_mm'], suffix=' mm')} |",
        f"| object pose solved | {_fmt(summary['object_pose_rate'], 100, 0, ' %')} of frames |",
        f"| object ADD-0.1D | {_fmt(summary['add_0.1d'], 100, 0, ' %')} of frames |",
        f"| object REP-5 (reprojection within 5 px) | {_fmt(summary['rep5'], 100, 0, ' %')} of frames |",
    ]
    for cid, stats in per_class.items():
        lines.append(
            f"| object ADD-0.1D, class {cid} ({stats['name']}, {stats['frames']} frames) | "
            f"{_fmt(stats['add_01d'], 100, 0, ' %')} |"
        )
    lines += [
        "",
        "Frames where the simulated detector missed the hand count as failures. ADD-0.1D: ADD at most 10 % "
        "of the object's bounding-box diagonal; REP-5: mean reprojection error of the model points at most "
        "5 px.",
        "",
        "Pictures: `picture_sheet.png` (input | estimate, frames with a hand estimate), `overlays.gif` (all "
        "frames).",
        "",
    ]
    return "\n".join(lines)


def write_summary(out_dir: Path, summary: dict[str, Any]) -> None:
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    (out_dir / "summary.md").write_text(summary_markdown(summary))
