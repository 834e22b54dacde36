"""Evaluation of a checkpoint on HO3D / DexYCB through the Estimator (the one inference path).

Boxes (spec §1, the paper's protocol with ``boxes="gt"``): the hand detection is the annotated hand box
(HO3D's ``handBoundingBox``; DexYCB: the tight box of the GT 2D joints), the object detection is the tight box
of the 21 control points projected with the GT pose. The Estimator grows the hand box by 1.1 for the network
(``hand_box_scale``) and builds the crop from both boxes grown by 1.5, as in training.

Or boxes come from a detections file (JSON)::

    {"frames": {"<frame key>": [{"box": [x1, y1, x2, y2], "score": 0.98, "side": "right"},
                                {"box": [x1, y1, x2, y2], "score": 0.91, "class_id": "5"}, ...]}}

Frame keys are "SEQ/ID" for HO3D and "subject/sequence/serial/frame" (frame 6 digits) for DexYCB. Hands carry
"side", objects "class_id" (DexYCB numbering, see hfl_ros.data.ycb). A frame missing from the file has no
detections, so its hand counts as missed. When several hands are detected, the one of the GT side overlapping
the GT hand box most is scored.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.sample import HandObjectSample
from ..data.ycb import OFFICIAL_SYMMETRIC_IDS, YCB_CLASSES
from ..errors import AssetError, HflRosError
from ..geometry.boxes import iou
from ..results import Detection, FrameEstimator, HandObjectResult, Side
from .metrics import HandMetrics, ObjectMetrics
from .submission import ho3d_submission_entry


def read_detections_file(path: str | Path) -> dict[str, list[Detection]]:
    """Detections per frame key from the JSON format above; AssetError naming the bad entry."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise AssetError(f"cannot read detections file {path}: {exc}") from None
    frames = data.get("frames", data) if isinstance(data, dict) else None
    if not isinstance(frames, dict):
        raise AssetError(f"{path}: expected {{'frames': {{frame_key: [detections]}}}}")
    out: dict[str, list[Detection]] = {}
    for key, items in frames.items():
        if not isinstance(items, list):
            raise AssetError(f"{path}: frame {key!r} must map to a list of detections")
        dets = []
        for i, item in enumerate(items):
            try:
                box, score = [float(v) for v in item["box"]], float(item.get("score", 1.0))
                if len(box) != 4:
                    raise ValueError("box needs 4 numbers")
                if item.get("side") is not None:
                    dets.append(Detection.hand(box, Side(item["side"]), score))
                elif item.get("class_id") is not None:
                    dets.append(Detection.object(box, str(item["class_id"]), score))
                else:
                    raise ValueError("a detection needs 'side' (hand) or 'class_id' (object)")
            except (KeyError, TypeError, ValueError) as exc:
                raise AssetError(f"{path}: frame {key!r} detection {i}: {exc}") from None
        out[str(key)] = dets
    return out


def tight_box(points) -> np.ndarray | None:
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    if len(pts) < 2:
        return None
    return np.concatenate([pts.min(axis=0), pts.max(axis=0)])


def gt_detections(sample: HandObjectSample) -> list[Detection]:
    """The paper's test boxes for one sample (see the module docstring)."""
    dets = []
    hand_box = np.asarray(sample.hand_box, dtype=np.float64)
    if not np.all(np.isfinite(hand_box)):
        hand_box = tight_box(sample.joints2d)
    if hand_box is not None:
        dets.append(Detection.hand(hand_box, sample.side))
    object_box = tight_box(sample.control_points2d)
    if object_box is not None and sample.class_id:
        dets.append(Detection.object(object_box, sample.class_id))
    return dets


def pick_result(results: list[HandObjectResult], sample: HandObjectSample) -> HandObjectResult | None:
    """The result of the GT hand: same side, largest overlap with the GT hand box (else the first)."""
    same_side = [r for r in results if r.hand.side is sample.side] or list(results)
    if not same_side:
        return None
    gt_box = np.asarray(sample.hand_box, dtype=np.float64)
    if len(same_side) == 1 or not np.all(np.isfinite(gt_box)):
        return same_side[0]
    overlaps = [float(iou(np.asarray(r.hand.box, np.float64), gt_box)) for r in same_side]
    return same_side[int(np.argmax(overlaps))]


class GroundTruthHandMesh:
    """GT hand vertices from a sample's MANO parameters with the side's hand model, placed at the GT wrist."""

    def __init__(self, mano_dir: str | Path | None):
        self.mano_dir = mano_dir
        self._layers: dict[Side, Any] = {}

    def vertices(self, sample: HandObjectSample) -> np.ndarray | None:
        pose, shape = np.asarray(sample.mano_pose, float), np.asarray(sample.mano_shape, float)
        joints = np.asarray(sample.joints3d, dtype=np.float64)
        if self.mano_dir is None or not (np.all(np.isfinite(pose)) and np.all(np.isfinite(shape))):
            return None
        if not np.all(np.isfinite(joints[0])):
            return None
        import torch

        from ..model.mano import ManoLayer

        if sample.side not in self._layers:
            self._layers[sample.side] = ManoLayer(
                self.mano_dir, side=sample.side.value, flat_hand_mean=True, center_idx=0
            ).eval()
        with torch.no_grad():
            verts, _ = self._layers[sample.side](
                torch.tensor(pose[None], dtype=torch.float32), torch.tensor(shape[None], dtype=torch.float32)
            )
        return verts[0].double().numpy() + joints[0]


