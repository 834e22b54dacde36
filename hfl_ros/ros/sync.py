"""Time synchronisation of input streams by header stamp, without any ROS runtime.

``message_filters`` is not available as a PyPI wheel, so this module provides the two pieces the perception
node and the offline labeler need:

- :class:`StampSynchronizer` matches messages of several inputs (image, detections, ...) whose stamps are
  equal (``slop_s == 0``) or within ``slop_s`` of each other.
- :class:`CameraInfoJoiner` attaches a camera_info to each synced frame: the one with the nearest stamp within
  the slop if it arrives in time, else the latest camera_info received (calibration is usually static).

Both are plain Python, take stamps in integer nanoseconds, and are not thread-safe (callers hold a lock).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

NS_PER_S = 1_000_000_000


def seconds_to_ns(seconds: float) -> int:
    """Convert a duration in seconds to integer nanoseconds."""
    return round(seconds * NS_PER_S)


class _StampQueue:
    """Messages of one input, sorted by stamp (insertion order among equal stamps)."""

    def __init__(self) -> None:
        self.stamps: list[int] = []
        self.msgs: list[Any] = []

    def __len__(self) -> int:
        return len(self.stamps)

    def insert(self, stamp_ns: int, msg: Any) -> None:
        i = bisect.bisect_right(self.stamps, stamp_ns)
        self.stamps.insert(i, stamp_ns)
        self.msgs.insert(i, msg)

    def nearest(self, stamp_ns: int, slop_ns: int) -> int | None:
        """Index of the message nearest to ``stamp_ns`` within ``slop_ns``, or None."""
        i = bisect.bisect_left(self.stamps, stamp_ns)
        candidates = [j for j in (i - 1, i) if 0 <= j < len(self.stamps)]
        candidates = [j for j in candidates if abs(self.stamps[j] - stamp_ns) <= slop_ns]
        return min(candidates, key=lambda j: abs(self.stamps[j] - stamp_ns), default=None)

    def pop(self, index: int) -> Any:
        self.stamps.pop(index)
        return self.msgs.pop(index)

    def pop_front(self, count: int) -> None:
        del self.stamps[:count]
        del self.msgs[:count]


class StampSynchronizer:
    """Match messages of ``num_inputs`` inputs by stamp.

    Each :meth:`add` returns the sets it completed, as ``(stamp_ns, (msg_0, ..., msg_{n-1}))`` where
    ``stamp_ns`` is the stamp of input 0 (the reference input, e.g. the image). With ``slop_s == 0`` stamps
    must be equal; otherwise every message of a set is within ``slop_s`` of the new message that completed it,
    choosing for each input the nearest stamp (keep the slop below half the frame period so that neighbours
    are not confused).

    Sets are emitted in stamp order: once a set is emitted, older waiting messages can no longer match and are
    discarded (counted in :attr:`unmatched`), as are messages that arrive older than the last emitted set.
    Each input keeps at most ``queue_size`` waiting messages; the oldest beyond that is evicted (counted in
    :attr:`dropped`). With ``max_age_s``, messages older than the newest stamp seen minus ``max_age_s`` are
    discarded as unmatched too, so an input whose partner never comes is reported promptly. With
    ``reset_on_jump_back_s``, a stamp that much older than the newest one of its own input (a replayed bag
    restarting) resets the synchroniser instead of being discarded; a message that lags behind a burst of
    another input does not. Per-input counts are in :attr:`unmatched_per_input` and
    :attr:`dropped_per_input`.
    """

    def __init__(self, num_inputs: int, slop_s: float = 0.0, queue_size: int = 30, *,
                 max_age_s: float | None = None, reset_on_jump_back_s: float | None = None) -> None:
        if num_inputs < 1:
            raise ValueError(f"num_inputs must be >= 1, got {num_inputs}")
        if not slop_s >= 0.0:
            raise ValueError(f"slop_s must be >= 0, got {slop_s}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.num_inputs = num_inputs
        self.slop_ns = seconds_to_ns(slop_s)
        self.queue_size = queue_size
        self.max_age_ns = None if max_age_s is None else seconds_to_ns(max_age_s)
        self.jump_back_ns = None if reset_on_jump_back_s is None else seconds_to_ns(reset_on_jump_back_s)
        self.resets = 0
        self._newest_ns: int | None = None
        self._newest_per_input: list[int | None] = [None] * num_inputs
        self._queues = [_StampQueue() for _ in range(num_inputs)]
        self._last_emitted_ns: int | None = None
        self.dropped_per_input = [0] * num_inputs
        self.unmatched_per_input = [0] * num_inputs

    @property
    def dropped(self) -> int:
        """Messages evicted because their input's queue was full."""
        return sum(self.dropped_per_input)

    @property
    def unmatched(self) -> int:
        """Messages discarded because no set could include them any more."""
        return sum(self.unmatched_per_input)

    def pending(self, index: int) -> int:
        """Number of messages of input ``index`` still waiting for a match."""
        return len(self._queues[index])

    def add(self, index: int, stamp_ns: int, msg: Any) -> list[tuple[int, tuple[Any, ...]]]:
        """Add one message of input ``index``; return the sets it completed (zero or one)."""
        if not 0 <= index < self.num_inputs:
            raise IndexError(f"input index {index} out of range [0, {self.num_inputs})")
        own_newest = self._newest_per_input[index]
        if (self.jump_back_ns is not None and own_newest is not None
                and stamp_ns < own_newest - self.jump_back_ns):
            # Time jumped back (e.g. a bag replayed in a loop): start over. Judged per input, since a partner
            # that lags behind a burst of another input is late, not a jump.
            self.reset()
            self.resets += 1
            own_newest = None
        if self._last_emitted_ns is not None and stamp_ns < self._last_emitted_ns - self.slop_ns:
            self.unmatched_per_input[index] += 1
            return []
        self._newest_ns = stamp_ns if self._newest_ns is None else max(self._newest_ns, stamp_ns)
        self._newest_per_input[index] = stamp_ns if own_newest is None else max(own_newest, stamp_ns)
        queue = self._queues[index]
        queue.insert(stamp_ns, msg)
        if len(queue) > self.queue_size:
            queue.pop_front(1)
            self.dropped_per_input[index] += 1
        matched = self._match(stamp_ns)
        if self.max_age_ns is not None:
            self._discard_older_than(self._newest_ns - self.max_age_ns)
        return matched

    def reset(self) -> None:
        """Forget every waiting message and the stamp order (counters are kept)."""
        for queue in self._queues:
            queue.pop_front(len(queue))
        self._last_emitted_ns = None
        self._newest_ns = None
        self._newest_per_input = [None] * self.num_inputs

    def _discard_older_than(self, limit_ns: int) -> None:
        for i, queue in enumerate(self._queues):
            count = bisect.bisect_left(queue.stamps, limit_ns)
            if count:
                self.unmatched_per_input[i] += count
                queue.pop_front(count)

    def finish(self) -> int:
        """Discard every waiting message (end of stream), counting them as unmatched; return how many."""
        total = 0
        for i, queue in enumerate(self._queues):
            self.unmatched_per_input[i] += len(queue)
            total += len(queue)
            queue.pop_front(len(queue))
        return total

    def _match(self, stamp_ns: int) -> list[tuple[int, tuple[Any, ...]]]:
        picks = []
        for queue in self._queues:
            j = queue.nearest(stamp_ns, self.slop_ns)
            if j is None:
                return []
            picks.append(j)
        msgs = []
        ref_stamp = self._queues[0].stamps[picks[0]]
        for i, (queue, j) in enumerate(zip(self._queues, picks, strict=True)):
            msgs.append(queue.pop(j))
            # Messages older than the matched one can only ever match an older set: discard them.
            self.unmatched_per_input[i] += j
            queue.pop_front(j)
        self._last_emitted_ns = ref_stamp if self._last_emitted_ns is None else max(self._last_emitted_ns,
                                                                                    ref_stamp)
        return [(ref_stamp, tuple(msgs))]


