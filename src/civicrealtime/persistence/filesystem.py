"""The filesystem store, in CivicPress's layout, with an update log beside it.

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

Every file is written atomically: a temporary file in the same directory, fsync, rename,
fsync of the directory. The snapshot is written before its sidecar, so a crash between
the two leaves a complete snapshot without metadata, which is still usable. Log appends go
to the end of the file and are fsynced; an append that fails is cut back off.

One process writes a directory at a time (an advisory lock file enforces it on POSIX):
the store caches each room's last sequence number. All file work runs in the store's
worker thread; a cancelled call stops at its next file operation.
"""

from __future__ import annotations

import errno
import json
import math
import os
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from contextlib import suppress
from hashlib import sha256
from pathlib import Path
from typing import Any, TypeVar

import attrs

from ..auth.revocation import Revocation
from .basestore import StoreBase, log
from .errors import (
    CorruptRecord,
    StoreBusy,
    StoreError,
    StoreFull,
    StoreReadOnly,
    StoreUnavailable,
)
from .filenames import room_from_name, safe_name
from .logfile import BadSpan, ParsedLog, encode_record, encode_room, parse
from .rebuild import Coverage
from .records import (
    LogRecord,
    SnapshotInfo,
    SnapshotRecord,
    build_snapshot,
    now_ms,
    snapshot_id,
    verify_log_record,
    verify_snapshot,
)
from .schema import SCHEMA_FILE, announce, needs_recording, read_schema_file, schema_file_body
from .store import DEFAULT_KEEP, Loaded, Problem, VerifyReport
from .worker import StoreWorker

if sys.platform != "win32":
    import fcntl

T = TypeVar("T")

SNAPSHOT_SUFFIX = ".snapshot"
META_SUFFIX = ".meta.json"
LOG_SUFFIX = ".log"
QUARANTINE_SUFFIX = ".log.quarantine"
TEMP_MARK = ".tmp-"
REVOCATIONS_FILE = "revocations.json"


@attrs.frozen
class _Entry:
    """One snapshot on disk: its metadata and where its files are (either may be missing)."""

    info: SnapshotInfo
    blob: Path
    meta: Path
    problem: str | None  # why the metadata is unusable, when it is


