"""The two kinds of stored row, how they are built and how they are verified.

A snapshot holds a room's full state (an `encodeStateAsUpdate` v1 update), optionally
zlib-compressed, with the sha256 of the *uncompressed* state, its length and a format
version. Its id keeps CivicPress's format, `<room_id>-<version>-<created_at>` (unix ms).
`log_seq` is the highest update-log sequence number the snapshot contains: loading applies
the log records after it.

A log record holds one raw update as a client sent it, with a CRC-32 of the bytes. CRC-32
is enough here: it guards against torn writes and bit rot on small records, not against an
adversary (whoever can write the store can rewrite the checksum as well).
"""

from __future__ import annotations

import hashlib
import time
import zlib
from typing import Literal

import attrs

from .errors import CorruptRecord

CURRENT_FORMAT = 1  # a v1 Yjs update, as CivicPress writes it
Compression = Literal["zlib"]
COMPRESSIONS: frozenset[str] = frozenset({"zlib"})


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def snapshot_id(room_id: str, version: int, created_at: int) -> str:
    return f"{room_id}-{version}-{created_at}"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def checksum(data: bytes) -> int:
    """The log record checksum: CRC-32 of the update bytes, as an unsigned 32-bit int."""
    return zlib.crc32(data) & 0xFFFFFFFF


@attrs.frozen(kw_only=True)
class SnapshotInfo:
    """A snapshot's metadata, without its data."""

    id: str
    room_id: str
    version: int
    integrity_hash: str  # "" on rows CivicPress wrote before it recorded hashes
    format_version: int
    byte_size: int  # length of the uncompressed state; 0 on such old rows
    created_at: int  # unix ms
    compression: Compression | None
    log_seq: int  # highest log seq this snapshot contains; 0 on CivicPress rows
    stored_size: int  # bytes actually stored (after compression)


@attrs.frozen(kw_only=True)
class SnapshotRecord:
    id: str
    room_id: str
    version: int
    data: bytes  # as stored: compressed when `compression` says so
    integrity_hash: str
    format_version: int
    byte_size: int
    created_at: int
    compression: str | None  # a str, not the Literal: rows from disk may name anything
    log_seq: int = 0

    @property
    def info(self) -> SnapshotInfo:
        return SnapshotInfo(
            id=self.id,
            room_id=self.room_id,
            version=self.version,
            integrity_hash=self.integrity_hash,
            format_version=self.format_version,
            byte_size=self.byte_size,
            created_at=self.created_at,
            compression="zlib" if self.compression == "zlib" else None,
            log_seq=self.log_seq,
            stored_size=len(self.data),
        )


@attrs.frozen(kw_only=True)
class LogRecord:
    room_id: str
    seq: int
    data: bytes
    checksum: int  # CRC-32 of `data`
    created_at: int  # unix ms


def build_snapshot(
    room_id: str,
    state: bytes,
    *,
    version: int,
    created_at: int,
    log_seq: int,
    compress: bool,
) -> SnapshotRecord:
    data = zlib.compress(state, 6) if compress else state
    return SnapshotRecord(
        id=snapshot_id(room_id, version, created_at),
        room_id=room_id,
        version=version,
        data=data,
        integrity_hash=sha256_hex(state),
        format_version=CURRENT_FORMAT,
        byte_size=len(state),
        created_at=created_at,
        compression="zlib" if compress else None,
        log_seq=log_seq,
    )


def verify_snapshot(record: SnapshotRecord) -> bytes:
    """The snapshot's uncompressed state, or `CorruptRecord` saying why it cannot be used.

    Rows that CivicPress wrote before it recorded hashes (`integrity_hash` empty, and
    `byte_size` 0) cannot be checked; they are accepted as they are.
    """
    if record.format_version > CURRENT_FORMAT:
        raise CorruptRecord(
            "format",
            f"format_version {record.format_version} is newer than this build supports "
            f"({CURRENT_FORMAT})",
        )
    if record.format_version < 1:
        raise CorruptRecord("format", f"unknown format_version {record.format_version}")
    if record.compression is None:
        state = record.data
    elif record.compression == "zlib":
        state = _inflate(record.data, record.byte_size)
    else:
        raise CorruptRecord("compression", f"unknown compression {record.compression!r}")
    if record.byte_size and len(state) != record.byte_size:
        raise CorruptRecord(
            "size", f"size mismatch: {len(state)} bytes, metadata says {record.byte_size}"
        )
    if record.integrity_hash:
        actual = sha256_hex(state)
        if actual != record.integrity_hash:
            raise CorruptRecord(
                "hash", f"sha256 mismatch: {actual[:16]}…, expected {record.integrity_hash[:16]}…"
            )
    return state


def _inflate(data: bytes, byte_size: int) -> bytes:
    # Bounded by the recorded size, so a corrupt (or hostile) row cannot inflate without limit.
    inflater = zlib.decompressobj()
    limit = byte_size + 1 if byte_size else 0
    try:
        state = inflater.decompress(data, limit)
    except zlib.error as exc:
        raise CorruptRecord("decompress", f"zlib decompression failed: {exc}") from None
    if inflater.unconsumed_tail or (byte_size and len(state) > byte_size):
        raise CorruptRecord("size", f"decompresses to more than the recorded {byte_size} bytes")
    if not inflater.eof:
        raise CorruptRecord("decompress", "zlib stream is truncated")
    return state


def build_log_record(room_id: str, seq: int, data: bytes, created_at: int) -> LogRecord:
    return LogRecord(
        room_id=room_id, seq=seq, data=data, checksum=checksum(data), created_at=created_at
    )


def verify_log_record(record: LogRecord) -> None:
    """Raise `CorruptRecord` when the record's bytes do not match its checksum."""
    actual = checksum(record.data)
    if actual != record.checksum:
        raise CorruptRecord(
            "checksum",
            f"crc32 mismatch: {actual:08x}, expected {record.checksum & 0xFFFFFFFF:08x}",
        )
