"""Read what is left of a truncated or damaged bag file, up to the damage.

A recorder that is killed leaves an MCAP file without its summary and footer, and a truncated SQLite file
announces more pages than it has; rosbags refuses to open either. These readers walk the records in file order
instead (which is the recording order), yield every complete message, and raise :class:`CorruptBagError`
naming the damage when they reach it.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import CorruptBagError

MCAP_MAGIC = b"\x89MCAP0\r\n"
_OP_SCHEMA, _OP_CHANNEL, _OP_MESSAGE, _OP_CHUNK, _OP_FOOTER, _OP_DATA_END = 0x03, 0x04, 0x05, 0x06, 0x02, 0x0F


@dataclass(frozen=True)
class SalvagedChannel:
    """A topic found in a damaged file."""

    topic: str
    msgtype: str
    msgdef: str


class _TruncatedError(Exception):
    pass


def _read_exact(bio: io.BufferedIOBase | io.BytesIO, size: int) -> bytes:
    data = bio.read(size)
    if len(data) != size:
        raise _TruncatedError(f"a record needs {size} bytes, {len(data)} are left")
    return data


def _string(bio: io.BytesIO) -> str:
    (size,) = struct.unpack("<I", _read_exact(bio, 4))
    return _read_exact(bio, size).decode("utf-8", errors="replace")


def _decompress(data: bytes, compression: str, size: int) -> bytes:
    if compression == "":
        return data
    if compression == "zstd":
        try:
            from compression import zstd  # type: ignore[import-not-found]
        except ImportError:
            from backports import zstd  # type: ignore[no-redef]
        return zstd.decompress(data)
    if compression == "lz4":
        import lz4.frame

        return lz4.frame.decompress(data)
    raise _TruncatedError(f"unsupported chunk compression {compression!r}")


class McapSalvager:
    """Linear scan of an MCAP file (no index needed). Channels are known once their record has been read."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.channels: dict[int, SalvagedChannel] = {}
        self._schemas: dict[int, tuple[str, str]] = {}

    def messages(self) -> Iterator[tuple[SalvagedChannel, int, bytes]]:
        """Yield ``(channel, log_time_ns, cdr_bytes)`` in file order; CorruptBagError at the damage."""
        file_size = self.path.stat().st_size
        with self.path.open("rb") as bio:
            if bio.read(8) != MCAP_MAGIC:
                raise CorruptBagError(f"{self.path} is not an MCAP file (bad magic)")
            offset = 8
            try:
                while True:
                    head = bio.read(9)
                    if not head:
                        break  # clean end of data without a footer
                    if len(head) != 9:
                        raise _TruncatedError("record header cut")
                    op, size = head[0], struct.unpack("<Q", head[1:])[0]
                    if op == _OP_FOOTER:
                        break
                    left = file_size - bio.tell()
                    if size > left:
                        raise _TruncatedError(f"a record needs {size} bytes, {left} are left")
                    body = _read_exact(bio, size)
                    if op == _OP_CHUNK:
                        yield from self._chunk(body)
                    else:
                        yield from self._record(op, body)
                    offset = bio.tell()
            except Exception as exc:  # cut records, bad lengths, undecompressable chunks: all damage
                raise CorruptBagError(
                    f"{self.path} is truncated or corrupted at byte {offset} ({exc}); "
                    "the messages before it were read") from None

    def _chunk(self, body: bytes) -> Iterator[tuple[SalvagedChannel, int, bytes]]:
        bio = io.BytesIO(body)
        _start, _end, uncompressed_size, _crc = struct.unpack("<QQQI", _read_exact(bio, 28))
        compression = _string(bio)
        (size,) = struct.unpack("<Q", _read_exact(bio, 8))
        records = io.BytesIO(_decompress(_read_exact(bio, size), compression, uncompressed_size))
        while True:
            head = records.read(9)
            if not head:
                return
            if len(head) != 9:
                raise _TruncatedError("chunk record header cut")
            op, rsize = head[0], struct.unpack("<Q", head[1:])[0]
            yield from self._record(op, _read_exact(records, rsize))

    def _record(self, op: int, body: bytes) -> Iterator[tuple[SalvagedChannel, int, bytes]]:
        bio = io.BytesIO(body)
        if op == _OP_SCHEMA:
            (schema_id,) = struct.unpack("<H", _read_exact(bio, 2))
            name, _encoding = _string(bio), _string(bio)
            (size,) = struct.unpack("<I", _read_exact(bio, 4))
            self._schemas[schema_id] = (name, _read_exact(bio, size).decode("utf-8", errors="replace"))
        elif op == _OP_CHANNEL:
            channel_id, schema_id = struct.unpack("<HH", _read_exact(bio, 4))
            topic = _string(bio)
            name, msgdef = self._schemas.get(schema_id, ("", ""))
            self.channels[channel_id] = SalvagedChannel(topic, name, msgdef)
        elif op == _OP_MESSAGE:
            channel_id, _seq, log_time, _pub_time = struct.unpack("<HIQQ", _read_exact(bio, 22))
            channel = self.channels.get(channel_id)
            if channel is not None:
                yield channel, log_time, body[22:]


class SqliteSalvager:
    """Rows of a rosbag2 SQLite file in insertion order, read through a VFS reporting the real page count."""

    _VFS_NAME = "hfl_ros_salvage"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.channels: dict[int, SalvagedChannel] = {}

    def messages(self) -> Iterator[tuple[SalvagedChannel, int, bytes]]:
        import apsw

        _register_vfs(self._VFS_NAME)
        try:
            conn = apsw.Connection(f"file:{self.path}?immutable=1",
                                   flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI, vfs=self._VFS_NAME)
        except apsw.Error as exc:
            raise CorruptBagError(f"{self.path} cannot be opened as SQLite ({exc})") from None
        count = 0
        try:
            for topic_id, name, msgtype in conn.execute("SELECT id, name, type FROM topics"):
                self.channels[int(topic_id)] = SalvagedChannel(str(name), str(msgtype), "")
            for topic_id, timestamp, data in conn.execute(
                    "SELECT topic_id, timestamp, data FROM messages ORDER BY id"):
                channel = self.channels.get(int(topic_id))
                if channel is not None:
                    count += 1
                    yield channel, int(timestamp), bytes(data)
        except apsw.Error as exc:
            raise CorruptBagError(f"{self.path} is truncated or corrupted after {count} readable messages "
                                  f"({exc})") from None
        finally:
            conn.close()


_registered_vfs: set[str] = set()


def _register_vfs(name: str) -> None:
    """A read-only VFS whose page-1 header states the number of pages the file really has."""
    import apsw

    if name in _registered_vfs:
        return

    class HeaderFixingFile(apsw.VFSFile):
        def __init__(self, vfs: str, filename, flags) -> None:
            super().__init__("", filename, flags)
            self._size = 0

        def xRead(self, amount: int, offset: int) -> bytes:
            data = super().xRead(amount, offset)
            if offset == 0 and len(data) >= 32:
                size = self.xFileSize()
                page = struct.unpack(">H", data[16:18])[0]
                page = 65536 if page == 1 else page
                if page:
                    data = data[:28] + struct.pack(">I", size // page) + data[32:]
            return data

    class HeaderFixingVFS(apsw.VFS):
        def __init__(self) -> None:
            super().__init__(name, "")

        def xOpen(self, filename, flags):
            return HeaderFixingFile(name, filename, flags)

    vfs = HeaderFixingVFS()
    _registered_vfs.add(name)
    _vfs_keepalive.append(vfs)


_vfs_keepalive: list[object] = []