@dataclass
class EvalResult:
    """Summary, per-frame records and (HO3D) the submission entries."""

    summary: dict[str, Any]
    frames: list[dict[str, Any]] = field(default_factory=list)
    submission_xyz: list = field(default_factory=list)
    submission_verts: list = field(default_factory=list)


def evaluate(
    estimator: FrameEstimator,
    samples: Sequence[HandObjectSample],
    *,
    detections: dict[str, list[Detection]] | None = None,
    mano_dir: str | Path | None = None,
    symmetric_ids=OFFICIAL_SYMMETRIC_IDS,
    dataset: str = "ho3d",
    limit: int | None = None,
    batch_frames: int = 8,
    progress: bool = False,
) -> EvalResult:
    """Run ``estimator`` (an :class:`hfl_ros.estimator.Estimator`) on the samples and score the results.

    ``detections`` (frame key -> detections) replaces the GT boxes. HO3D runs also collect the CodaLab
    submission entries (one per frame, in sample order).
    """
    hand = HandMetrics()
    objects = ObjectMetrics(symmetric_ids, names={str(k): v for k, v in YCB_CLASSES.items()})
    gt_mesh = GroundTruthHandMesh(mano_dir)
    result = EvalResult(summary={})
    count = len(samples) if limit is None else min(limit, len(samples))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=count, desc="evaluate", dynamic_ncols=True)
    def load(start: int) -> _Chunk:
        return _load_chunk(samples, range(start, min(start + batch_frames, count)), detections)

    starts = range(0, count, batch_frames)
    # Reading and decoding the next chunk's images overlaps the network and PnP of this one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(load, starts[0]) if starts else None
        for i in range(len(starts)):
            chunk = pending.result()
            pending = pool.submit(load, starts[i + 1]) if i + 1 < len(starts) else None
            for s in chunk.without_hand:
                result.frames.append({"frame": s.meta.get("frame_key", ""), "status": "SKIPPED_NO_HAND"})
                if dataset == "ho3d":  # keep the submission aligned with the split's frame order
                    _add_submission_entry(result, s, [])
            outputs = estimator.estimate_batch(chunk.frames) if chunk.frames else []
            for sample, output in zip(chunk.kept, outputs):
                record = _score_frame(sample, output, hand, objects, gt_mesh, estimator)
                result.frames.append(record)
                if dataset == "ho3d":
                    _add_submission_entry(result, sample, output)
            if bar is not None:
                bar.update(chunk.size)
    if bar is not None:
        bar.close()
    hand_summary = hand.summary() if hand.frames else None
    skipped = sum(1 for f in result.frames if f.get("status") == "SKIPPED_NO_HAND")
    result.summary = {
        "frames": count,
        "skipped_without_hand": skipped,
        "hand": hand_summary,
        "objects": {"summary": objects.summary(), "per_class": objects.per_class()},
        "symmetric_ids": sorted(int(c) for c in symmetric_ids),
    }
    return result


@dataclass
class _Chunk:
    """Frames read for one estimate_batch call: those with a hand to estimate, and those without."""

    size: int
    kept: list[HandObjectSample] = field(default_factory=list)
    frames: list[tuple] = field(default_factory=list)
    without_hand: list[HandObjectSample] = field(default_factory=list)


def _load_chunk(samples, indices: range, detections: dict[str, list[Detection]] | None) -> _Chunk:
    chunk = _Chunk(size=len(indices))
    for i in indices:
        s = samples[i]
        if detections is not None:
            dets = detections.get(s.meta.get("frame_key", ""), [])
        else:
            dets = gt_detections(s)
            if not any(d.is_hand for d in dets):  # no hand annotation (DexYCB frames without a hand)
                chunk.without_hand.append(s)
                continue
        chunk.kept.append(s)
        chunk.frames.append((s.load_image(), s.K, dets))
    return chunk


