"""The filesystem layout's files: snapshots with their `.meta.json` sidecars, and room logs.

    <dir>/realtime/snapshots/<room>/<room>-<version>-<created_at>.snapshot
    <dir>/realtime/snapshots/<room>/<room>-<version>-<created_at>.meta.json
    <dir>/realtime/log/<room>.log                (see logfile.py)
    <dir>/realtime/log/<room>.log.quarantine     (unreadable log bytes, kept for inspection)
    <dir>/realtime/revocations.json              (revoked users and token ids)

`<room>` is the room key made safe for file names (see filenames.py). The sidecar holds
CivicPress's metadata fields (room_id, version, integrity_hash, format_version, byte_size,
created_at) plus id, compression and log_seq. A `.snapshot` without a sidecar is read as a
CivicPress snapshot of that era: its version and time come from its name, it cannot be
verified, and its log_seq is 0 (the whole log is applied after it, which is harmless).

These functions read and write single files; the filesystem store (`filesystem.py`) owns
the directory, its lock and the order of the steps.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

import attrs

from ..atomicfile import TEMP_MARK, fsync_directory, write_all, write_atomically
from .errors import StoreError, StoreFull, StoreReadOnly, StoreUnavailable
from .logfile import BadSpan, encode_record, encode_room
from .rows import LogRecord, SnapshotInfo, SnapshotRecord, snapshot_id
from .store import Problem

SNAPSHOT_SUFFIX = ".snapshot"
META_SUFFIX = ".meta.json"
LOG_SUFFIX = ".log"
QUARANTINE_SUFFIX = ".log.quarantine"


@attrs.frozen
class SnapshotEntry:
    """One snapshot on disk: its metadata and where its files are (either may be missing)."""

    info: SnapshotInfo
    blob: Path
    meta: Path
    problem: str | None  # why the metadata is unusable, when it is


def read_entries(room_id: str, directory: Path) -> list[SnapshotEntry]:
    """The room's snapshots in `directory`, newest first (by version, then time)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    bases: set[str] = set()
    for name in names:
        if TEMP_MARK in name:
            continue
        for suffix in (SNAPSHOT_SUFFIX, META_SUFFIX):
            if name.endswith(suffix):
                bases.add(name[: -len(suffix)])
    entries = [read_entry(room_id, directory, base) for base in bases]
    entries.sort(key=lambda e: (e.info.version, e.info.created_at), reverse=True)
    return entries


def read_entry(room_id: str, directory: Path, base: str) -> SnapshotEntry:
    blob = directory / (base + SNAPSHOT_SUFFIX)
    meta = directory / (base + META_SUFFIX)
    version, created_at = version_and_time(base)
    stored = blob.stat().st_size if blob.exists() else 0
    legacy = SnapshotInfo(
        id=snapshot_id(room_id, version, created_at),
        room_id=room_id,
        version=version,
        integrity_hash="",
        format_version=1,
        byte_size=0,
        created_at=created_at,
        compression=None,
        log_seq=0,
        stored_size=stored,
    )
    if not meta.exists():
        return SnapshotEntry(legacy, blob, meta, None)
    try:
        fields = json.loads(meta.read_text(encoding="utf-8"))
        info = info_from_meta(fields, room_id, stored)
    except (ValueError, TypeError, KeyError) as exc:
        return SnapshotEntry(legacy, blob, meta, f"unreadable .meta.json: {exc}")
    return SnapshotEntry(info, blob, meta, None)


def snapshot_record(entry: SnapshotEntry) -> SnapshotRecord:
    """The entry's stored record (reads the .snapshot file; FileNotFoundError if missing)."""
    info = entry.info
    return SnapshotRecord(
        id=info.id,
        room_id=info.room_id,
        version=info.version,
        data=entry.blob.read_bytes(),
        integrity_hash=info.integrity_hash,
        format_version=info.format_version,
        byte_size=info.byte_size,
        created_at=info.created_at,
        compression=raw_compression(entry),
        log_seq=info.log_seq,
    )