@dataclass
class JoinedFrame:
    """A synced frame with the camera_info chosen for it.

    ``info`` is None when no usable camera_info was received; ``info_exact`` is True when its stamp is within
    the slop of the frame's stamp (False: the latest camera_info was used as a fallback).
    """

    stamp_ns: int
    payload: Any
    info: Any | None
    info_exact: bool


class CameraInfoJoiner:
    """Attach a camera_info to each synced frame.

    A frame whose camera_info (stamp within ``slop_s``) is already there is ready at once. Otherwise it waits
    up to ``wait_s`` for one to arrive; when that time has passed (checked by :meth:`poll`), or when a newer
    frame is added, it is released with the latest camera_info received (``info_exact=False``), or with
    ``info=None`` if none came or, with ``max_fallback_age_s``, if the latest one's stamp is further than that
    from the frame's. Frames are released in the order they were added. ``now_ns`` is any monotonic clock.
    """

    def __init__(self, slop_s: float = 0.0, wait_s: float = 0.1, history: int = 30,
                 max_fallback_age_s: float | None = None) -> None:
        self.slop_ns = seconds_to_ns(slop_s)
        self.wait_ns = seconds_to_ns(wait_s)
        self.max_fallback_age_ns = None if max_fallback_age_s is None else seconds_to_ns(max_fallback_age_s)
        self._infos = _StampQueue()
        self._latest: Any | None = None
        self._latest_stamp_ns = 0
        self._history = max(1, history)
        self._waiting: list[tuple[int, Any, int]] = []  # (stamp_ns, payload, deadline_ns)

    @property
    def waiting(self) -> int:
        """Number of frames waiting for their camera_info."""
        return len(self._waiting)

    def add_info(self, stamp_ns: int, msg: Any) -> list[JoinedFrame]:
        """Record a camera_info; return the waiting frames it completes (and any older ones, by fallback)."""
        self._infos.insert(stamp_ns, msg)
        self._latest = msg
        self._latest_stamp_ns = stamp_ns
        if len(self._infos) > self._history:
            self._infos.pop_front(1)
        matched = [k for k, (stamp, _, _) in enumerate(self._waiting)
                   if abs(stamp - stamp_ns) <= self.slop_ns]
        if not matched:
            return []
        last = matched[-1]
        released = [self._release(stamp, payload) for stamp, payload, _ in self._waiting[: last + 1]]
        del self._waiting[: last + 1]
        return released

    def add_frame(self, stamp_ns: int, payload: Any, now_ns: int) -> list[JoinedFrame]:
        """Add a synced frame; return the frames that are ready, oldest first."""
        released = [self._release(stamp, payload_) for stamp, payload_, _ in self._waiting]
        self._waiting.clear()
        if self._infos.nearest(stamp_ns, self.slop_ns) is not None or self.wait_ns <= 0:
            released.append(self._release(stamp_ns, payload))
        else:
            self._waiting.append((stamp_ns, payload, now_ns + self.wait_ns))
        return released

    def poll(self, now_ns: int) -> list[JoinedFrame]:
        """Release the frames whose wait is over."""
        released = []
        while self._waiting and self._waiting[0][2] <= now_ns:
            stamp, payload, _ = self._waiting.pop(0)
            released.append(self._release(stamp, payload))
        return released

    def flush(self) -> list[JoinedFrame]:
        """Release every waiting frame (end of stream)."""
        released = [self._release(stamp, payload) for stamp, payload, _ in self._waiting]
        self._waiting.clear()
        return released

    def _release(self, stamp_ns: int, payload: Any) -> JoinedFrame:
        j = self._infos.nearest(stamp_ns, self.slop_ns)
        if j is not None:
            return JoinedFrame(stamp_ns, payload, self._infos.msgs[j], True)
        max_age = self.max_fallback_age_ns
        if max_age is not None and abs(stamp_ns - self._latest_stamp_ns) > max_age:
            return JoinedFrame(stamp_ns, payload, None, False)
        return JoinedFrame(stamp_ns, payload, self._latest, False)


__all__ = ["CameraInfoJoiner", "JoinedFrame", "StampSynchronizer", "seconds_to_ns"]
