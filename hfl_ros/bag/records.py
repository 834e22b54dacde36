"""The dataset export: a JSON record per synced frame (labels.jsonl) and the same data as arrays (labels.npz).

The schema is documented in docs/labels_schema.md; :data:`SCHEMA_VERSION` changes whenever it does.
Positions are metres in the camera optical frame of the image (x right, y down, z forward); 2D points are
pixels of the input image; quaternions are (x, y, z, w). JSON has no NaN, so non-finite numbers are written as
null and read back as NaN in the arrays.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..geometry.rotations import matrix_to_quaternion_xyzw
from ..hand_joints import NUM_JOINTS
from ..results import HandObjectResult, Side, Status

SCHEMA_VERSION = 1
FRAME_OK = "ok"


def _num(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _list(array: Any, shape: tuple[int, ...]) -> list:
    values = np.asarray(array, dtype=np.float64).reshape(shape)
    return [_num(v) for v in values] if values.ndim == 1 else [_list(v, shape[1:]) for v in values]


def pair_record(result: HandObjectResult) -> dict[str, Any]:
    """One hand-object result as a JSON-ready dict."""
    hand = result.hand
    record: dict[str, Any] = {
        "status": Status(result.status).name.lower(),
        "status_code": int(result.status),
        "status_message": str(result.status_message),
        "error_reason": getattr(result.error, "reason", None),
        "hand": {
            "side": Side(hand.side).value,
            "box": _list(hand.box, (4,)),
            "detection_score": _num(hand.detection_score),
            "estimate_score": _num(hand.estimate_score),
            "joints": _list(hand.joints3d, (NUM_JOINTS, 3)),
            "joints_2d": _list(hand.joints2d, (NUM_JOINTS, 2)),
            "wrist_position": _list(hand.wrist_translation, (3,)),
            "wrist_quaternion": _list(matrix_to_quaternion_xyzw(hand.wrist_rotation), (4,)),
            "translation_valid": bool(hand.translation_valid),
            "reprojection_error_px": _num(hand.reprojection_error_px),
            "mano_pose": _list(hand.mano_pose, (48,)),
            "mano_shape": _list(hand.mano_shape, (10,)),
        },
        "object": None,
    }
    obj = result.object
    if obj is not None:
        record["object"] = {
            "class_id": str(obj.class_id),
            "box": _list(obj.box, (4,)),
            "score": _num(obj.score),
            "valid": bool(obj.valid),
            "position": _list(obj.translation, (3,)),
            "quaternion": _list(matrix_to_quaternion_xyzw(obj.rotation), (4,)),
            "control_points_2d": _list(obj.control_points_2d, (21, 2)),
            "inlier_count": int(obj.inlier_count),
            "vote_count": int(obj.vote_count),
            "reprojection_error_px": _num(obj.reprojection_error_px),
            "estimate_score": _num(obj.estimate_score),
        }
    return record


def frame_record(index: int, stamp_ns: int, frame_id: str, *, status: str = FRAME_OK,
                 error: str | None = None, num_hands: int = 0, num_objects: int = 0,
                 results: Sequence[HandObjectResult] = ()) -> dict[str, Any]:
    """One synced frame: ``status`` is "ok" or why it could not be estimated (then ``pairs`` is empty)."""
    return {
        "frame": int(index),
        "stamp_ns": int(stamp_ns),
        "frame_id": str(frame_id),
        "status": status,
        "error": error,
        "num_hands": int(num_hands),
        "num_objects": int(num_objects),
        "pairs": [pair_record(r) for r in results],
    }


def dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"), allow_nan=False)


def read_jsonl(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Records of a labels.jsonl and the number of unreadable lines skipped (e.g. a line cut by a crash)."""
    records: list[dict[str, Any]] = []
    bad = 0
    if not path.exists():
        return records, bad
    with path.open("r", encoding="utf-8") as stream:
        for line in stream:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                int(record["stamp_ns"])
            except (ValueError, KeyError, TypeError):
                bad += 1
                continue
            records.append(record)
    return records, bad


