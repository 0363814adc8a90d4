"""The filesystem store, in CivicPress's layout (fslayout.py), with an update log beside it.

Every file is written atomically: a temporary file in the same directory, fsync, rename,
fsync of the directory. The snapshot is written before its sidecar, so a crash between
the two leaves a complete snapshot without metadata, which is still usable. Log appends go
to the end of the file and are fsynced; an append that fails is cut back off.

One process writes a directory at a time (an advisory lock file enforces it on POSIX):
the store caches each room's last sequence number. All file work runs in the store's
worker thread; a cancelled call stops at its next file operation.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from contextlib import suppress
from hashlib import sha256
from pathlib import Path
from typing import TypeVar

from ..atomicfile import (
    TEMP_MARK,
    remove_temp_files,
    write_atomically,
)
from ..auth.revocation import Revocation
from .errors import (
    CorruptRecord,
    StoreBusy,
    StoreReadOnly,
    StoreUnavailable,
)
from .filenames import room_from_name, safe_name
from .fslayout import (
    LOG_SUFFIX,
    META_SUFFIX,
    QUARANTINE_SUFFIX,
    SNAPSHOT_SUFFIX,
    SnapshotEntry,
    append_to_log,
    meta_json,
    quarantine_problem,
    quarantine_spans,
    read_entries,
    replace_log,
    snapshot_record,
    span_problem,
    store_error_of,
)
from .fsrevocations import load_revocations, save_revocation
from .logfile import ParsedLog, encode_record, parse
from .rebuild import Coverage
from .revocationstore import RevocationStore
from .rows import (
    LogRecord,
    SnapshotInfo,
    SnapshotRecord,
    build_snapshot,
    now_ms,
    verify_snapshot,
)
from .schema import SCHEMA_FILE, announce, needs_recording, read_schema_file, schema_file_body
from .store import DEFAULT_KEEP, Loaded, Problem, Store, VerifyReport, log, verified_records
from .worker import StoreWorker

if sys.platform != "win32":
    import fcntl

T = TypeVar("T")


class FilesystemStore(Store, RevocationStore):
    """A store in plain files (CivicPress's layout), for one process of one machine.

    Owns its directory while open (the writer lock) and each room's last sequence number.
    Never shared by nodes; never deletes a file that fails verification (bad log bytes are
    moved to the room's quarantine file).
    """

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
        """See `RevocationStore.save_revocation`: the whole (small) file is rewritten atomically."""
        await self._call(lambda: self._save_revocation(revocation))

    async def load_revocations(self) -> list[Revocation]:
        """See `RevocationStore.load_revocations`. Raises `StoreError` on an unreadable file."""
        return await self._call(self._load_revocations)

    async def _call(self, fn: Callable[[], T]) -> T:
        return await self._worker.call(lambda: self._with_errors(fn))

    # -- in the worker thread ----------------------------------------------------------------

    def _with_errors(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except OSError as exc:
            where = f"{self.description}: {exc.strerror or exc} ({exc.filename or self.directory})"
            raise store_error_of(exc, where) from exc

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
            write_atomically(self._root / SCHEMA_FILE, schema_file_body(self._now_ms()))
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

    # -- revocations and snapshots -------------------------------------------------------------

    def _load_revocations(self) -> list[Revocation]:
        return load_revocations(self._root, self.description)

    def _save_revocation(self, revocation: Revocation) -> None:
        self._writable()
        save_revocation(self._root, self.description, revocation)

    def _entries(self, room_id: str) -> list[SnapshotEntry]:
        return read_entries(room_id, self._room_dir(room_id))

    def _check(self, entry: SnapshotEntry) -> tuple[bytes | None, Problem | None]:
        """The entry's verified state, or the problem that makes it unusable."""
        self._worker.check_cancelled()
        reason = entry.problem
        state: bytes | None = None
        if reason is None:
            try:
                record = snapshot_record(entry)
                state = verify_snapshot(record)
            except FileNotFoundError:
                reason = "the .snapshot file is missing (only its .meta.json exists)"
            except CorruptRecord as exc:
                reason = exc.reason
        if reason is None:
            return state, None
        info = entry.info
        return None, Problem(room_id=info.room_id, what="snapshot", ident=info.id, reason=reason)

    def _delete_if_sound(self, entry: SnapshotEntry) -> bool:
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
        return [span_problem(room_id, span) for span in parsed.bad]

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
            append_to_log(self._log_path(room_id), room_id, bytes(chunk), created)
            self._last_seq[room_id] = first + len(indexes) - 1
        return seqs

    def _rewrite_log(
        self, room_id: str, parsed: ParsedLog, buf: bytes, keep: list[LogRecord], extra: bytes
    ) -> None:
        """Replace the room's log by `keep` plus `extra`, moving unreadable bytes aside."""
        path = self._log_path(room_id)
        if parsed.bad:
            quarantine = self._logs / (safe_name(room_id) + QUARANTINE_SUFFIX)
            quarantine_spans(quarantine, buf, parsed.bad)
            for span in parsed.bad:
                log.warning(
                    "persistence.quarantined store=%s %s (bytes kept in %s)",
                    self.description,
                    span_problem(room_id, span),
                    quarantine,
                )
        replace_log(path, room_id, self._now_ms(), keep, extra)

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
        remove_temp_files(directory)
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
        write_atomically(directory / (base + SNAPSHOT_SUFFIX), record.data)
        write_atomically(directory / (base + META_SUFFIX), meta_json(record))
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
            problems.extend(verified_records(parsed.records)[1])
            quarantined = quarantine_problem(
                room_id, self._logs / (safe_name(room_id) + QUARANTINE_SUFFIX)
            )
            if quarantined is not None:
                problems.append(quarantined)
        return VerifyReport(
            rooms=len(rooms), snapshots=snapshots, log_records=records, problems=tuple(problems)
        )
