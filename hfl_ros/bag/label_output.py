"""Where labels go: the output bag, labels.jsonl (flushed per frame) and, at the end, labels.npz.

Layout of the output directory::

    DIR/bag/            rosbag2 directory, MCAP storage (bag.mcap + metadata.yaml)
    DIR/labels.jsonl    one record per synced frame, appended and flushed as frames are labeled
    DIR/labels.npz      the same records as arrays, written when the run ends (also after an error)
    DIR/summary.json    counters of the run

``--resume`` keeps the frames that are both in labels.jsonl and in the previous bag (a record whose bag
messages were lost, e.g. by a killed run, is dropped and its frame labeled again). The bag is rewritten: a new
bag is written under ``DIR/.resume/bag`` with the previous label messages merged in by log time, and it
replaces ``DIR/bag`` once finalised, so ``DIR/bag`` is always one complete, valid bag.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..results import HandObjectResult
from ..ros import names
from ..ros.markers import results_to_markers
from ..ros.pose_messages import results_to_detection3d, results_to_msg
from ..ros.tf_messages import results_to_tf
from ..tracking import SmootherConfig
from . import records
from .errors import BagError, CorruptBagError, OutputError
from .reader import BagReader, RawMessage
from .typestore import message_types, typestore
from .writer import BagWriter

BAG_DIR = "bag"
JSONL = "labels.jsonl"
NPZ = "labels.npz"
SUMMARY = "summary.json"
RESUME_DIR = ".resume"


#: Namespace of the output topics: the perception node's name, so labels replay like the live output.
NODE_NAMESPACE = f"/{names.PERCEPTION_NODE}"


@dataclass(frozen=True)
class OutputTopics:
    """Topics of the output bag (by default the perception node's ``~/`` topics and /tf)."""

    poses: str = names.node_topic(names.POSES_OUTPUT)
    objects: str = names.node_topic(names.OBJECTS_OUTPUT)
    tf: str = names.TF_TOPIC
    markers: str = names.node_topic(names.MARKERS_OUTPUT)

    @classmethod
    def in_namespace(cls, namespace: str) -> OutputTopics:
        def topic(name: str) -> str:
            return names.node_topic(name, namespace)

        return cls(topic(names.POSES_OUTPUT), topic(names.OBJECTS_OUTPUT), names.TF_TOPIC,
                   topic(names.MARKERS_OUTPUT))

    @property
    def all(self) -> tuple[str, ...]:
        return (self.poses, self.objects, self.tf, self.markers)

    @property
    def smoothed_poses(self) -> str:
        """``--smooth``: the smoothed HandObjectPoseArray, ``<namespace>/smoothed/hand_object_poses``."""
        namespace, _, name = self.poses.rpartition("/")
        return f"{namespace}/smoothed/{name}"


@dataclass
class PreparedFrame:
    """A synced frame decoded for the Estimator, or the reason it cannot be estimated (``status`` != "ok")."""

    index: int
    stamp_ns: int
    sec: int
    nanosec: int
    frame_id: str
    image: np.ndarray | None = None
    K: np.ndarray | None = None
    detections: list = field(default_factory=list)
    status: str = records.FRAME_OK
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.status == records.FRAME_OK

    @property
    def num_hands(self) -> int:
        return sum(1 for d in self.detections if d.is_hand)


@dataclass
class ResumeState:
    """What a previous run already labeled, found in DIR/labels.jsonl and DIR/bag."""

    done: set[int]
    kept_records: int
    dropped_records: int
    previous_bag: Path | None

    @classmethod
    def load(cls, out_dir: Path, poses_topic: str) -> ResumeState:
        jsonl = out_dir / JSONL
        kept, bad_lines = records.read_jsonl(jsonl)
        bag = out_dir / BAG_DIR
        _finish_interrupted_swap(out_dir)
        in_bag: set[int] = set()
        previous: Path | None = None
        if bag.exists():
            try:
                with BagReader(bag) as reader:
                    previous = bag
                    for raw in reader.messages([poses_topic]):
                        in_bag.add(raw.log_time_ns)
            except CorruptBagError:
                pass  # keep the readable part
            except BagError:
                previous = None
        unique: dict[int, dict] = {}
        for record in kept:
            stamp = int(record["stamp_ns"])
            if stamp in in_bag and stamp not in unique:
                unique[stamp] = record
        dropped = len(kept) + bad_lines - len(unique)
        # A kill can cut the last line just before its newline: appending would then join two records.
        unterminated = jsonl.exists() and not jsonl.read_bytes().endswith(b"\n") and jsonl.stat().st_size > 0
        if dropped or unterminated:
            tmp = jsonl.with_name(jsonl.name + ".tmp")
            with tmp.open("w", encoding="utf-8") as stream:
                for record in unique.values():
                    stream.write(records.dumps(record) + "\n")
            tmp.replace(jsonl)
        return cls(set(unique), len(unique), dropped, previous)


def _finish_interrupted_swap(out_dir: Path) -> None:
    """Complete :meth:`LabelSink._swap_in_resumed_bag` when a kill came between its two renames.

    ``.resume/previous`` exists only once the new bag under ``.resume/bag`` was finalised, so that bag is
    complete and becomes ``DIR/bag``.
    """
    new, previous = out_dir / RESUME_DIR / BAG_DIR, out_dir / RESUME_DIR / "previous"
    if not (out_dir / BAG_DIR).exists() and previous.exists() and new.exists():
        new.rename(out_dir / BAG_DIR)
        shutil.rmtree(out_dir / RESUME_DIR, ignore_errors=True)


class _PreviousMessages:
    """The previous bag's label messages of the kept frames, merged into the new bag in log-time order."""

    def __init__(self, path: Path | None, topics: Sequence[str], done: set[int]) -> None:
        self._reader = BagReader(path).open() if path is not None else None
        self._iter: Iterator[RawMessage] | None = None
        if self._reader is not None:
            self._iter = (m for m in self._reader.messages(topics) if m.log_time_ns in done)
        self._next: RawMessage | None = None
        self._advance()

    def _advance(self) -> None:
        self._next = None
        if self._iter is None:
            return
        try:
            self._next = next(self._iter)
        except (StopIteration, CorruptBagError):
            self._iter = None

    def until(self, log_time_ns: int | None) -> Iterator[RawMessage]:
        """Messages with log time <= ``log_time_ns`` (all remaining when None)."""
        while self._next is not None and (log_time_ns is None or self._next.log_time_ns <= log_time_ns):
            yield self._next
            self._advance()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


class LabelSink:
    """Writes each labeled frame to the output bag and labels.jsonl; :meth:`close` finalises everything."""

    def __init__(self, out_dir: Path, *, topics: OutputTopics = OutputTopics(), faces: Any = None,
                 object_models: Any = None, resume: ResumeState | None = None, publish_tf: bool = True,
                 tf_prefix: str = "", tf_joints: bool = True, publish_mesh: bool = True,
                 marker_lifetime_s: float = 0.5, with_vertices: bool = False,
                 smooth: SmootherConfig | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.smooth = smooth
        self.topics = topics
        self.faces = faces
        self.object_models = object_models
        self.resume = resume
        self.publish_tf = publish_tf
        self.tf_prefix = tf_prefix
        self.tf_joints = tf_joints
        self.publish_mesh = publish_mesh
        self.marker_lifetime_s = marker_lifetime_s
        self.with_vertices = with_vertices
        self.types = message_types()
        self.store = typestore()
        self._marker_cache: dict[Any, Any] = {}
        self._writer: BagWriter | None = None
        self._jsonl: Any = None
        self._previous: _PreviousMessages | None = None
        self.frames_written = 0

    @property
    def bag_path(self) -> Path:
        return self.out_dir / BAG_DIR

    @property
    def _writing_path(self) -> Path:
        return self.out_dir / RESUME_DIR / BAG_DIR if self.resume is not None else self.bag_path

    def open(self) -> LabelSink:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.resume is None:
            existing = [p.name for p in (self.bag_path, self.out_dir / JSONL) if p.exists()]
            if existing:
                raise OutputError(f"{self.out_dir} already holds labels ({', '.join(existing)}); "
                                  "pass --resume to continue them or choose another --out")
        shutil.rmtree(self.out_dir / RESUME_DIR, ignore_errors=True)
        self._writing_path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = BagWriter(self._writing_path, self.store).open()
        if self.resume is not None:
            self._previous = _PreviousMessages(self.resume.previous_bag, self.topics.all, self.resume.done)
        self._jsonl = (self.out_dir / JSONL).open("a" if self.resume is not None else "w", encoding="utf-8")
        return self

    def _write(self, topic: str, msg: Any, log_time_ns: int) -> None:
        self._merge_previous(log_time_ns)
        self._writer.write(topic, msg, log_time_ns)

    def _merge_previous(self, log_time_ns: int | None) -> None:
        if self._previous is not None:
            for old in self._previous.until(log_time_ns):
                self._writer.write_raw(old.topic, old.msgtype, old.data, old.log_time_ns)

    def write_inputs(self, messages: Iterable[RawMessage]) -> None:
        """Copy input messages unchanged (same topic, type, log time)."""
        for raw in messages:
            self._merge_previous(raw.log_time_ns)
            self._writer.write_raw(raw.topic, raw.msgtype, raw.data, raw.log_time_ns)

    def write_frame(self, frame: PreparedFrame, results: Sequence[HandObjectResult]) -> dict[str, Any]:
        """Write one synced frame's messages (at the image stamp) and its JSONL record; return the record."""
        types = self.types
        stamp = types.get("builtin_interfaces/msg/Time")(sec=frame.sec, nanosec=frame.nanosec)
        header = types.get("std_msgs/msg/Header")(stamp=stamp, frame_id=frame.frame_id)
        t = frame.stamp_ns
        self._write(self.topics.poses, results_to_msg(results, header, types, self.with_vertices), t)
        self._write(self.topics.objects,
                    results_to_detection3d(results, header, types, self.object_models, prefix=self.tf_prefix),
                    t)
        if self.publish_tf:
            tf = results_to_tf(results, header, types, prefix=self.tf_prefix, joints=self.tf_joints)
            if len(tf.transforms):
                self._write(self.topics.tf, tf, t)
        markers = results_to_markers(results, header, types, self.faces, self.marker_lifetime_s,
                                     publish_mesh=self.publish_mesh, object_models=self.object_models,
                                     cache=self._marker_cache)
        if len(markers.markers):
            self._write(self.topics.markers, markers, t)
        record = records.frame_record(
            frame.index, frame.stamp_ns, frame.frame_id, status=frame.status,
            error=None if frame.error is None else str(frame.error), num_hands=frame.num_hands,
            num_objects=len(frame.detections) - frame.num_hands, results=results)
        self._jsonl.write(records.dumps(record) + "\n")
        self._jsonl.flush()
        self.frames_written += 1
        return record

    def _write_smoothed(self) -> list[dict[str, Any]]:
        """``--smooth``: smooth all records so far, write the smoothed poses topic; return the records."""
        from .label_smooth import smooth_records, smoothed_results

        self._jsonl.flush()
        smoothed = smooth_records(records.read_jsonl(self.out_dir / JSONL)[0], self.smooth)
        types = self.types
        for frame in smoothed:
            stamp_ns = int(frame["stamp_ns"])
            stamp = types.get("builtin_interfaces/msg/Time")(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
            header = types.get("std_msgs/msg/Header")(stamp=stamp, frame_id=str(frame["frame_id"]))
            msg = results_to_msg(smoothed_results(frame), header, types, with_vertices=False)
            self._writer.write(self.topics.smoothed_poses, msg, stamp_ns)
        return smoothed

    def close(self) -> None:
        """Finalise the bag (merging the rest of the previous one), close labels.jsonl, write labels.npz.

        With ``smooth``, the smoothed poses are written to the bag first, and labels.jsonl is rewritten
        (through a temporary file) with them next to the raw ones.
        """
        smoothed: list[dict[str, Any]] | None = None
        try:
            if self._writer is not None:
                try:
                    self._merge_previous(None)
                    if self.smooth is not None and self._jsonl is not None:
                        smoothed = self._write_smoothed()
                finally:
                    self._writer.close()
                    if self._previous is not None:
                        self._previous.close()
                if self.resume is not None:
                    self._swap_in_resumed_bag()
        finally:
            self._writer = None
            if self._jsonl is not None:
                self._jsonl.close()
                self._jsonl = None
            if smoothed is not None:
                tmp = self.out_dir / (JSONL + ".tmp")
                tmp.write_text("".join(records.dumps(r) + "\n" for r in smoothed), encoding="utf-8")
                tmp.replace(self.out_dir / JSONL)
            all_records, _ = records.read_jsonl(self.out_dir / JSONL)
            records.write_npz(self.out_dir / NPZ, all_records)

    def _swap_in_resumed_bag(self) -> None:
        old = self.out_dir / RESUME_DIR / "previous"
        if self.bag_path.exists():
            self.bag_path.rename(old)
        (self.out_dir / RESUME_DIR / BAG_DIR).rename(self.bag_path)
        shutil.rmtree(self.out_dir / RESUME_DIR, ignore_errors=True)
