"""Open a rosbag2 bag (a directory with sqlite3 or MCAP storage, a bare .mcap or .db3 file), stream messages.

Errors from rosbags become one-line :class:`BagError`s. A bag that rosbags cannot open because a file is
truncated (or whose recorder died before writing metadata.yaml) is read up to the damage with
:mod:`hfl_ros.bag.salvage`; :meth:`BagReader.messages` then raises :class:`CorruptBagError` after the last
readable message, so callers can finish the work done so far.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import BagError, CorruptBagError
from .salvage import McapSalvager, SalvagedChannel, SqliteSalvager
from .typestore import deserialize

STORAGE_SUFFIXES = (".mcap", ".db3")


@dataclass(frozen=True)
class TopicInfo:
    """A topic of a bag: its name, message type (``pkg/msg/Type``) and message count."""

    name: str
    msgtype: str
    count: int


@dataclass(frozen=True)
class RawMessage:
    """One recorded message: topic, type, log time (ns, when it was recorded) and its CDR bytes."""

    topic: str
    msgtype: str
    log_time_ns: int
    data: bytes | memoryview

    def deserialize(self) -> Any:
        return deserialize(self.data, self.msgtype)


class BagReader:
    """Read a bag with rosbags, falling back to a tolerant scan of damaged files. Use as a context manager."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f"bag not found: {self.path}")
        if self.path.is_file() and self.path.suffix not in STORAGE_SUFFIXES:
            raise BagError(f"{self.path} is not a rosbag2 directory, .mcap or .db3 file")
        self._reader: Any = None
        self._salvage_files: list[Path] = []
        self.damage: str | None = None  # why rosbags could not open the bag, when it is read by salvage
        self._salvaged_topics: dict[str, TopicInfo] | None = None
        self._last_salvagers: list[McapSalvager | SqliteSalvager] = []

    # -- opening ---------------------------------------------------------------------------------------------
    def open(self) -> BagReader:
        try:
            self._reader = _open_rosbags(self.path)
            return self
        except Exception as exc:  # rosbags raises ReaderError, FileNotFoundError, apsw and yaml errors
            failure = exc
        files = self._storage_files()
        if not files:
            raise BagError(f"cannot open bag {self.path}: {_one_line(failure)}") from None
        if self.path.is_dir() and len(files) == 1:
            # A directory whose metadata.yaml is missing or stale, but whose one storage file is intact.
            try:
                self._reader = _open_rosbags(files[0])
                return self
            except Exception:
                pass
        self.damage = _one_line(failure)
        self._salvage_files = files
        return self

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __enter__(self) -> BagReader:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _storage_files(self) -> list[Path]:
        """The storage files of the bag, in recording order (metadata.yaml order when it is readable)."""
        if self.path.is_file():
            return [self.path]
        listed: list[Path] = []
        meta = self.path / "metadata.yaml"
        if meta.is_file():
            try:
                info = yaml.safe_load(meta.read_text())["rosbag2_bagfile_information"]
                listed = [self.path / Path(p).name for p in info.get("relative_file_paths", [])]
            except (yaml.YAMLError, KeyError, TypeError, OSError):
                listed = []
        listed = [p for p in listed if p.is_file() and p.suffix in STORAGE_SUFFIXES]
        return listed or sorted(p for p in self.path.iterdir() if p.suffix in STORAGE_SUFFIXES)

    @property
    def is_damaged(self) -> bool:
        return self.damage is not None

    # -- topics ----------------------------------------------------------------------------------------------
    @property
    def topics(self) -> dict[str, TopicInfo]:
        """Topics by name. For a damaged bag the counts are those of the readable messages."""
        if self._reader is not None:
            return {
                name: TopicInfo(name, info.msgtype or _first_type(info.connections), int(info.msgcount))
                for name, info in sorted(self._reader.topics.items())
            }
        if self._salvaged_topics is None:
            counts: dict[str, list] = {}
            try:
                for channel, _, _ in self._salvage_iter(None):
                    entry = counts.setdefault(channel.topic, [channel.msgtype, 0])
                    entry[1] += 1
            except CorruptBagError:
                pass
            for salvager in self._last_salvagers:
                for channel in salvager.channels.values():
                    counts.setdefault(channel.topic, [channel.msgtype, 0])
            self._salvaged_topics = {n: TopicInfo(n, t, c) for n, (t, c) in sorted(counts.items())}
        return self._salvaged_topics

    # -- messages --------------------------------------------------------------------------------------------
    def messages(self, topics: Collection[str] | None = None) -> Iterator[RawMessage]:
        """Messages of ``topics`` (all when None) in log-time order (file order for a damaged bag).

        Raises CorruptBagError when the storage turns out to be damaged, after the last readable message.
        """
        if self._reader is None and not self._salvage_files:
            raise BagError(f"bag {self.path} is not open")
        if self._reader is not None:
            wanted = set(topics) if topics is not None else None
            connections = [c for c in self._reader.connections if wanted is None or c.topic in wanted]
            if not connections:
                return
            try:
                for connection, log_time, data in self._reader.messages(connections=connections):
                    yield RawMessage(connection.topic, connection.msgtype, int(log_time), data)
            except Exception as exc:  # any storage-level failure while reading is damage
                raise CorruptBagError(f"bag {self.path} is corrupted: {_one_line(exc)}; "
                                      "the messages before the damage were read") from None
            return
        for channel, log_time, data in self._salvage_iter(topics):
            yield RawMessage(channel.topic, channel.msgtype, log_time, data)
        if self.damage:
            # The scan reached the end of the data, but rosbags refused the file (no index or metadata).
            raise CorruptBagError(f"bag {self.path} is damaged ({self.damage}); "
                                  "every readable message was read")

    def _salvage_iter(self, topics: Collection[str] | None) -> Iterator[tuple[SalvagedChannel, int, bytes]]:
        wanted = set(topics) if topics is not None else None
        self._last_salvagers = []
        for path in self._salvage_files:
            salvager = McapSalvager(path) if path.suffix == ".mcap" else SqliteSalvager(path)
            self._last_salvagers.append(salvager)
            for channel, log_time, data in salvager.messages():
                if wanted is None or channel.topic in wanted:
                    yield channel, log_time, data


def _open_rosbags(path: Path) -> Any:
    from rosbags.rosbag2 import Reader

    reader = Reader(path)
    reader.open()
    return reader


def _first_type(connections: Collection[Any]) -> str:
    types = sorted({c.msgtype for c in connections})
    return types[0] if types else ""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def list_topics_text(reader: BagReader) -> str:
    """A table of the bag's topics, types and counts, for ``hfl-ros label --list-topics``."""
    topics = reader.topics
    if not topics:
        return f"{reader.path}: no topics"
    width = max(len(t.name) for t in topics.values())
    twidth = max(len(t.msgtype) for t in topics.values())
    lines = [f"{'topic':<{width}}  {'type':<{twidth}}  count"]
    lines += [f"{t.name:<{width}}  {t.msgtype:<{twidth}}  {t.count}" for t in topics.values()]
    if reader.is_damaged:
        lines.append(f"(damaged bag: {reader.damage}; counts are the readable messages)")
    return "\n".join(lines)


__all__ = ["BagReader", "RawMessage", "TopicInfo", "list_topics_text"]