# ------------------------------------------------------------------------------------------------------------
# Arrays

_NAN = float("nan")


def _arr(values: Any, shape: tuple[int, ...]) -> np.ndarray:
    if values is None:
        return np.full(shape, _NAN)
    return np.array(values, dtype=np.float64).reshape(shape)  # None entries become NaN


def _float(value: Any) -> float:
    return _NAN if value is None else float(value)


def records_to_arrays(records: Iterable[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Frame rows (``frame_*``, sorted by stamp) and pair rows (``pair_frame`` = row in the frame arrays)."""
    frames = sorted(records, key=lambda r: int(r["stamp_ns"]))
    out: dict[str, list] = {name: [] for name in _ARRAY_SHAPES}
    for row, frame in enumerate(frames):
        out["frame_index"].append(int(frame["frame"]))
        out["frame_stamp_ns"].append(int(frame["stamp_ns"]))
        out["frame_id"].append(str(frame["frame_id"]))
        out["frame_status"].append(str(frame["status"]))
        out["frame_error"].append(frame["error"] or "")
        out["frame_num_hands"].append(int(frame["num_hands"]))
        out["frame_num_objects"].append(int(frame["num_objects"]))
        out["frame_num_pairs"].append(len(frame["pairs"]))
        for pair in frame["pairs"]:
            hand, obj = pair["hand"], pair["object"]
            out["pair_frame"].append(row)
            out["pair_stamp_ns"].append(int(frame["stamp_ns"]))
            out["status"].append(int(pair["status_code"]))
            out["status_name"].append(str(pair["status"]))
            out["status_message"].append(str(pair["status_message"]))
            out["hand_side"].append(Side(hand["side"]).msg_value)
            out["hand_box"].append(_arr(hand["box"], (4,)))
            out["hand_detection_score"].append(_float(hand["detection_score"]))
            out["hand_estimate_score"].append(_float(hand["estimate_score"]))
            out["hand_joints"].append(_arr(hand["joints"], (NUM_JOINTS, 3)))
            out["hand_joints_2d"].append(_arr(hand["joints_2d"], (NUM_JOINTS, 2)))
            out["hand_wrist_position"].append(_arr(hand["wrist_position"], (3,)))
            out["hand_wrist_quaternion"].append(_arr(hand["wrist_quaternion"], (4,)))
            out["hand_translation_valid"].append(bool(hand["translation_valid"]))
            out["hand_reprojection_error_px"].append(_float(hand["reprojection_error_px"]))
            out["hand_mano_pose"].append(_arr(hand["mano_pose"], (48,)))
            out["hand_mano_shape"].append(_arr(hand["mano_shape"], (10,)))
            out["hand_track_id"].append(int(hand.get("track_id", 0)))
            smoothed = hand.get("smoothed") or {}
            out["hand_smoothed_joints"].append(_arr(smoothed.get("joints"), (NUM_JOINTS, 3)))
            out["hand_smoothed_wrist_position"].append(_arr(smoothed.get("wrist_position"), (3,)))
            out["hand_smoothed_wrist_quaternion"].append(_arr(smoothed.get("wrist_quaternion"), (4,)))
            out["hand_smoothed_mano_pose"].append(_arr(smoothed.get("mano_pose"), (48,)))
            out["object_present"].append(obj is not None)
            obj = obj or {}
            out["object_class_id"].append(str(obj.get("class_id", "")))
            out["object_box"].append(_arr(obj.get("box"), (4,)))
            out["object_score"].append(_float(obj.get("score")))
            out["object_valid"].append(bool(obj.get("valid", False)))
            out["object_position"].append(_arr(obj.get("position"), (3,)))
            out["object_quaternion"].append(_arr(obj.get("quaternion"), (4,)))
            out["object_control_points_2d"].append(_arr(obj.get("control_points_2d"), (21, 2)))
            out["object_inlier_count"].append(int(obj.get("inlier_count", 0)))
            out["object_vote_count"].append(int(obj.get("vote_count", 0)))
            out["object_reprojection_error_px"].append(_float(obj.get("reprojection_error_px")))
            out["object_estimate_score"].append(_float(obj.get("estimate_score")))
            out["object_track_id"].append(int(obj.get("track_id", 0)))
            smoothed = obj.get("smoothed") or {}
            out["object_smoothed_position"].append(_arr(smoothed.get("position"), (3,)))
            out["object_smoothed_quaternion"].append(_arr(smoothed.get("quaternion"), (4,)))
    arrays: dict[str, np.ndarray] = {}
    for name, (dtype, shape) in _ARRAY_SHAPES.items():
        values = out[name]
        if dtype == "U":
            arrays[name] = np.array(values, dtype=str) if values else np.zeros((0,), dtype="U1")
        else:
            arrays[name] = np.array(values, dtype=dtype).reshape((len(values), *shape))
    arrays["schema_version"] = np.array(SCHEMA_VERSION, dtype=np.int64)
    return arrays


#: name -> (dtype, per-row shape). Frame rows first, then pair rows.
_ARRAY_SHAPES: dict[str, tuple[Any, tuple[int, ...]]] = {
    "frame_index": (np.int64, ()),
    "frame_stamp_ns": (np.int64, ()),
    "frame_id": ("U", ()),
    "frame_status": ("U", ()),
    "frame_error": ("U", ()),
    "frame_num_hands": (np.int64, ()),
    "frame_num_objects": (np.int64, ()),
    "frame_num_pairs": (np.int64, ()),
    "pair_frame": (np.int64, ()),
    "pair_stamp_ns": (np.int64, ()),
    "status": (np.uint8, ()),
    "status_name": ("U", ()),
    "status_message": ("U", ()),
    "hand_side": (np.uint8, ()),
    "hand_box": (np.float64, (4,)),
    "hand_detection_score": (np.float64, ()),
    "hand_estimate_score": (np.float64, ()),
    "hand_joints": (np.float64, (NUM_JOINTS, 3)),
    "hand_joints_2d": (np.float64, (NUM_JOINTS, 2)),
    "hand_wrist_position": (np.float64, (3,)),
    "hand_wrist_quaternion": (np.float64, (4,)),
    "hand_translation_valid": (np.bool_, ()),
    "hand_reprojection_error_px": (np.float64, ()),
    "hand_mano_pose": (np.float64, (48,)),
    "hand_mano_shape": (np.float64, (10,)),
    "object_present": (np.bool_, ()),
    "object_class_id": ("U", ()),
    "object_box": (np.float64, (4,)),
    "object_score": (np.float64, ()),
    "object_valid": (np.bool_, ()),
    "object_position": (np.float64, (3,)),
    "object_quaternion": (np.float64, (4,)),
    "object_control_points_2d": (np.float64, (21, 2)),
    "object_inlier_count": (np.int64, ()),
    "object_vote_count": (np.int64, ()),
    "object_reprojection_error_px": (np.float64, ()),
    "object_estimate_score": (np.float64, ()),
    # hfl-ros label --smooth (track ids 0 and NaN poses without it, or where the raw pose is not valid)
    "hand_track_id": (np.int64, ()),
    "hand_smoothed_joints": (np.float64, (NUM_JOINTS, 3)),
    "hand_smoothed_wrist_position": (np.float64, (3,)),
    "hand_smoothed_wrist_quaternion": (np.float64, (4,)),
    "hand_smoothed_mano_pose": (np.float64, (48,)),
    "object_track_id": (np.int64, ()),
    "object_smoothed_position": (np.float64, (3,)),
    "object_smoothed_quaternion": (np.float64, (4,)),
}

ARRAY_NAMES: tuple[str, ...] = (*_ARRAY_SHAPES, "schema_version")


def write_npz(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Write labels.npz atomically (a temporary file renamed into place)."""
    arrays = records_to_arrays(records)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
