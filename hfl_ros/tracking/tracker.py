"""Tracks over consecutive frames: ids for hands and objects, and the online filter of each track."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ..geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from ..results import HandEstimate, HandObjectResult, ObjectEstimate
from .association import associate
from .filters import FilterConfig, PoseFilter, update_filters


@dataclass
class TrackerConfig:
    """Association and track-lifetime parameters, plus the online filter's."""

    #: A track unmatched for longer than this (s) is dropped; what it tracked gets a new id when seen again.
    max_gap_s: float = 0.5
    #: Least IoU between a track's predicted box and a detection box for them to be associated.
    min_iou: float = 0.1
    filter: FilterConfig = field(default_factory=FilterConfig)

    def validate(self) -> TrackerConfig:
        if not self.max_gap_s > 0:
            raise ValueError(f"max_gap_s must be positive, got {self.max_gap_s}")
        if not 0 <= self.min_iou <= 1:
            raise ValueError(f"min_iou must be in [0, 1], got {self.min_iou}")
        self.filter.validate()
        return self


#: Velocities come only from frames this close (s), and predictions reach at most this far ahead (s): detector
#: noise makes a frame-to-frame velocity noisy, and extrapolating it over an occlusion would overshoot.
_VELOCITY_MAX_DT = 0.2
_PREDICTION_HORIZON_S = 0.1
_VELOCITY_SMOOTHING = 0.3


@dataclass
class Track:
    """One tracked hand (key ("hand", side)) or object (key ("object", class_id))."""

    track_id: int
    key: Hashable
    box: np.ndarray
    last_seen: float
    filter: PoseFilter
    position: np.ndarray = field(default_factory=lambda: np.full(3, np.nan))  # last 3D position (NaN: none)
    box_velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))  # px/s
    position_velocity: np.ndarray = field(default_factory=lambda: np.zeros(3))  # m/s

    def predicted_box(self, t: float) -> np.ndarray:
        return self.box + self.box_velocity * min(t - self.last_seen, _PREDICTION_HORIZON_S)

    def predicted_position(self, t: float) -> np.ndarray:
        return self.position + self.position_velocity * min(t - self.last_seen, _PREDICTION_HORIZON_S)

    def see(self, box: np.ndarray, position: np.ndarray, t: float) -> None:
        dt = t - self.last_seen
        box = np.asarray(box, dtype=np.float64)
        if 0 < dt <= _VELOCITY_MAX_DT:
            a = _VELOCITY_SMOOTHING
            self.box_velocity = (1 - a) * self.box_velocity + a * (box - self.box) / dt
            if np.isfinite(position).all() and np.isfinite(self.position).all():
                self.position_velocity = (1 - a) * self.position_velocity + a * (
                    position - self.position
                ) / dt
        elif dt > 0:
            self.box_velocity, self.position_velocity = np.zeros(4), np.zeros(3)
        self.box, self.last_seen = box.copy(), t
        if np.isfinite(position).all():
            self.position = np.asarray(position, dtype=np.float64).copy()


def _position(part: HandEstimate | ObjectEstimate) -> np.ndarray:
    """The 3D position that helps association (wrist or object origin); NaN when not estimated."""
    if isinstance(part, HandEstimate):
        valid, position = part.translation_valid, part.wrist_translation
    else:
        valid, position = part.valid, part.translation
    position = np.asarray(position, dtype=np.float64).reshape(3)
    return position if valid and np.isfinite(position).all() else np.full(3, np.nan)


def hand_pose_blocks(hand: HandEstimate) -> tuple[np.ndarray, np.ndarray]:
    """A hand as filter blocks: points (wrist, 21 joints, vertices), rotations (wrist, 16 MANO joints)."""
    points = np.concatenate(
        [hand.wrist_translation.reshape(1, 3), hand.joints3d, hand.verts3d.reshape(-1, 3)]
    )
    rotations = np.concatenate(
        [
            hand.wrist_rotation.reshape(1, 3, 3),
            axis_angle_to_matrix(np.asarray(hand.mano_pose).reshape(16, 3)),
        ]
    )
    return points, rotations


def set_hand_pose_blocks(hand: HandEstimate, points: np.ndarray, rotations: np.ndarray) -> None:
    """The inverse of :func:`hand_pose_blocks`: write the blocks back into the hand."""
    hand.wrist_translation = points[0].copy()
    hand.joints3d = points[1:22].copy()
    hand.verts3d = points[22:].copy()
    hand.wrist_rotation = rotations[0].copy()
    hand.mano_pose = matrix_to_axis_angle(rotations[1:]).reshape(48)


