"""The perception node's three inputs matched into frames, thread-safe (no rclpy import).

Images and detections are matched by header stamp (:class:`~hfl_ros.ros.sync.StampSynchronizer`), then each
pair gets its camera_info (:class:`~hfl_ros.ros.sync.CameraInfoJoiner`). Each frame carries the time its
image arrived, for the latency in the diagnostics. Inputs are counted, and stamps that jump back and
detections that match no image are logged (throttled) and counted as failures.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from .convert import stamp_to_ns
from .diagnostics import PerceptionStats
from .node_logging import ThrottledLogger
from .sync import CameraInfoJoiner, JoinedFrame, StampSynchronizer

IMAGE, DETECTIONS = 0, 1  # the synchroniser's inputs; the image is the reference


@dataclass
class ReceivedFrame:
    """A synced frame on its way to inference."""

    joined: JoinedFrame  # payload: (image message, detections message); info: the camera_info or None
    received: float  # time.monotonic() when its image arrived


class InputSync:
    """Matches image, detections and camera_info messages into :class:`ReceivedFrame` s.

    Each ``add_*`` method (any thread) returns the frames the message completed, oldest first; :meth:`poll`
    (a timer) those whose wait for a camera_info is over. Frames come out in stamp order.
    """

    def __init__(self, log: ThrottledLogger, stats: PerceptionStats, *, slop_s: float, queue_size: int,
                 max_age_s: float, camera_info_wait_s: float, camera_info_max_age_s: float) -> None:
        self._log = log
        self._stats = stats
        self._lock = threading.Lock()
        self._slop_s = slop_s
        self._sync = StampSynchronizer(2, slop_s, queue_size, max_age_s=max_age_s,
                                       reset_on_jump_back_s=max(1.0, max_age_s))
        self._joiner = CameraInfoJoiner(slop_s, camera_info_wait_s,
                                        max_fallback_age_s=camera_info_max_age_s or None)
        self._received: dict[int, float] = {}  # image stamp -> time.monotonic() when it arrived
        self._unmatched_reported = 0
        self._resets_reported = 0

    def add_image(self, msg: Any) -> list[ReceivedFrame]:
        self._stats.count_input("image")
        stamp = stamp_to_ns(msg.header.stamp)
        with self._lock:
            self._received[stamp] = time.monotonic()
            return self._received_frames(self._sync_and_join(IMAGE, stamp, msg))

    def add_detections(self, msg: Any) -> list[ReceivedFrame]:
        self._stats.count_input("detections")
        with self._lock:
            return self._received_frames(self._sync_and_join(DETECTIONS, stamp_to_ns(msg.header.stamp), msg))

    def add_camera_info(self, msg: Any) -> list[ReceivedFrame]:
        self._stats.count_input("camera_info")
        with self._lock:
            return self._received_frames(self._joiner.add_info(stamp_to_ns(msg.header.stamp), msg))

    def poll(self) -> list[ReceivedFrame]:
        """The frames that waited long enough for a camera_info with their stamp."""
        with self._lock:
            return self._received_frames(self._joiner.poll(time.monotonic_ns()))

    def counts(self) -> dict[str, int]:
        """Messages that matched nothing, and frames waiting for their camera_info (for the diagnostics)."""
        with self._lock:
            sync = self._sync
            return {
                "unmatched_images": sync.unmatched_per_input[IMAGE] + sync.dropped_per_input[IMAGE],
                "unmatched_detections": (sync.unmatched_per_input[DETECTIONS]
                                         + sync.dropped_per_input[DETECTIONS]),
                "waiting_for_camera_info": self._joiner.waiting,
            }

    def _sync_and_join(self, index: int, stamp: int, msg: Any) -> list[JoinedFrame]:
        """Called with the lock held."""
        sync = self._sync
        ready = []
        for set_stamp, msgs in sync.add(index, stamp, msg):
            ready += self._joiner.add_frame(set_stamp, msgs, time.monotonic_ns())
        if sync.resets > self._resets_reported:  # the synchroniser started over
            self._log.log("warning", "time_jump_back", f"input stamps jumped back (to {stamp} ns, more than "
                          f"{sync.jump_back_ns * 1e-9:g} s before the newest): frames waiting to be "
                          "matched were discarded (a bag replayed in a loop, or a bad clock?)")
            self._stats.failure("time_jump_back", sync.resets - self._resets_reported)
            self._resets_reported = sync.resets
        unmatched = sync.unmatched_per_input[DETECTIONS] + sync.dropped_per_input[DETECTIONS]
        if unmatched > self._unmatched_reported:
            self._log.log("warning", "unmatched_detections",
                          f"{unmatched - self._unmatched_reported} detections message(s) without an image "
                          f"of the same stamp (sync_slop {self._slop_s} s); {unmatched} in total")
            self._stats.failure("unmatched_detections", unmatched - self._unmatched_reported)
            self._unmatched_reported = unmatched
        if len(self._received) > 4 * sync.queue_size:  # images that never made a frame
            for old in sorted(self._received)[: len(self._received) - 2 * sync.queue_size]:
                del self._received[old]
        return ready

    def _received_frames(self, joined: list[JoinedFrame]) -> list[ReceivedFrame]:
        """Called with the lock held."""
        frames = []
        for frame in joined:
            if not frame.info_exact and frame.info is not None:
                self._log.log("info", "camera_info_fallback",
                              "no camera_info with the image's stamp: using the latest one received")
            frames.append(ReceivedFrame(frame, self._received.pop(frame.stamp_ns, None) or time.monotonic()))
        return frames
