"""Hand and object pose metrics (spec §8) and their per-frame accumulation.

Conventions (also in docs/training.md):
- Hand errors are Euclidean distances averaged over the 21 joints (or 778 vertices), reported in millimetres.
- MPJPE "wrist-aligned" (the DexYCB protocol): the predicted wrist-relative joints plus the GT wrist.
  MPJPE "fitted": our camera-frame joints, whose translation the Estimator fits from the 2D joints and K.
- 2D joints: the mean image-px distance of the 21 estimated 2D joints (the heat-map joints) to the GT.
- PA-*: after the similarity (scale, rotation, translation) Procrustes alignment of the prediction to the GT.
- F@d: harmonic mean of precision (predicted vertices within d of some GT vertex) and recall (GT vertices
  within d of some predicted vertex), on the Procrustes-aligned mesh (the HO3D protocol).
- ADD: mean distance between the model points under the predicted and the GT pose. ADD-S: for each point under
  the predicted pose, the distance to the nearest point under the GT pose, averaged.
- ADD-0.1D: the fraction of frames whose ADD (ADD-S for symmetric classes) is at most 0.1 x the object's
  "diameter", which is the diagonal of its axis-aligned bounding box (the official code's convention; more
  lenient than the usual furthest-point diameter).
- REP-5: the fraction of frames whose mean 2D reprojection error of the model points is at most 5 px.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from ..geometry.procrustes import similarity_procrustes

M_TO_MM = 1000.0


def mean_distance(pred, gt) -> float:
    """Mean Euclidean distance between corresponding points (N, D)."""
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    return float(np.linalg.norm(pred - gt, axis=-1).mean())


def wrist_aligned(pred_joints, gt_joints) -> np.ndarray:
    """The predicted joints moved so that their wrist (joint 0) sits on the GT wrist."""
    pred = np.asarray(pred_joints, dtype=np.float64)
    return pred - pred[0] + np.asarray(gt_joints, dtype=np.float64)[0]


def pa_error(pred, gt) -> float:
    """Mean distance after similarity Procrustes alignment of ``pred`` to ``gt``."""
    aligned, *_ = similarity_procrustes(pred, gt)
    return mean_distance(aligned, gt)


def f_score(pred_points, gt_points, threshold: float) -> tuple[float, float, float]:
    """(F, precision, recall) of two point sets at a distance threshold (same units as the points)."""
    pred, gt = np.asarray(pred_points, dtype=np.float64), np.asarray(gt_points, dtype=np.float64)
    d_pred_to_gt = cKDTree(gt).query(pred)[0]
    d_gt_to_pred = cKDTree(pred).query(gt)[0]
    precision = float((d_pred_to_gt <= threshold).mean())
    recall = float((d_gt_to_pred <= threshold).mean())
    f = 0.0 if precision + recall == 0 else 2.0 * precision * recall / (precision + recall)
    return f, precision, recall


def transform(points, R, t) -> np.ndarray:
    return np.asarray(points, dtype=np.float64) @ np.asarray(R, dtype=np.float64).T + np.asarray(t).reshape(3)


def add_error(points, R_pred, t_pred, R_gt, t_gt) -> float:
    """ADD: mean distance between corresponding model points under the two poses."""
    return mean_distance(transform(points, R_pred, t_pred), transform(points, R_gt, t_gt))


def adds_error(points, R_pred, t_pred, R_gt, t_gt) -> float:
    """ADD-S: for each point under the predicted pose, the distance to the closest point under the GT pose."""
    gt = transform(points, R_gt, t_gt)
    return float(cKDTree(gt).query(transform(points, R_pred, t_pred))[0].mean())


def reprojection_error(points, R_pred, t_pred, R_gt, t_gt, K) -> float:
    """Mean pixel distance between the model points projected under the two poses."""
    K = np.asarray(K, dtype=np.float64)

    def proj(p):
        uvw = p @ K.T
        return uvw[:, :2] / uvw[:, 2:3]

    return mean_distance(proj(transform(points, R_pred, t_pred)), proj(transform(points, R_gt, t_gt)))


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def _rate(flags) -> float | None:
    return float(np.mean(flags)) if len(flags) else None


@dataclass
class HandMetrics:
    """Per-frame hand errors (metres) and their summary (millimetres)."""

    values: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    frames: int = 0
    missing: int = 0  # frames with GT but no prediction

    def add_missing(self) -> None:
        self.frames += 1
        self.missing += 1

    def add(self, pred_joints, gt_joints, *, pred_verts=None, gt_verts=None, translation_valid=True,
            pred_joints2d=None, gt_joints2d=None) -> dict:
        """Score one frame: joints (21, 3) camera frame in metres, 2D joints (21, 2) image px. Returns the
        frame's errors (metres; 2D in px)."""
        self.frames += 1
        pred_joints, gt_joints = np.asarray(pred_joints, float), np.asarray(gt_joints, float)
        out: dict[str, float | None] = {
            "mpjpe_wrist_aligned": mean_distance(wrist_aligned(pred_joints, gt_joints), gt_joints),
            "mpjpe_fitted": mean_distance(pred_joints, gt_joints) if translation_valid else None,
            "pa_mpjpe": pa_error(pred_joints, gt_joints),
        }
        if pred_verts is not None and gt_verts is not None:
            aligned, *_ = similarity_procrustes(pred_verts, gt_verts)
            out["pa_mpvpe"] = mean_distance(aligned, gt_verts)
            out["f5"] = f_score(aligned, gt_verts, 0.005)[0]
            out["f15"] = f_score(aligned, gt_verts, 0.015)[0]
        if pred_joints2d is not None and gt_joints2d is not None and np.all(np.isfinite(gt_joints2d)):
            out["joints2d_px"] = mean_distance(pred_joints2d, gt_joints2d)
        for k, v in out.items():
            if v is not None:
                self.values[k].append(v)
        return out

    def summary(self) -> dict:
        mm = {k: (None if (m := _mean(self.values.get(k, []))) is None else m * M_TO_MM) for k in
              ("mpjpe_wrist_aligned", "mpjpe_fitted", "pa_mpjpe", "pa_mpvpe")}
        return {
            "frames": self.frames,
            "missing_predictions": self.missing,
            "mpjpe_wrist_aligned_mm": mm["mpjpe_wrist_aligned"],
            "mpjpe_fitted_mm": mm["mpjpe_fitted"],
            "fitted_translation_frames": len(self.values.get("mpjpe_fitted", [])),
            "pa_mpjpe_mm": mm["pa_mpjpe"],
            "pa_mpvpe_mm": mm["pa_mpvpe"],
            "f_5mm": _mean(self.values.get("f5", [])),
            "f_15mm": _mean(self.values.get("f15", [])),
            "joints2d_px": _mean(self.values.get("joints2d_px", [])),
        }