class FilesystemStore(StoreBase):
    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        keep: int = DEFAULT_KEEP,
        read_only: bool = False,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        super().__init__(keep=keep, clock=clock)
        self.directory = Path(directory)
        self.read_only = read_only
        self._root = self.directory / "realtime"
        self._snapshots = self._root / "snapshots"
        self._logs = self._root / "log"
        self._worker = StoreWorker(f"filesystem:{self.directory}")
        self._last_seq: dict[str, int] = {}
        self._lock_fd: int | None = None

    @property
    def description(self) -> str:
        return f"filesystem:{self.directory}{' (read-only)' if self.read_only else ''}"

    # -- the Store interface -----------------------------------------------------------------

    async def open(self) -> None:
        """Create the directories and take the writer lock. Raises `StoreError`. Idempotent."""
        await self._call(self._open)

    async def close(self) -> None:
        """Release the writer lock once the current call has ended."""
        await self._call(self._close)

    async def ping(self) -> None:
        """Raise `StoreError` unless the store's directory can be listed."""
        await self._call(self._ping)

    async def load(self, room_id: str) -> Loaded:
        """See `Store.load`. Raises `StoreError`; cancellation stops at the next file."""
        return await self._call(lambda: self._load(room_id))

    async def append(self, batch: Sequence[tuple[str, bytes]]) -> list[int]:
        """See `Store.append`: one fsynced append per room file. Raises `StoreError`; a room
        whose write failed is cut back to its previous length, earlier rooms stay written."""
        if not batch:
            return []
        items = list(batch)
        return await self._call(lambda: self._append(items))

    async def write_snapshot(
        self,
        room_id: str,
        state: bytes,
        *,
        covers_seq: int,
        carry: Sequence[bytes] = (),
        compress: bool = False,
        discard: AbstractSet[bytes] = frozenset(),
    ) -> SnapshotRecord:
        """See `Store.write_snapshot`. Raises `StoreError`. The steps are ordered so that a
        crash or cancellation between them leaves a loadable room (at worst a log that is
        longer than needed)."""
        extra = tuple(carry)
        dropped = frozenset(discard)
        return await self._call(
            lambda: self._write_snapshot(
                room_id, state, covers_seq, extra, compress, discard=dropped
            )
        )

    async def sweep(self, older_than_ms: int, live_rooms: set[str]) -> int:
        """See `Store.sweep`. Raises `StoreError`."""
        return await self._call(lambda: self._sweep(older_than_ms, live_rooms))

    async def list_rooms(self) -> list[str]:
        return await self._call(lambda: sorted(self._rooms()))

    async def snapshots(self, room_id: str) -> list[SnapshotInfo]:
        return await self._call(lambda: [entry.info for entry in self._entries(room_id)])

    async def verify_all(self) -> VerifyReport:
        """Read and verify every file. Raises `StoreError`."""
        return await self._call(self._verify_all)

    async def save_revocation(self, revocation: Revocation) -> None:
        """See `Store.save_revocation`: the whole (small) file is rewritten atomically."""
        await self._call(lambda: self._save_revocation(revocation))

    async def load_revocations(self) -> list[Revocation]:
        """See `Store.load_revocations`. Raises `StoreError` when the file is unreadable."""
        return await self._call(self._load_revocations)

    async def _call(self, fn: Callable[[], T]) -> T:
        return await self._worker.call(lambda: self._with_errors(fn))

    # -- in the worker thread ----------------------------------------------------------------

    def _with_errors(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except OSError as exc:
            raise self._classify(exc) from exc

    def _classify(self, exc: OSError) -> StoreError:
        where = f"{self.description}: {exc.strerror or exc} ({exc.filename or self.directory})"
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return StoreFull(where)
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return StoreReadOnly(where)
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EIO, errno.ESTALE):
            return StoreUnavailable(where)
        return StoreError(where)

    def _open(self) -> None:
        if self.read_only:
            if not self.directory.is_dir():
                raise StoreUnavailable(f"{self.description}: no such directory")
            read_schema_file(self._root, self.description)
            return
        if self._lock_fd is not None:
            return
        # Before anything is created: a newer store is left as it is.
        version = read_schema_file(self._root, self.description)
        self._snapshots.mkdir(parents=True, exist_ok=True)
        self._logs.mkdir(parents=True, exist_ok=True)
        # Schema 2: history beside the snapshots (see historyfs.py).
        (self._root / "history").mkdir(exist_ok=True)
        if sys.platform != "win32":
            fd = os.open(self._root / ".writer.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise StoreBusy(
                    f"{self.description}: another process is writing this directory"
                ) from None
            self._lock_fd = fd
        else:
            self._lock_fd = -1
        if needs_recording(version):
            # Version 1 is the layout of every directory before versions were recorded;
            # version 2 adds history/, created above.
            _atomic_write(self._root / SCHEMA_FILE, schema_file_body(self._now_ms()))
            announce(self.description, version)

    def _close(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        self._last_seq.clear()
        if fd is not None and fd >= 0:
            os.close(fd)  # releases the flock

    def _ping(self) -> None:
        os.listdir(self.directory)

    def _writable(self) -> None:
        if self.read_only:
            raise StoreReadOnly(f"{self.description}: opened read-only")
        if self._lock_fd is None:
            raise StoreUnavailable(f"{self.description}: not open")

    def _room_dir(self, room_id: str) -> Path:
        return self._snapshots / safe_name(room_id)

    def _log_path(self, room_id: str) -> Path:
        return self._logs / (safe_name(room_id) + LOG_SUFFIX)

    # -- revocations -------------------------------------------------------------------------

    def _read_revocations(self) -> list[Revocation]:
        path = self._root / REVOCATIONS_FILE
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return []
        try:
            fields = json.loads(data)
            return [_revocation(item) for item in fields["revocations"]]
        except (ValueError, TypeError, KeyError) as exc:
            # Never guess: starting without the revocations would let revoked sessions in.
            raise StoreError(
                f"{self.description}: {path} is not a revocations file ({exc!r}); fix or remove it"
            ) from None

    def _load_revocations(self) -> list[Revocation]:
        now = time.time()
        return [r for r in self._read_revocations() if r.until is None or r.until > now]

    def _save_revocation(self, revocation: Revocation) -> None:
        self._writable()
        kept = {
            (r.kind, r.subject): r
            for r in self._read_revocations()
            if r.until is None or r.until > revocation.revoked_at
        }
        key = (revocation.kind, revocation.subject)
        kept[key] = _later(kept[key], revocation) if key in kept else revocation
        items = [attrs.asdict(r) for r in sorted(kept.values(), key=lambda r: r.revoked_at)]
        body = json.dumps({"format": 1, "revocations": items}, indent=1) + "\n"
        _atomic_write(self._root / REVOCATIONS_FILE, body.encode())

    # -- snapshots ---------------------------------------------------------------------------

    def _entries(self, room_id: str) -> list[_Entry]:
        """The room's snapshots, newest first (by version, then time)."""
        directory = self._room_dir(room_id)
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
        entries = [self._entry(room_id, directory, base) for base in bases]
        entries.sort(key=lambda e: (e.info.version, e.info.created_at), reverse=True)
        return entries

    def _entry(self, room_id: str, directory: Path, base: str) -> _Entry:
        blob = directory / (base + SNAPSHOT_SUFFIX)
        meta = directory / (base + META_SUFFIX)
        version, created_at = _version_and_time(base)
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
            return _Entry(legacy, blob, meta, None)
        try:
            fields = json.loads(meta.read_text(encoding="utf-8"))
            info = _info_from_meta(fields, room_id, stored)
        except (ValueError, TypeError, KeyError) as exc:
            return _Entry(legacy, blob, meta, f"unreadable .meta.json: {exc}")
        return _Entry(info, blob, meta, None)

    def _check(self, entry: _Entry) -> tuple[bytes | None, Problem | None]:
        """The entry's verified state, or the problem that makes it unusable."""
        self._worker.check_cancelled()
        reason = entry.problem
        state: bytes | None = None
        if reason is None:
            try:
                record = self._record(entry)
                state = verify_snapshot(record)
            except FileNotFoundError:
                reason = "the .snapshot file is missing (only its .meta.json exists)"
            except CorruptRecord as exc:
                reason = exc.reason
        if reason is None:
            return state, None
        info = entry.info
        return None, Problem(room_id=info.room_id, what="snapshot", ident=info.id, reason=reason)

    def _record(self, entry: _Entry) -> SnapshotRecord:
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
            compression=_raw_compression(entry),
            log_seq=info.log_seq,
        )

    def _delete_if_sound(self, entry: _Entry) -> bool:
        _, problem = self._check(entry)
        if problem is not None:
            log.warning("persistence.kept_corrupt store=%s %s", self.description, problem)
            return False
        # The sidecar first: a crash in between leaves a bare .snapshot, which still loads.
        with suppress(FileNotFoundError):
            entry.meta.unlink()
        with suppress(FileNotFoundError):
            entry.blob.unlink()
        return True

    # -- the log -----------------------------------------------------------------------------

    def _read_log(self, room_id: str) -> tuple[ParsedLog, bytes]:
        try:
            buf = self._log_path(room_id).read_bytes()
        except FileNotFoundError:
            buf = b""
        return parse(buf, room_id), buf

    def _log_problems(self, room_id: str, parsed: ParsedLog) -> list[Problem]:
        return [_span_problem(room_id, span) for span in parsed.bad]

    def _last(self, room_id: str) -> int:
        cached = self._last_seq.get(room_id)
        if cached is not None:
            return cached
        parsed, _ = self._read_log(room_id)
        highest = max([parsed.last_seq, *(entry.info.log_seq for entry in self._entries(room_id))])
        self._last_seq[room_id] = highest
        return highest

    def _append(self, batch: list[tuple[str, bytes]]) -> list[int]:
        self._writable()
        created = self._now_ms()
        by_room: dict[str, list[int]] = {}
        for index, (room_id, _) in enumerate(batch):
            by_room.setdefault(room_id, []).append(index)
        seqs = [0] * len(batch)
        for room_id, indexes in by_room.items():
            self._worker.check_cancelled()
            first = self._last(room_id) + 1
            chunk = bytearray()
            for offset, index in enumerate(indexes):
                seqs[index] = first + offset
                chunk += encode_record(first + offset, created, batch[index][1])
            self._append_bytes(room_id, bytes(chunk), created)
            self._last_seq[room_id] = first + len(indexes) - 1
        return seqs

    def _append_bytes(self, room_id: str, chunk: bytes, created: int) -> None:
        path = self._log_path(room_id)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            payload = chunk if size else encode_room(room_id, created) + chunk
            try:
                _write_all(fd, payload)
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
            _fsync_dir(path.parent)

    def _rewrite_log(
        self, room_id: str, parsed: ParsedLog, buf: bytes, keep: list[LogRecord], extra: bytes
    ) -> None:
        """Replace the room's log by `keep` plus `extra`, moving unreadable bytes aside."""
        path = self._log_path(room_id)
        if parsed.bad:
            spans = b"".join(buf[span.offset : span.offset + span.length] for span in parsed.bad)
            quarantine = self._logs / (safe_name(room_id) + QUARANTINE_SUFFIX)
            with quarantine.open("ab") as handle:
                handle.write(spans)
                handle.flush()
                os.fsync(handle.fileno())
            for span in parsed.bad:
                log.warning(
                    "persistence.quarantined store=%s %s (bytes kept in %s)",
                    self.description,
                    _span_problem(room_id, span),
                    quarantine,
                )
        if not keep and not extra:
            with suppress(FileNotFoundError):
                path.unlink()
            _fsync_dir(path.parent)
            return
        body = b"".join(encode_record(r.seq, r.created_at, r.data) for r in keep)
        _atomic_write(path, encode_room(room_id, self._now_ms()) + body + extra)

    # -- operations --------------------------------------------------------------------------

    def _load(self, room_id: str) -> Loaded:
        problems: list[Problem] = []
        chosen: SnapshotInfo | None = None
        state: bytes | None = None
        for entry in self._entries(room_id):
            state, problem = self._check(entry)
            if problem is None:
                chosen = entry.info
                break
            problems.append(problem)
        after = chosen.log_seq if chosen is not None else 0
        parsed, _ = self._read_log(room_id)
        problems.extend(self._log_problems(room_id, parsed))
        records = sorted((r for r in parsed.records if r.seq > after), key=lambda r: r.seq)
        return Loaded(
            room_id=room_id,
            snapshot=chosen,
            state=state,
            log=tuple(records),
            problems=tuple(problems),
        )

    def _write_snapshot(
        self,
        room_id: str,
        state: bytes,
        covers_seq: int,
        carry: tuple[bytes, ...],
        compress: bool,
        *,
        discard: frozenset[bytes] = frozenset(),
    ) -> SnapshotRecord:
        self._writable()
        coverage = Coverage(state)  # also rejects a state that is not an update
        directory = self._room_dir(room_id)
        directory.mkdir(parents=True, exist_ok=True)
        _remove_temp_files(directory)
        entries = self._entries(room_id)
        version = max((entry.info.version for entry in entries), default=0) + 1
        record = build_snapshot(
            room_id,
            state,
            version=version,
            created_at=self._now_ms(),
            log_seq=covers_seq,
            compress=compress,
        )
        base = f"{safe_name(room_id)}-{record.version}-{record.created_at}"
        _atomic_write(directory / (base + SNAPSHOT_SUFFIX), record.data)
        _atomic_write(directory / (base + META_SUFFIX), _meta_json(record))
        entries = self._entries(room_id)
        for entry in entries[self.keep :]:
            self._delete_if_sound(entry)
        cutoff = min(entry.info.log_seq for entry in entries[: self.keep])

        parsed, buf = self._read_log(room_id)
        # As in the SQL stores: records the state does not contain move to the end of the
        # log, and the log is cut only up to the oldest kept snapshot.
        # Dropped by the room (pending, never resolved): deleted, never carried forward.
        dropped = {
            r.seq
            for r in parsed.records
            if discard and r.seq <= covers_seq and sha256(r.data).digest() in discard
        }
        moved = [
            r.data
            for r in parsed.records
            if r.seq <= covers_seq and r.seq not in dropped and not coverage.contains(r.data)
        ]
        keep = [r for r in parsed.records if r.seq > cutoff and r.seq not in dropped]
        last = max(self._last(room_id), parsed.last_seq, covers_seq)
        created = self._now_ms()
        reappend = [*moved, *carry]
        extra = b"".join(
            encode_record(last + 1 + index, created, data) for index, data in enumerate(reappend)
        )
        if len(keep) != len(parsed.records) or parsed.bad or extra:
            self._worker.check_cancelled()
            self._rewrite_log(room_id, parsed, buf, keep, extra)
        self._last_seq[room_id] = last + len(reappend)
        return record

    def _rooms(self) -> set[str]:
        rooms: set[str] = set()
        with suppress(FileNotFoundError):
            for name in os.listdir(self._snapshots):
                room = self._room_of_dir(self._snapshots / name, name)
                if room is not None:
                    rooms.add(room)
        with suppress(FileNotFoundError):
            for name in os.listdir(self._logs):
                if name.endswith(LOG_SUFFIX) and TEMP_MARK not in name:
                    stem = name[: -len(LOG_SUFFIX)]
                    parsed = parse((self._logs / name).read_bytes(), room_from_name(stem) or stem)
                    room = parsed.room_id or room_from_name(stem)
                    if room is not None:
                        rooms.add(room)
        return rooms

    def _room_of_dir(self, directory: Path, name: str) -> str | None:
        if not directory.is_dir():
            return None
        for child in sorted(os.listdir(directory)):
            if child.endswith(META_SUFFIX) and TEMP_MARK not in child:
                with suppress(ValueError, OSError):
                    fields = json.loads((directory / child).read_text(encoding="utf-8"))
                    room = fields.get("room_id") if isinstance(fields, dict) else None
                    if isinstance(room, str):
                        return room
        return room_from_name(name)

    def _sweep(self, older_than_ms: int, live_rooms: set[str]) -> int:
        self._writable()
        swept = 0
        for room_id in sorted(self._rooms()):
            if room_id in live_rooms:
                continue
            self._worker.check_cancelled()
            entries = self._entries(room_id)
            parsed, buf = self._read_log(room_id)
            times = [entry.info.created_at for entry in entries]
            if parsed.newest is not None:
                times.append(parsed.newest)
            if not times or max(times) >= older_than_ms:
                continue
            for entry in entries:
                self._delete_if_sound(entry)
            self._rewrite_log(room_id, parsed, buf, [], b"")
            self._last_seq.pop(room_id, None)
            with suppress(OSError):
                self._room_dir(room_id).rmdir()  # only when empty: kept corrupt files stay
            swept += 1
        return swept

    def _verify_all(self) -> VerifyReport:
        rooms = sorted(self._rooms())
        problems: list[Problem] = []
        snapshots = records = 0
        for room_id in rooms:
            entries = self._entries(room_id)
            snapshots += len(entries)
            for entry in entries:
                _, problem = self._check(entry)
                if problem is not None:
                    problems.append(problem)
            parsed, _ = self._read_log(room_id)
            records += len(parsed.records)
            problems.extend(self._log_problems(room_id, parsed))
            for record in parsed.records:
                try:
                    verify_log_record(record)
                except CorruptRecord as exc:
                    problems.append(
                        Problem(
                            room_id=room_id,
                            what="log",
                            ident=f"seq {record.seq}",
                            reason=exc.reason,
                        )
                    )
            quarantine = self._logs / (safe_name(room_id) + QUARANTINE_SUFFIX)
            if quarantine.exists():
                problems.append(
                    Problem(
                        room_id=room_id,
                        what="log",
                        ident="quarantine",
                        reason=f"{quarantine.stat().st_size} unreadable bytes kept in {quarantine}",
                    )
                )
        return VerifyReport(
            rooms=len(rooms), snapshots=snapshots, log_records=records, problems=tuple(problems)
        )


