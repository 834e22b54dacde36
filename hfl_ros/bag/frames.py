"""Synced frames of a bag: image + detections (+ camera_info), matched by header stamp like the live node.

Two passes over the bag keep memory flat and lose no frame to queue limits: the small detection and
camera_info messages are loaded first and sorted by stamp; then the images stream in recording order and,
before each one, the detections up to its stamp (plus the slop) are fed to the node's
:class:`StampSynchronizer`, so an image meets its detections whatever their recording delay. Camera info is
joined by the node's :class:`CameraInfoJoiner` (nearest within the slop, else the latest one at or before the
frame).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..ros.sync import CameraInfoJoiner, StampSynchronizer, seconds_to_ns
from .errors import CorruptBagError, MessageTypeError
from .reader import BagReader, RawMessage

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
DETECTIONS_TYPE = "vision_msgs/msg/Detection2DArray"


def cdr_header(data: bytes | memoryview) -> tuple[int, int, str]:
    """(sec, nanosec, frame_id) of a CDR message starting with a std_msgs/Header, without deserialising it."""
    little = bytes(data[1:2]) != b"\x00"  # encapsulation kind: 0x0001 CDR_LE, 0x0000 CDR_BE
    order = "<" if little else ">"
    sec, nanosec, size = struct.unpack_from(f"{order}iII", data, 4)
    frame_id = bytes(data[16:16 + max(0, size - 1)]).decode("utf-8", errors="replace")
    return sec, nanosec, frame_id


def header_stamp_ns(data: bytes | memoryview) -> int:
    sec, nanosec, _ = cdr_header(data)
    return sec * 1_000_000_000 + nanosec


def checked_header(raw: RawMessage, checked: set[str]) -> tuple[int, int, str]:
    """:func:`cdr_header` of ``raw``; the first message of each topic (remembered in ``checked``) is also
    deserialised whole. MessageTypeError when the data is not of the declared type (a recorder given the
    wrong type would otherwise yield garbage stamps)."""
    try:
        if raw.topic not in checked:
            from .typestore import typestore

            typestore().deserialize_cdr(bytes(raw.data), raw.msgtype)
            checked.add(raw.topic)
        sec, nanosec, frame_id = cdr_header(raw.data)
    except Exception as exc:  # rosbags and struct raise many kinds for foreign bytes
        raise MessageTypeError(
            f"a message on {raw.topic} (log time {raw.log_time_ns} ns) is not a valid {raw.msgtype}: "
            f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}") from None
    return sec, nanosec, frame_id


@dataclass(frozen=True)
class InputTopics:
    """The three input topics of the labeler and the image message type."""

    image: str
    image_type: str
    camera_info: str
    detections: str


@dataclass
class SyncedFrame:
    """An image matched with its detections; ``camera_info`` is None when none came at or before it."""

    index: int  # ordinal among the bag's synced frames (stable across runs, used by --resume)
    stamp_ns: int
    sec: int
    nanosec: int
    frame_id: str
    image: RawMessage
    detections: RawMessage
    camera_info: RawMessage | None


@dataclass
class SourceStats:
    """Counters of the frame source, for the summary."""

    images: int = 0
    detections: int = 0
    camera_infos: int = 0
    synced: int = 0
    images_without_detections: int = 0
    images_out_of_order: int = 0
    first_out_of_order: tuple[int, int] | None = None  # (previous stamp, offending stamp)
    detections_out_of_order: int = 0
    unmatched_detections: int = 0
    damage: CorruptBagError | None = None
    extra: dict[str, int] = field(default_factory=dict)


class BagFrameSource:
    """The synced frames of a bag; ``copy_topics`` reads the other inputs in pass 2 too (to copy them)."""

    def __init__(self, reader: BagReader, topics: InputTopics, slop_s: float = 0.0, *, queue_size: int = 30,
                 copy_topics: bool = False) -> None:
        self.reader = reader
        self.topics = topics
        self.slop_s = float(slop_s)
        self.queue_size = queue_size
        self.copy_topics = copy_topics
        self.stats = SourceStats()
        self._detections: list[tuple[int, RawMessage]] = []
        self._infos: list[tuple[int, RawMessage]] = []
        self._checked: set[str] = set()  # topics whose first message was deserialised

    def _preload(self) -> None:
        """Pass 1: detections and camera infos, sorted by stamp. Damage stops the pass (pass 2 reports it)."""
        last_detection: int | None = None
        try:
            for raw in self.reader.messages([self.topics.detections, self.topics.camera_info]):
                sec, nanosec, _ = checked_header(raw, self._checked)
                stamp = sec * 1_000_000_000 + nanosec
                if raw.topic == self.topics.detections:
                    if last_detection is not None and stamp < last_detection:
                        self.stats.detections_out_of_order += 1
                    last_detection = stamp
                    self._detections.append((stamp, raw))
                else:
                    self._infos.append((stamp, raw))
        except CorruptBagError:
            pass
        self._detections.sort(key=lambda item: item[0])
        self._infos.sort(key=lambda item: item[0])
        self.stats.detections = len(self._detections)
        self.stats.camera_infos = len(self._infos)

    def frames(self, on_message: Callable[[RawMessage], None] | None = None) -> Iterator[SyncedFrame]:
        """Pass 2. Raises CorruptBagError after the last readable frame when the bag is damaged."""
        self._preload()
        topics = self.topics
        slop_ns = seconds_to_ns(self.slop_s)
        sync = StampSynchronizer(2, self.slop_s, self.queue_size)
        joiner = CameraInfoJoiner(self.slop_s, wait_s=0.0)
        det_i = info_i = 0
        last_image: int | None = None
        read = [topics.image, topics.detections, topics.camera_info] if self.copy_topics else [topics.image]
        try:
            for raw in self.reader.messages(read):
                if on_message is not None:
                    on_message(raw)
                if raw.topic != topics.image:
                    continue
                self.stats.images += 1
                sec, nanosec, frame_id = checked_header(raw, self._checked)
                stamp = sec * 1_000_000_000 + nanosec
                if last_image is not None and stamp <= last_image:
                    self.stats.images_out_of_order += 1
                    if self.stats.first_out_of_order is None:
                        self.stats.first_out_of_order = (last_image, stamp)
                    continue
                last_image = stamp
                matched = []
                while det_i < len(self._detections) and self._detections[det_i][0] <= stamp + slop_ns:
                    matched += sync.add(1, self._detections[det_i][0], self._detections[det_i][1])
                    det_i += 1
                matched += sync.add(0, stamp, (raw, sec, nanosec, frame_id))
                for set_stamp, (image, detections) in matched:
                    while info_i < len(self._infos) and self._infos[info_i][0] <= set_stamp + slop_ns:
                        joiner.add_info(*self._infos[info_i])
                        info_i += 1
                    for joined in joiner.add_frame(set_stamp, (image, detections), now_ns=0):
                        (image_raw, isec, insec, iframe), det_raw = joined.payload
                        yield SyncedFrame(self.stats.synced, joined.stamp_ns, isec, insec, iframe, image_raw,
                                          det_raw, joined.info)
                        self.stats.synced += 1
        except CorruptBagError as exc:
            self.stats.damage = exc
            raise
        finally:
            sync.finish()
            self.stats.images_without_detections = sync.unmatched_per_input[0] + sync.dropped_per_input[0]
            self.stats.unmatched_detections = (sync.unmatched_per_input[1] + sync.dropped_per_input[1]
                                               + len(self._detections) - det_i)