def append_to_log(path: Path, room_id: str, chunk: bytes, created: int) -> None:
    """Append `chunk` (encoded records) to the room's log file at `path`, fsynced; a new
    file starts with the room's header. A failed append is cut back off."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        payload = chunk if size else encode_room(room_id, created) + chunk
        try:
            write_all(fd, payload)
            os.fsync(fd)
        except OSError:
            # Nothing of a failed append was acknowledged: cut it back off, so the file
            # does not end in a torn record. Failing that, the reader skips it anyway.
            with suppress(OSError):
                os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)
    if not size:
        fsync_directory(path.parent)


def version_and_time(base: str) -> tuple[int, int]:
    """CivicPress names end in `-<version>-<created_at>`; a room key may contain '-' too."""
    parts = base.rsplit("-", 2)
    try:
        return int(parts[-2]), int(parts[-1])
    except (IndexError, ValueError):
        return 0, 0


def info_from_meta(fields: Any, room_id: str, stored: int) -> SnapshotInfo:
    if not isinstance(fields, dict):
        raise TypeError("not a JSON object")
    version = int(fields["version"])
    created_at = int(fields["created_at"])
    compression = fields.get("compression")
    return SnapshotInfo(
        id=str(fields.get("id") or snapshot_id(room_id, version, created_at)),
        room_id=str(fields.get("room_id", room_id)),
        version=version,
        integrity_hash=str(fields.get("integrity_hash") or ""),
        format_version=int(fields.get("format_version", 1)),
        byte_size=int(fields.get("byte_size") or 0),
        created_at=created_at,
        compression="zlib" if compression == "zlib" else None,
        log_seq=int(fields.get("log_seq") or 0),
        stored_size=stored,
    )


def raw_compression(entry: SnapshotEntry) -> str | None:
    # SnapshotInfo only knows the compressions we support; verification needs the raw name.
    if not entry.meta.exists():
        return None
    fields = json.loads(entry.meta.read_text(encoding="utf-8"))
    value = fields.get("compression") if isinstance(fields, dict) else None
    return None if value is None else str(value)


def meta_json(record: SnapshotRecord) -> bytes:
    fields = {
        "id": record.id,
        "room_id": record.room_id,
        "version": record.version,
        "integrity_hash": record.integrity_hash,
        "format_version": record.format_version,
        "byte_size": record.byte_size,
        "created_at": record.created_at,
        "compression": record.compression,
        "log_seq": record.log_seq,
    }
    return (json.dumps(fields, indent=2) + "\n").encode("utf-8")


def span_problem(room_id: str, span: BadSpan) -> Problem:
    ident = f"seq {span.seq}" if span.seq is not None else f"offset {span.offset}"
    reason = f"{span.reason} ({span.length} bytes at offset {span.offset})"
    return Problem(room_id=room_id, what="log", ident=ident, reason=reason)


def quarantine_spans(quarantine: Path, buf: bytes, spans: Sequence[BadSpan]) -> None:
    """Append a log's unreadable bytes (`spans` of `buf`) to its quarantine file, fsynced."""
    data = b"".join(buf[span.offset : span.offset + span.length] for span in spans)
    with quarantine.open("ab") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def replace_log(
    path: Path, room_id: str, created: int, keep: Sequence[LogRecord], extra: bytes
) -> None:
    """The room's log file becomes `keep` plus `extra` (encoded records), atomically; with
    nothing to keep, the file goes."""
    if not keep and not extra:
        with suppress(FileNotFoundError):
            path.unlink()
        fsync_directory(path.parent)
        return
    body = b"".join(encode_record(r.seq, r.created_at, r.data) for r in keep)
    write_atomically(path, encode_room(room_id, created) + body + extra)


def quarantine_problem(room_id: str, quarantine: Path) -> Problem | None:
    """The room's quarantined log bytes, reported as a problem until someone removes them."""
    if not quarantine.exists():
        return None
    size = quarantine.stat().st_size
    return Problem(
        room_id=room_id,
        what="log",
        ident="quarantine",
        reason=f"{size} unreadable bytes kept in {quarantine}",
    )


def store_error_of(exc: OSError, where: str) -> StoreError:
    """The `StoreError` kind an OS error means: full, read-only, unavailable, or other."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return StoreFull(where)
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return StoreReadOnly(where)
    if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EIO, errno.ESTALE):
        return StoreUnavailable(where)
    return StoreError(where)