# -- helpers -----------------------------------------------------------------------------------


def _revocation(item: Any) -> Revocation:
    kind, revoked_at, until = item["kind"], float(item["revoked_at"]), item["until"]
    if kind not in ("user", "token"):
        raise ValueError(f"kind {kind!r} is neither 'user' nor 'token'")
    if until is not None:
        until = float(until)
    if not math.isfinite(revoked_at) or (until is not None and not math.isfinite(until)):
        raise ValueError("times must be finite numbers")
    return Revocation(kind=kind, subject=str(item["subject"]), revoked_at=revoked_at, until=until)


def _later(kept: Revocation, new: Revocation) -> Revocation:
    """The union of two revocations of one subject, as the SQL stores keep it."""
    until = None if kept.until is None or new.until is None else max(kept.until, new.until)
    return attrs.evolve(new, revoked_at=max(kept.revoked_at, new.revoked_at), until=until)


def _version_and_time(base: str) -> tuple[int, int]:
    """CivicPress names end in `-<version>-<created_at>`; a room key may contain '-' too."""
    parts = base.rsplit("-", 2)
    try:
        return int(parts[-2]), int(parts[-1])
    except (IndexError, ValueError):
        return 0, 0


def _info_from_meta(fields: Any, room_id: str, stored: int) -> SnapshotInfo:
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


