"""The filesystem store's update log: an append-only file of framed, checksummed records.

Each record is a 32-byte header and the update bytes:

    magic "CRL1" | length u32 | seq u64 | created_at u64 | crc32(data) u32 | crc32(header) u32

(big-endian; the last field covers the 28 bytes before it). The first record of a file has
seq 0 and holds the room key in UTF-8, so a file names its room whatever its file name.

Reading never trusts a header whose own CRC fails: it searches forward for the next valid
header. A record cut short at the end of the file (a crash during an append) is a torn
tail: reported and ignored. A record whose data CRC fails is reported and skipped. Later
appends land after such bytes and are still found.
"""

from __future__ import annotations

import struct
import zlib

import attrs

from .rows import LogRecord, checksum

MAGIC = b"CRL1"
_FIELDS = struct.Struct(">4sIQQI")
_HEADER_CRC = struct.Struct(">I")
HEADER_SIZE = _FIELDS.size + _HEADER_CRC.size  # 32


@attrs.frozen
class BadSpan:
    offset: int
    length: int
    reason: str
    seq: int | None = None  # when the header was readable


@attrs.frozen
class ParsedLog:
    room_id: str | None
    records: tuple[LogRecord, ...]  # in file order, checksums verified
    bad: tuple[BadSpan, ...]

    @property
    def last_seq(self) -> int:
        return max((record.seq for record in self.records), default=0)

    @property
    def newest(self) -> int | None:
        return max((record.created_at for record in self.records), default=None)


def encode_record(seq: int, created_at: int, data: bytes) -> bytes:
    fields = _FIELDS.pack(MAGIC, len(data), seq, created_at, checksum(data))
    return fields + _HEADER_CRC.pack(zlib.crc32(fields) & 0xFFFFFFFF) + data


def encode_room(room_id: str, created_at: int) -> bytes:
    return encode_record(0, created_at, room_id.encode("utf-8"))


def _header_at(buf: bytes, offset: int) -> tuple[int, int, int, int] | None:
    if len(buf) - offset < HEADER_SIZE:
        return None
    fields = buf[offset : offset + _FIELDS.size]
    (stored,) = _HEADER_CRC.unpack_from(buf, offset + _FIELDS.size)
    if zlib.crc32(fields) & 0xFFFFFFFF != stored:
        return None
    magic, length, seq, created_at, crc = _FIELDS.unpack(fields)
    if magic != MAGIC:
        return None
    return length, seq, created_at, crc


def _next_header(buf: bytes, start: int) -> int | None:
    position = buf.find(MAGIC, start)
    while position != -1:
        if _header_at(buf, position) is not None:
            return position
        position = buf.find(MAGIC, position + 1)
    return None


def parse(buf: bytes, fallback_room: str) -> ParsedLog:
    room_id: str | None = None
    records: list[LogRecord] = []
    bad: list[BadSpan] = []
    offset = 0
    while offset < len(buf):
        header = _header_at(buf, offset)
        if header is None:
            resume = _next_header(buf, offset + 1)
            end = len(buf) if resume is None else resume
            reason = (
                "torn record at the end of the log (an interrupted write), ignored"
                if resume is None
                else "unreadable bytes (bad record header), skipped"
            )
            bad.append(BadSpan(offset, end - offset, reason))
            offset = end
            continue
        length, seq, created_at, crc = header
        start = offset + HEADER_SIZE
        data = buf[start : start + length]
        if len(data) < length or checksum(data) != crc:
            # The length cannot be trusted past a failed record: resume at the next header.
            resume = _next_header(buf, start)
            end = len(buf) if resume is None else resume
            if len(data) < length and resume is None:
                reason = "torn record at the end of the log (an interrupted write), ignored"
            else:
                reason = f"crc32 mismatch in seq {seq}, skipped"
            bad.append(BadSpan(offset, end - offset, reason, seq))
            offset = end
            continue
        if seq == 0:
            room_id = data.decode("utf-8", errors="replace")
        else:
            records.append(
                LogRecord(
                    room_id=room_id or fallback_room,
                    seq=seq,
                    data=data,
                    checksum=crc,
                    created_at=created_at,
                )
            )
        offset = start + length
    return ParsedLog(room_id=room_id, records=tuple(records), bad=tuple(bad))