class Tracker:
    """Associates each frame's results with tracks, gives track ids and filters every tracked pose.

    ``update`` returns copies of the results with ``track_id`` set on hands and objects (ids start at 1, are
    never reused until ``reset``) and, unless the filter mode is ``none``, the filtered poses.
    """

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = (config or TrackerConfig()).validate()
        self.tracks: list[Track] = []
        self._next_id = 1
        self.gate_rejections = 0
        self.tracks_started = 0
        self.tracks_dropped = 0
        self._last_t: float | None = None

    def reset(self) -> int:
        """Drop every track (ids restart at 1); returns how many were dropped."""
        dropped = len(self.tracks)
        self.tracks = []
        self._next_id = 1
        self._last_t = None
        return dropped

    def set_filter_config(self, config: FilterConfig) -> None:
        """New filter parameters; running tracks keep their state and use them from the next frame."""
        config.validate()
        self.config.filter = config
        for track in self.tracks:
            track.filter.config = config

    def _drop_stale(self, t: float) -> None:
        keep = [tr for tr in self.tracks if t - tr.last_seen <= self.config.max_gap_s]
        self.tracks_dropped += len(self.tracks) - len(keep)
        self.tracks = keep

    def _assign(
        self,
        t: float,
        keys: Sequence[Hashable],
        boxes: list[np.ndarray],
        positions: list[np.ndarray],
        shared: list[bool],
    ) -> list[Track]:
        tracks = [tr for tr in self.tracks if tr.last_seen < t]  # one detection per track and frame
        pairs = associate(
            np.array([tr.predicted_box(t) for tr in tracks]).reshape(-1, 4),
            [tr.key for tr in tracks],
            np.array(boxes).reshape(-1, 4),
            keys,
            self.config.min_iou,
            track_positions=np.array([tr.predicted_position(t) for tr in tracks]).reshape(-1, 3),
            det_positions=np.array(positions).reshape(-1, 3),
        )
        out: list[Track | None] = [None] * len(keys)
        for ti, di in pairs:
            out[di] = tracks[ti]
            tracks[ti].see(boxes[di], positions[di], t)
        for di, track in enumerate(out):
            if track is None:
                track = Track(
                    self._next_id,
                    keys[di],
                    np.asarray(boxes[di], np.float64).copy(),
                    t,
                    PoseFilter(self.config.filter, shared_gain=shared[di]),
                )
                track.see(boxes[di], positions[di], t)
                self._next_id += 1
                self.tracks_started += 1
                self.tracks.append(track)
                out[di] = track
        return out  # type: ignore[return-value]

    def update(self, results: Sequence[HandObjectResult], t: float) -> list[HandObjectResult]:
        """Track and filter one frame's results, stamped t seconds; returns filtered copies.

        A stamp earlier than the previous one (a replayed bag starting again) first clears every track.
        """
        if self._last_t is not None and t < self._last_t:
            self.reset()
        self._last_t = t
        self._drop_stale(t)
        # Shallow copies: filtering assigns new arrays, it never writes into the caller's.
        out = [
            replace(r, hand=replace(r.hand), object=None if r.object is None else replace(r.object))
            for r in results
        ]
        parts: list[HandEstimate | ObjectEstimate] = []
        keys: list[Hashable] = []
        for r in out:
            parts.append(r.hand)
            keys.append(("hand", str(r.hand.side)))
            if r.object is not None:
                parts.append(r.object)
                keys.append(("object", r.object.class_id))
        positions = [_position(p) for p in parts]
        tracks = self._assign(
            t, keys, [p.box for p in parts], positions, [isinstance(p, HandEstimate) for p in parts]
        )
        for part, track in zip(parts, tracks, strict=True):
            part.track_id = track.track_id
        self._filter(parts, tracks, t)
        return out

    def _filter(self, parts: list[HandEstimate | ObjectEstimate], tracks: list[Track], t: float) -> None:
        """Filter every valid pose of the frame; the rotation maps of all tracks go in one batch."""
        if self.config.filter.mode == "none":
            return
        jobs: list[tuple[HandEstimate | ObjectEstimate, Track, np.ndarray, np.ndarray]] = []
        for part, track in zip(parts, tracks, strict=True):
            if isinstance(part, HandEstimate):
                # Wrist-relative joints (no translation) would mix with absolute ones.
                points = np.concatenate(
                    [part.wrist_translation.reshape(1, 3), part.joints3d, part.verts3d.reshape(-1, 3)]
                )
                mano = np.asarray(part.mano_pose, dtype=np.float64).reshape(16, 3)
                usable = part.translation_valid and np.isfinite(points).all() and np.isfinite(mano).all()
                rotations = part.wrist_rotation.reshape(1, 3, 3)
            else:
                points, rotations = part.translation.reshape(1, 3), part.rotation.reshape(1, 3, 3)
                usable = part.valid and np.isfinite(points).all()
            if usable and np.isfinite(rotations).all():  # a broken estimate must not poison the track
                jobs.append((part, track, points, rotations))
        if not jobs:
            return
        hand_jobs = [k for k, job in enumerate(jobs) if isinstance(job[0], HandEstimate)]
        if hand_jobs:  # the MANO joint rotations join the wrist rotation, converted in one call
            mano = axis_angle_to_matrix(
                np.concatenate([np.reshape(jobs[k][0].mano_pose, (16, 3)) for k in hand_jobs])
            ).reshape(-1, 16, 3, 3)
            for k, joint_rotations in zip(hand_jobs, mano, strict=True):
                part, track, points, wrist = jobs[k]
                jobs[k] = (part, track, points, np.concatenate([wrist, joint_rotations]))
        filtered = update_filters(
            [tr.filter for _, tr, _, _ in jobs], t, [j[2] for j in jobs], [j[3] for j in jobs]
        )
        hand_rotations = []
        for (part, _, _, _), (points, rotations, accepted) in zip(jobs, filtered, strict=True):
            if not accepted:
                self.gate_rejections += 1
            if isinstance(part, HandEstimate):
                part.wrist_translation = points[0].copy()
                part.joints3d = points[1:22].copy()
                part.verts3d = points[22:].copy()
                part.wrist_rotation = rotations[0].copy()
                hand_rotations.append(rotations[1:])
            else:
                part.translation, part.rotation = points[0].copy(), rotations[0].copy()
        if hand_rotations:
            mano_out = matrix_to_axis_angle(np.concatenate(hand_rotations)).reshape(-1, 48)
            for k, pose in zip(hand_jobs, mano_out, strict=True):
                jobs[k][0].mano_pose = pose