def _raw_compression(entry: _Entry) -> str | None:
    # SnapshotInfo only knows the compressions we support; verification needs the raw name.
    if not entry.meta.exists():
        return None
    fields = json.loads(entry.meta.read_text(encoding="utf-8"))
    value = fields.get("compression") if isinstance(fields, dict) else None
    return None if value is None else str(value)


def _meta_json(record: SnapshotRecord) -> bytes:
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


def _span_problem(room_id: str, span: BadSpan) -> Problem:
    ident = f"seq {span.seq}" if span.seq is not None else f"offset {span.offset}"
    reason = f"{span.reason} ({span.length} bytes at offset {span.offset})"
    return Problem(room_id=room_id, what="log", ident=ident, reason=reason)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(directory: Path) -> None:
    # Makes a rename or a new file durable. Windows cannot open a directory for this.
    if sys.platform == "win32":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    temp = path.with_name(f".{path.name}{TEMP_MARK}{secrets.token_hex(4)}")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            temp.unlink()
        raise
    _fsync_dir(path.parent)


def _remove_temp_files(directory: Path) -> None:
    """Temporary files of writes that a crash interrupted: never renamed, never visible."""
    for name in os.listdir(directory):
        if name.startswith(".") and TEMP_MARK in name:
            with suppress(FileNotFoundError):
                (directory / name).unlink()
