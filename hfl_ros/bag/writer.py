"""Write a rosbag2 directory (MCAP storage + metadata.yaml) that ``ros2 bag``, RViz replay and rosbags all
read.

Topics are added on first use; each MCAP schema carries the full message definition from the typestore (our
hfl_ros types included) and the connection its RIHS01 hash. :meth:`BagWriter.close` always finalises the file
(summary, footer, metadata.yaml), including when it is reached through an exception, so a run that stops half
way leaves a valid bag of what it wrote.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys.store import Typestore

from .errors import OutputError
from .typestore import normalize_type_name, typestore


class BagWriter:
    """A rosbag2 MCAP bag being written. Use as a context manager (it is finalised on exit, error or not)."""

    def __init__(self, path: str | Path, store: Typestore | None = None) -> None:
        self.path = Path(path)
        self.store = store or typestore()
        self._writer: Writer | None = None
        self._connections: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def open(self) -> BagWriter:
        if self.path.exists():
            raise OutputError(f"output bag {self.path} exists already")
        try:
            writer = Writer(self.path, version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.MCAP)
            writer.open()
        except Exception as exc:
            raise OutputError(f"cannot create output bag {self.path}: {exc}") from None
        self._writer = writer
        return self

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    def _connection(self, topic: str, msgtype: str, msgdef: str | None, rihs01: str | None) -> Any:
        connection = self._connections.get(topic)
        if connection is None:
            assert self._writer is not None, "bag writer is not open"
            msgtype = normalize_type_name(msgtype)
            if msgtype in self.store.types:
                connection = self._writer.add_connection(topic, msgtype, typestore=self.store)
            elif msgdef and rihs01:
                connection = self._writer.add_connection(topic, msgtype, msgdef=msgdef, rihs01=rihs01)
            else:
                raise OutputError(f"cannot write topic {topic}: type {msgtype} is unknown to the typestore")
            self._connections[topic] = connection
            self.counts[topic] = 0
        elif connection.msgtype != normalize_type_name(msgtype):
            raise OutputError(f"topic {topic} written with two types: {connection.msgtype} and {msgtype}")
        return connection

    def write(self, topic: str, msg: Any, log_time_ns: int) -> None:
        """Serialise a typestore message and write it at ``log_time_ns``."""
        data = self.store.serialize_cdr(msg, msg.__msgtype__)
        self.write_raw(topic, msg.__msgtype__, data, log_time_ns)

    def write_raw(self, topic: str, msgtype: str, data: bytes | memoryview, log_time_ns: int,
                  msgdef: str | None = None, rihs01: str | None = None) -> None:
        """Write already serialised CDR bytes (e.g. copied from an input bag)."""
        connection = self._connection(topic, msgtype, msgdef, rihs01)
        assert self._writer is not None
        self._writer.write(connection, int(log_time_ns), data)
        self.counts[topic] += 1

    def close(self) -> None:
        """Finalise the MCAP file and write metadata.yaml. Idempotent."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    def __enter__(self) -> BagWriter:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
