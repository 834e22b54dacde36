"""Which estimates are published (TF, markers, Detection3D) and their TF frame names (no ROS runtime)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..hand_joints import JOINT_NAMES, NUM_JOINTS
from ..results import HandObjectResult, Side, Status

# Statuses under which nothing of a result is published as TF or markers, whatever its validity flags say.
_UNUSABLE = {Status.INTERNAL_ERROR, Status.LOW_CONFIDENCE}


def hand_is_valid(result: HandObjectResult) -> bool:
    """True when the hand has an absolute pose (translation fitted) worth publishing as TF / markers.

    A hand whose object failed (BAD_INPUT for an unknown class, PNP_FAILED) is still valid.
    """
    return bool(result.hand.translation_valid) and result.status not in _UNUSABLE


def object_is_valid(result: HandObjectResult) -> bool:
    """True when the paired object has a valid 6-DoF pose worth publishing."""
    obj = result.object
    return obj is not None and bool(obj.valid) and result.status not in _UNUSABLE


def _frame_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", str(text)) or "unknown"


@dataclass(frozen=True)
class FrameNames:
    """TF child frame names of one result (None when that part is not published)."""

    wrist: str | None
    joints: tuple[str, ...] | None  # joints 1..20 (joint 0 is the wrist frame itself)
    object: str | None


def frame_names(results: Sequence[HandObjectResult], prefix: str = "") -> list[FrameNames]:
    """TF frame names for each result, in order.

    - hands: ``<prefix><side>_wrist`` and ``<prefix><side>_<joint>``; the k-th valid hand of a side (k >= 1)
      gets the suffix ``_<k>`` on all its frames, so a single hand keeps stable names;
    - objects: ``<prefix>object_<class_id>_<n>``, n counting valid objects of that class from 0 (class ids
      are made frame-safe: characters other than letters, digits and ``_`` become ``_``). An object box
      paired with two hands gets one frame.
    Tracked estimates (``track_id`` > 0) are counted in the order of their track ids, before untracked ones,
    so two hands of a side or two objects of a class keep their names from frame to frame whatever order the
    detector lists them in. Invalid estimates get None.
    """
    hand_rank: dict[int, int] = {}  # result index -> k
    object_key: dict[int, tuple[str, tuple]] = {}  # result index -> (class id, box) of its distinct object
    hands_of: dict[Side, list[tuple[tuple[int, int], int]]] = {Side.RIGHT: [], Side.LEFT: []}
    objects_of: dict[str, dict[tuple, tuple[int, int]]] = {}  # class -> box -> order key
    for i, result in enumerate(results):
        if hand_is_valid(result):
            hands_of[Side(result.hand.side)].append((_order(result.hand.track_id, i), i))
        if object_is_valid(result):
            cid = str(result.object.class_id)
            box = tuple(np.asarray(result.object.box, dtype=np.float64).ravel().tolist())
            object_key[i] = (cid, box)
            seen = objects_of.setdefault(cid, {})
            seen[box] = min(seen.get(box, (2, i)), _order(result.object.track_id, i))
    for entries in hands_of.values():
        for k, (_, i) in enumerate(sorted(entries)):
            hand_rank[i] = k
    object_rank = {(cid, box): n for cid, boxes in objects_of.items()
                   for n, box in enumerate(sorted(boxes, key=boxes.__getitem__))}
    names: list[FrameNames] = []
    for i, result in enumerate(results):
        wrist = joints = obj_name = None
        if i in hand_rank:
            side = Side(result.hand.side)
            suffix = f"_{hand_rank[i]}" if hand_rank[i] else ""
            wrist = f"{prefix}{side.value}_wrist{suffix}"
            joints = tuple(f"{prefix}{side.value}_{JOINT_NAMES[j]}{suffix}" for j in range(1, NUM_JOINTS))
        if i in object_key:
            cid = object_key[i][0]
            obj_name = f"{prefix}object_{_frame_safe(cid)}_{object_rank[object_key[i]]}"
        names.append(FrameNames(wrist, joints, obj_name))
    return names


def _order(track_id: int, index: int) -> tuple[int, int]:
    """Sort key: tracked estimates by track id, then untracked ones in list order."""
    return (0, int(track_id)) if track_id else (1, index)