def _score_frame(sample, output, hand: HandMetrics, objects: ObjectMetrics, gt_mesh, estimator) -> dict:
    key = sample.meta.get("frame_key", "")
    record: dict[str, Any] = {"frame": key}
    if isinstance(output, HflRosError):
        record.update(status="FRAME_ERROR", error=str(output))
        res = None
    else:
        res = pick_result(output, sample)
        record["status"] = res.status.name if res is not None else "NO_HAND_RESULT"
        if res is not None and res.status_message:
            record["message"] = res.status_message
    gt_joints = np.asarray(sample.joints3d, dtype=np.float64)
    if np.all(np.isfinite(gt_joints)):
        if not _has_hand_estimate(res):
            hand.add_missing()
        else:
            pred_verts = res.hand.verts3d if len(res.hand.verts3d) else None
            gt_verts = gt_mesh.vertices(sample) if pred_verts is not None else None
            errors = hand.add(res.hand.joints3d, gt_joints, pred_verts=pred_verts, gt_verts=gt_verts,
                              translation_valid=res.hand.translation_valid,
                              pred_joints2d=res.hand.joints2d, gt_joints2d=sample.joints2d)
            record["hand"] = {k: v for k, v in errors.items() if v is not None}
    has_object_gt = bool(sample.class_id) and _finite(sample.object_R) and _finite(sample.object_t)
    models = getattr(estimator, "object_models", None)
    if has_object_gt and models is not None and sample.class_id in models:
        model = models.get(sample.class_id)
        obj = res.object if res is not None else None
        if obj is None:
            objects.add_missing(sample.class_id)
            record["object"] = {"valid": False}
        else:
            record["object"] = objects.add(
                sample.class_id, model.points, model.diameter, obj.rotation, obj.translation,
                sample.object_R, sample.object_t, sample.K, valid=obj.valid,
            )
    return record


def _finite(a) -> bool:
    return bool(np.all(np.isfinite(np.asarray(a, dtype=np.float64))))


def _has_hand_estimate(res: HandObjectResult | None) -> bool:
    """False for no result and for failed pairs, whose hand holds only the detection (all-zero joints)."""
    return res is not None and bool(np.any(np.asarray(res.hand.joints3d) != 0))


def _add_submission_entry(result: EvalResult, sample: HandObjectSample, output) -> None:
    root = np.asarray(sample.joints3d, dtype=np.float64)[0]
    if not np.all(np.isfinite(root)):
        root = np.zeros(3)
    res = None if isinstance(output, HflRosError) else pick_result(output, sample)
    if not _has_hand_estimate(res):
        joints_rel, verts_rel = np.zeros((21, 3)), np.zeros((778, 3))
    else:
        joints = np.asarray(res.hand.joints3d, dtype=np.float64)
        verts = np.asarray(res.hand.verts3d, dtype=np.float64)
        joints_rel = joints - joints[0]
        verts_rel = verts - joints[0] if len(verts) else np.zeros((778, 3))
    xyz, verts_list = ho3d_submission_entry(joints_rel, verts_rel, root)
    result.submission_xyz.append(xyz)
    result.submission_verts.append(verts_list)


def _fmt(value, scale: float = 1.0, digits: int = 2) -> str:
    return "—" if value is None else f"{value * scale:.{digits}f}"


def markdown_report(summary: dict[str, Any], title: str) -> str:
    """The summary as markdown: hand metrics, then one row per object class and the averages."""
    lines = [f"# {title}", ""]
    hand = summary.get("hand")
    lines += ["## Hand", ""]
    if hand is None:
        lines += ["No hand ground truth in this split (metrics need the CodaLab server).", ""]
    else:
        lines += [
            "| frames | missed | MPJPE wrist-aligned (mm) | MPJPE fitted (mm) | PA-MPJPE (mm) "
            "| PA-MPVPE (mm) | F@5mm | F@15mm |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {hand['frames']} | {hand['missing_predictions']} | {_fmt(hand['mpjpe_wrist_aligned_mm'])} "
            f"| {_fmt(hand['mpjpe_fitted_mm'])} | {_fmt(hand['pa_mpjpe_mm'])} | {_fmt(hand['pa_mpvpe_mm'])} "
            f"| {_fmt(hand['f_5mm'], digits=3)} | {_fmt(hand['f_15mm'], digits=3)} |",
            "",
        ]
    objects = summary["objects"]
    lines += ["## Objects", "",
              "ADD-0.1D uses ADD-S for the symmetric ids "
              f"{summary['symmetric_ids']}; D is the bounding-box diagonal; REP-5 in image pixels.", "",
              "| id | object | frames | invalid | ADD (mm) | ADD-S (mm) | ADD-0.1D (%) | REP-5 (%) |",
              "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for cid, row in objects["per_class"].items():
        sym = " (sym.)" if row["symmetric"] else ""
        lines.append(
            f"| {cid} | {row['name']}{sym} | {row['frames']} | {row['invalid_poses']} "
            f"| {_fmt(row['add_mm'])} | {_fmt(row['adds_mm'])} | {_fmt(row['add_01d'], 100, 1)} "
            f"| {_fmt(row['rep5'], 100, 1)} |"
        )
    s = objects["summary"]
    lines.append(
        f"| | **mean over classes** | {s['frames']} | | {_fmt(s['add_mm_class_mean'])} "
        f"| {_fmt(s['adds_mm_class_mean'])} | {_fmt(s['add_01d_class_mean'], 100, 1)} "
        f"| {_fmt(s['rep5_class_mean'], 100, 1)} |"
    )
    lines.append(
        f"| | **mean over frames** | {s['frames']} | | | | {_fmt(s['add_01d_frame_mean'], 100, 1)} "
        f"| {_fmt(s['rep5_frame_mean'], 100, 1)} |"
    )
    return "\n".join(lines) + "\n"
