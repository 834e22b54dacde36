"""``hfl-ros label --smooth``: track ids and non-causal smoothing of the labeled records (no rclpy).

The records (one per frame, as in labels.jsonl) are tracked in stamp order (:class:`hfl_ros.tracking.Tracker`,
no online filter), then each track is smoothed with past and future frames
(:func:`hfl_ros.tracking.smooth_poses`). Every hand and object entry gets ``track_id`` and ``smoothed`` (null
when its raw pose is not valid): the raw values stay as they are.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..geometry.rotations import (
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    matrix_to_quaternion_xyzw,
    quaternion_xyzw_to_matrix,
)
from ..results import HandEstimate, HandObjectResult, ObjectEstimate, Side, Status
from ..tracking import FilterConfig, SmootherConfig, Tracker, TrackerConfig, smooth_poses


def _finite(values: Any) -> bool:
    return values is not None and bool(np.all(np.isfinite(np.array(values, dtype=np.float64))))


def _hand_ok(hand: dict[str, Any]) -> bool:
    return bool(hand["translation_valid"]) and all(
        _finite(hand[k]) for k in ("joints", "wrist_position", "wrist_quaternion", "mano_pose"))


def _object_ok(obj: dict[str, Any] | None) -> bool:
    return obj is not None and bool(obj["valid"]) and _finite(obj["position"]) and _finite(obj["quaternion"])


def _box(values: Any) -> np.ndarray:
    box = np.array(values if values is not None else [0, 0, 0, 0], dtype=np.float64)
    return np.nan_to_num(box)


def _result(pair: dict[str, Any]) -> HandObjectResult:
    """The part of a pair record the tracker needs: sides, classes and boxes."""
    hand = HandEstimate(side=Side(pair["hand"]["side"]), box=_box(pair["hand"]["box"]), detection_score=1.0)
    obj = pair["object"]
    estimate = None if obj is None else ObjectEstimate(class_id=str(obj["class_id"]), box=_box(obj["box"]),
                                                      score=1.0)
    return HandObjectResult(Status(pair["status_code"]), hand, estimate)


def smooth_records(records: Sequence[dict[str, Any]], config: SmootherConfig | None = None,
                   max_gap_s: float = 0.5) -> list[dict[str, Any]]:
    """Copies of the records, sorted by stamp, with ``track_id`` and ``smoothed`` on hands and objects."""
    frames = sorted(copy.deepcopy(list(records)), key=lambda r: int(r["stamp_ns"]))
    tracker = Tracker(TrackerConfig(max_gap_s=max_gap_s, filter=FilterConfig(mode="none")))
    members: dict[tuple[str, int], list[tuple[float, dict[str, Any]]]] = {}
    for frame in frames:
        t = int(frame["stamp_ns"]) * 1e-9
        tracked = tracker.update([_result(p) for p in frame["pairs"]], t)
        for pair, result in zip(frame["pairs"], tracked, strict=True):
            pair["hand"]["track_id"] = result.hand.track_id
            pair["hand"]["smoothed"] = None
            if _hand_ok(pair["hand"]):
                members.setdefault(("hand", result.hand.track_id), []).append((t, pair["hand"]))
            if pair["object"] is not None:
                pair["object"]["track_id"] = result.object.track_id
                pair["object"]["smoothed"] = None
                if _object_ok(pair["object"]):
                    members.setdefault(("object", result.object.track_id), []).append((t, pair["object"]))
    for (kind, _), entries in members.items():
        times = np.array([t for t, _ in entries])
        if kind == "hand":
            points = np.array([[e["wrist_position"], *e["joints"]] for _, e in entries], dtype=np.float64)
            rotations = np.array([
                np.concatenate([
                    quaternion_xyzw_to_matrix(e["wrist_quaternion"])[None],
                    axis_angle_to_matrix(np.array(e["mano_pose"], dtype=np.float64).reshape(16, 3)),
                ])
                for _, e in entries])
            points, rotations = smooth_poses(times, points, rotations, config)
            for (_, e), p, R in zip(entries, points, rotations, strict=True):
                e["smoothed"] = {
                    "joints": p[1:].tolist(), "wrist_position": p[0].tolist(),
                    "wrist_quaternion": matrix_to_quaternion_xyzw(R[0]).tolist(),
                    "mano_pose": matrix_to_axis_angle(R[1:]).reshape(48).tolist(),
                }
        else:
            points = np.array([[e["position"]] for _, e in entries], dtype=np.float64)
            rotations = np.array([[quaternion_xyzw_to_matrix(e["quaternion"])] for _, e in entries])
            points, rotations = smooth_poses(times, points, rotations, config)
            for (_, e), p, R in zip(entries, points, rotations, strict=True):
                e["smoothed"] = {"position": p[0].tolist(),
                                 "quaternion": matrix_to_quaternion_xyzw(R[0]).tolist()}
    return frames


def smoothed_results(frame: dict[str, Any]) -> list[HandObjectResult]:
    """A smoothed frame record's poses as results (for the bag's smoothed topic); invalid ones stay so."""
    out = []
    for pair in frame["pairs"]:
        h, o = pair["hand"], pair["object"]
        hs = h.get("smoothed")
        hand = HandEstimate(
            side=Side(h["side"]), box=_box(h["box"]), detection_score=float(h["detection_score"] or 0.0),
            estimate_score=float(h["estimate_score"] or 0.0), track_id=int(h.get("track_id", 0)),
            joints2d=np.nan_to_num(np.array(h["joints_2d"], dtype=np.float64)),
            mano_shape=np.nan_to_num(np.array(h["mano_shape"], dtype=np.float64)),
        )
        if hs is not None:
            hand.joints3d = np.array(hs["joints"])
            hand.wrist_translation = np.array(hs["wrist_position"])
            hand.wrist_rotation = quaternion_xyzw_to_matrix(hs["wrist_quaternion"])
            hand.mano_pose = np.array(hs["mano_pose"])
            hand.translation_valid = True
        obj = None
        if o is not None:
            os_ = o.get("smoothed")
            obj = ObjectEstimate(class_id=str(o["class_id"]), box=_box(o["box"]),
                                 score=float(o["score"] or 0.0), track_id=int(o.get("track_id", 0)),
                                 valid=os_ is not None)
            if os_ is not None:
                obj.translation = np.array(os_["position"])
                obj.rotation = quaternion_xyzw_to_matrix(os_["quaternion"])
        out.append(HandObjectResult(Status(pair["status_code"]), hand, obj, str(pair["status_message"])))
    return out