@dataclass
class _ObjectClassStats:
    add: list[float] = field(default_factory=list)
    adds: list[float] = field(default_factory=list)
    success: list[bool] = field(default_factory=list)  # ADD(-S) <= 0.1 D
    rep5: list[bool] = field(default_factory=list)
    rep_px: list[float] = field(default_factory=list)
    invalid: int = 0
    diameter: float = float("nan")
    symmetric: bool = False


class ObjectMetrics:
    """Per-class ADD, ADD-S, ADD-0.1D and REP-5, averaged per class and over classes.

    ``symmetric_ids``: classes scored with ADD-S for ADD-0.1D (every class also gets its ADD-S mean).
    A missing or invalid pose (PnP failure) counts as a failure of ADD-0.1D and REP-5; its errors are left out
    of the means when there is no pose at all.
    """

    def __init__(self, symmetric_ids=(), names: dict[str, str] | None = None):
        self.symmetric_ids = {str(c) for c in symmetric_ids}
        self.names = dict(names or {})
        self.classes: dict[str, _ObjectClassStats] = defaultdict(_ObjectClassStats)

    def add_missing(self, class_id: str) -> None:
        stats = self.classes[str(class_id)]
        stats.invalid += 1
        stats.success.append(False)
        stats.rep5.append(False)

    def add(self, class_id, points, diameter, R_pred, t_pred, R_gt, t_gt, K, *, valid=True) -> dict:
        """Score one frame; points (N, 3) object frame, metres; K of the image the poses refer to."""
        cid = str(class_id)
        stats = self.classes[cid]
        stats.diameter, stats.symmetric = float(diameter), cid in self.symmetric_ids
        add = add_error(points, R_pred, t_pred, R_gt, t_gt)
        adds = adds_error(points, R_pred, t_pred, R_gt, t_gt)
        rep = reprojection_error(points, R_pred, t_pred, R_gt, t_gt, K)
        score = adds if stats.symmetric else add
        stats.add.append(add)
        stats.adds.append(adds)
        stats.rep_px.append(rep)
        stats.success.append(bool(valid and score <= 0.1 * diameter))
        stats.rep5.append(bool(valid and rep <= 5.0))
        stats.invalid += int(not valid)
        return {"add": add, "adds": adds, "rep_px": rep, "valid": bool(valid)}

    def per_class(self) -> dict[str, dict]:
        out = {}
        for cid in sorted(self.classes, key=lambda c: (not c.isdigit(), int(c) if c.isdigit() else 0, c)):
            s = self.classes[cid]
            out[cid] = {
                "name": self.names.get(cid, cid),
                "frames": len(s.success),
                "invalid_poses": s.invalid,
                "symmetric": s.symmetric,
                "diameter_m": s.diameter if np.isfinite(s.diameter) else None,
                "add_mm": None if (m := _mean(s.add)) is None else m * M_TO_MM,
                "adds_mm": None if (m := _mean(s.adds)) is None else m * M_TO_MM,
                "add_01d": _rate(s.success),
                "rep5": _rate(s.rep5),
                "rep_px": _mean(s.rep_px),
            }
        return out

    def summary(self) -> dict:
        per_class = self.per_class()
        frames = [c for c in self.classes.values()]
        return {
            "classes": len(per_class),
            "frames": sum(len(c.success) for c in frames),
            # Mean over classes (each class weighs the same), then over all frames.
            "add_01d_class_mean": _mean([c["add_01d"] for c in per_class.values()]),
            "rep5_class_mean": _mean([c["rep5"] for c in per_class.values()]),
            "add_mm_class_mean": _mean([c["add_mm"] for c in per_class.values()]),
            "adds_mm_class_mean": _mean([c["adds_mm"] for c in per_class.values()]),
            "add_01d_frame_mean": _rate([x for c in frames for x in c.success]),
            "rep5_frame_mean": _rate([x for c in frames for x in c.rep5]),
        }
