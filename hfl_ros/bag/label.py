"""Offline labeling of a bag: the node's sync, then the Estimator on every synced frame, batched.

Three stages overlap: a reader thread reads the bag, syncs and decodes frames; the calling thread runs
``Estimator.estimate_batch`` on ``batch_size`` frames at a time; a writer thread builds and writes the output
messages and records. Problems with the bag are handled like this:

- fatal before any work: the bag cannot be opened, a required topic is missing, the output directory is taken;
- per frame (counted, labeled as a failed frame, the run goes on): no camera_info at or before the image,
  an unsupported image encoding or an undecodable image, a bad camera matrix;
- per image (counted, not labeled): an image stamp that does not increase;
- end of the readable data: a truncated or corrupted file.

In every case the outputs written so far are finalised, the summary is saved, and a bag problem ends the run
with one :class:`HflRosError` naming it (the CLI prints it as one line and exits non-zero). So does a stop
(Ctrl-C, SIGTERM: :class:`~hfl_ros.stop_signals.Interrupted` when the entry point handles them): the frames
already estimated are written, the outputs closed, and ``--resume`` finishes the job later. Opening and
finalising the outputs run with stop signals deferred, so that they are never left half-written.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import BadCameraError, BadImageError, HflRosError
from ..results import FrameEstimator, Side, Status
from ..ros.convert import LabelMap
from ..stop_signals import Interrupted, stop_signals
from .errors import MissingCameraInfoError, StampOrderError, UnsupportedEncodingError
from .frame_decoding import prepare_frame
from .frames import BagFrameSource
from .input_topics import resolve_topics
from .label_options import LabelOptions
from .label_output import JSONL, SUMMARY, LabelSink, PreparedFrame, ResumeState
from .label_summary import LabelSummary
from .reader import BagReader, RawMessage

logger = logging.getLogger(__name__)


_END = object()
#: Input messages copied (--copy-inputs) are handed to the writer at least this often.
_MAX_PENDING_COPIES = 64


@dataclass
class _Item:
    frame: PreparedFrame | None
    inputs: list[RawMessage]


class _StopError(Exception):
    pass


class Labeler:
    """Label one bag into ``options.out``; ``estimator`` may be given (tests, benchmarks), else built."""

    def __init__(self, options: LabelOptions, estimator: FrameEstimator | None = None) -> None:
        if options.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {options.batch_size}")
        self.options = options
        self.estimator = estimator
        self.summary = LabelSummary(bag=str(options.bag), out=str(options.out))
        self.label_map = LabelMap(tuple(options.right_hand_labels), tuple(options.left_hand_labels),
                                  Side(options.default_hand_side), tuple(options.hand_labels))
        self._stop = threading.Event()  # stop reading (end of the pipeline or a failure)
        self._abort = threading.Event()  # the writer cannot be handed the end marker: it stops at once
        self._first_errors: dict[str, str] = {}
        self.summary_saved = False

    # -- entry point -----------------------------------------------------------------------------------------
    def run(self) -> LabelSummary:
        """Label the bag; raise the bag's problem (if any) once the outputs are finalised and summarised."""
        options = self.options
        with BagReader(options.bag) as reader:
            topics = resolve_topics(reader.topics, options.image_topic, options.camera_info_topic,
                                    options.detections_topic)
            self.summary.topics = {"image": topics.image, "camera_info": topics.camera_info,
                                   "detections": topics.detections}
            resume = ResumeState.load(options.out, options.output_topics.poses) if options.resume else None
            if resume is not None:
                self.summary.dropped_previous_records = resume.dropped_records
            if self.estimator is None:
                from ..estimator_factory import build_estimator  # torch: only when a model is needed

                vertices = options.publish_mesh or options.publish_vertices
                self.estimator = build_estimator(replace(options.estimator, with_vertices=vertices))
            stop = stop_signals()
            with stop.deferred():
                sink = LabelSink(
                    options.out, topics=options.output_topics,
                    faces=getattr(self.estimator, "hand_faces", None),
                    object_models=getattr(self.estimator, "object_models", None), resume=resume,
                    publish_tf=options.publish_tf, tf_prefix=options.tf_prefix,
                    tf_joints=options.publish_joint_tf, publish_mesh=options.publish_mesh,
                    marker_lifetime_s=options.marker_lifetime, with_vertices=options.publish_vertices,
                    smooth=options.smooth).open()
            source = BagFrameSource(reader, topics, options.sync_slop, copy_topics=options.copy_inputs)
            failure: BaseException | None = None
            started = time.monotonic()
            try:
                stop.check()  # a stop asked for while the outputs were being opened
                expected = min(reader.topics[topics.image].count, reader.topics[topics.detections].count)
                self._pipeline(source, sink, resume.done if resume else set(), expected)
            except BaseException as exc:  # finish the outputs first, then report
                failure = exc
            finally:
                with stop.deferred():
                    self._stop.set()
                    sink.close()
            with stop.deferred():
                self._finish_summary(source, started)
                error = self._bag_error(source, failure)
                if error is not None:
                    self.summary.error, self.summary.error_reason = str(error), error.reason
                elif isinstance(failure, KeyboardInterrupt):
                    name = failure.name if isinstance(failure, Interrupted) else "KeyboardInterrupt"
                    self.summary.error, self.summary.error_reason = f"interrupted ({name})", "interrupted"
                (options.out / SUMMARY).write_text(self.summary.to_json())
                self.summary_saved = True
        if failure is not None and not isinstance(failure, HflRosError):
            raise failure
        if error is not None:
            raise error
        return self.summary

    # -- stages ----------------------------------------------------------------------------------------------
    def _pipeline(self, source: BagFrameSource, sink: LabelSink, done: set[int], total: int | None) -> None:
        batch_size = self.options.batch_size
        frames_q: queue.Queue = queue.Queue(maxsize=2 * batch_size + 2)
        results_q: queue.Queue = queue.Queue(maxsize=2)
        reader_errors: list[BaseException] = []
        writer_errors: list[BaseException] = []
        reader = threading.Thread(target=self._read_stage, args=(source, done, frames_q, reader_errors),
                                  name="hfl-label-read", daemon=True)
        writer = threading.Thread(target=self._write_stage, args=(sink, results_q, writer_errors),
                                  name="hfl-label-write", daemon=True)
        progress = _progress(total, len(done), self.options.progress)
        reader.start()
        writer.start()
        finished = False
        stop = stop_signals()
        try:
            ended = False
            while not ended:
                batch: list[_Item] = []
                ready = 0  # frames of the batch that go to the Estimator
                while ready < batch_size:
                    item = self._get(frames_q, writer_errors)
                    if item is _END:
                        ended = True
                        break
                    batch.append(item)
                    ready += item.frame is not None and item.frame.ok
                if batch:
                    self._put(results_q, (batch, self._estimate(batch)), writer_errors)
                    progress.update(sum(1 for i in batch if i.frame is not None))
            self._put(results_q, _END, writer_errors)
            finished = True
        finally:
            with stop.deferred():  # the writer must be done before the outputs are closed
                self._stop.set()
                if not finished:  # interrupted or failed: still write the frames already estimated
                    try:
                        self._put(results_q, _END, writer_errors)
                    except BaseException:  # the writer is gone; what it wrote stays valid
                        self._abort.set()
                progress.close()
                writer.join()
                reader.join()
        for errors in (writer_errors, reader_errors):
            if errors:
                raise errors[0]

    def _get(self, q: queue.Queue, writer_errors: list[BaseException]) -> Any:
        while True:
            if writer_errors:
                raise writer_errors[0]
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                continue

    def _put(self, q: queue.Queue, item: Any, errors: list[BaseException] | None = None) -> None:
        while True:
            if errors:
                raise errors[0]
            if self._stop.is_set() and item is not _END:
                raise _StopError()
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _read_stage(self, source: BagFrameSource, done: set[int], out: queue.Queue,
                    errors: list[BaseException]) -> None:
        pending: list[RawMessage] = []

        def copy(raw: RawMessage) -> None:
            pending.append(raw)
            if len(pending) >= _MAX_PENDING_COPIES:  # a long stretch without synced frames
                self._put(out, _Item(None, pending[:]))
                pending.clear()

        try:
            try:
                for frame in source.frames(on_message=copy if self.options.copy_inputs else None):
                    if frame.stamp_ns in done:
                        self.summary.resumed_frames += 1
                        prepared = None
                    else:
                        prepared = prepare_frame(frame, self.label_map)
                    if prepared is not None or pending:
                        self._put(out, _Item(prepared, pending[:]))
                        pending.clear()
            except _StopError:
                return
            except BaseException as exc:  # handed to the main thread after the frames before it
                errors.append(exc)
            self._put(out, _Item(None, pending[:]))
            self._put(out, _END)
        except _StopError:
            pass

    def _estimate(self, batch: list[_Item]) -> list[list]:
        """Results per item; a frame the Estimator rejects gets that error as its status and no results."""
        frames = [item.frame for item in batch if item.frame is not None and item.frame.ok]
        outputs: list[Any] = []
        if frames:
            self.summary.estimator_calls += 1
            self.summary.estimated_frames += len(frames)
            try:
                outputs = list(self.estimator.estimate_batch([(f.image, f.K, f.detections) for f in frames]))
            except HflRosError as exc:
                outputs = [exc] * len(frames)
            except Exception as exc:  # a failed batch fails its frames only
                error = HflRosError(f"estimator failed: {type(exc).__name__}: {exc}")
                error.reason = "internal_error"
                outputs = [error] * len(frames)
        for frame, out in zip(frames, outputs, strict=True):
            if isinstance(out, BaseException):
                frame.status, frame.error = getattr(out, "reason", "internal_error"), out
        by_frame = {id(f): out for f, out in zip(frames, outputs, strict=True)
                    if not isinstance(out, BaseException)}
        return [by_frame.get(id(item.frame), []) for item in batch]

    def _write_stage(self, sink: LabelSink, q: queue.Queue, errors: list[BaseException]) -> None:
        try:
            while True:
                try:
                    item = q.get(timeout=0.1)
                except queue.Empty:
                    if self._abort.is_set():
                        return
                    continue
                if item is _END:
                    return
                batch, results = item
                for entry, frame_results in zip(batch, results, strict=True):
                    if entry.inputs:
                        sink.write_inputs(entry.inputs)
                    if entry.frame is not None:
                        sink.write_frame(entry.frame, frame_results)
                        self._count(entry.frame, frame_results)
        except BaseException as exc:  # handed to the main thread
            errors.append(exc)
            self._stop.set()

    def _count(self, frame: PreparedFrame, results: Sequence[Any]) -> None:
        s = self.summary
        s.labeled_frames += 1
        if not frame.ok:
            s.frame_failures[frame.status] = s.frame_failures.get(frame.status, 0) + 1
            self._first_errors.setdefault(frame.status, str(frame.error))
            if frame.status == MissingCameraInfoError.reason:
                s.frames_without_camera_info += 1
            return
        if frame.num_hands == 0:
            s.frames_without_hands += 1
        s.pairs += len(results)
        for result in results:
            if result.status == Status.OK:
                s.pairs_ok += 1
            else:
                name = Status(result.status).name.lower()
                s.pair_failures[name] = s.pair_failures.get(name, 0) + 1

    # -- end of run ------------------------------------------------------------------------------------------
    def _finish_summary(self, source: BagFrameSource, started: float) -> None:
        s, st = self.summary, source.stats
        s.images = st.images
        s.synced_frames = st.synced
        s.frames_without_detections = st.images_without_detections
        s.images_out_of_order = st.images_out_of_order
        s.unmatched_detections = st.unmatched_detections
        s.elapsed_s = round(time.monotonic() - started, 3)
        s.fps = round(s.labeled_frames / s.elapsed_s, 3) if s.elapsed_s > 0 else 0.0
        if (self.options.out / JSONL).exists():
            s.total_labeled_frames = _count_lines(self.options.out / JSONL)

    def _bag_error(self, source: BagFrameSource, failure: BaseException | None) -> HflRosError | None:
        """The error ending the run: a fatal one, else out-of-order stamps, else the commonest frame error."""
        if isinstance(failure, HflRosError):
            return failure
        st, s = source.stats, self.summary
        if st.images_out_of_order:
            prev, bad = st.first_out_of_order
            return StampOrderError(
                f"stamps out of order on {source.topics.image}: {st.images_out_of_order} image(s) not newer "
                f"than the one before were skipped (first: {bad} ns after {prev} ns)")
        if s.frame_failures:
            reason, count = Counter(s.frame_failures).most_common(1)[0]
            cls = _FRAME_ERRORS.get(reason, HflRosError)
            return cls(f"{count} of {s.labeled_frames} frame(s) could not be labeled ({reason}): "
                       f"{self._first_errors.get(reason, '')}")
        return None


#: frame status -> the error class reported for it at the end of the run.
_FRAME_ERRORS: dict[str, type[HflRosError]] = {
    UnsupportedEncodingError.reason: UnsupportedEncodingError,
    MissingCameraInfoError.reason: MissingCameraInfoError,
    BadImageError.reason: BadImageError,
    BadCameraError.reason: BadCameraError,
}


def _count_lines(path: Path) -> int:
    with path.open("rb") as stream:
        return sum(1 for line in stream if line.strip())


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int | None, initial: int, enabled: bool) -> Any:
    if not enabled:
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(total=total or None, initial=initial, unit="frame", desc="labeling", dynamic_ncols=True,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}]")


def label_bag(options: LabelOptions, estimator: FrameEstimator | None = None) -> LabelSummary:
    """Label ``options.bag`` into ``options.out`` (see :class:`Labeler`)."""
    return Labeler(options, estimator).run()
