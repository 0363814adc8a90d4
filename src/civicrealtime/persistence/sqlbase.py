"""The SQL store logic shared by SQLite and PostgreSQL: one set of queries, two drivers.

Queries are written with `?` placeholders; the PostgreSQL transaction turns them into
`%s`. Each public method is one call into the store's worker thread, and each call is
one transaction (sweep and verify_all take one per room so that no lock is held long).
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from contextlib import AbstractContextManager
from functools import partial
from hashlib import sha256
from typing import Any, Protocol, TypeVar

from ..auth.revocation import Revocation
from .errors import CorruptRecord
from .rebuild import Coverage
from .revocationstore import RevocationStore
from .rows import (
    LogRecord,
    SnapshotInfo,
    SnapshotRecord,
    build_log_record,
    build_snapshot,
    checksum,
    verify_snapshot,
)
from .store import DEFAULT_KEEP, Loaded, Problem, Store, VerifyReport, verified_records
from .worker import StoreWorker

log = logging.getLogger("civicrealtime.persistence")

T = TypeVar("T")

SNAPSHOTS = "realtime_snapshots"
UPDATE_LOG = "realtime_update_log"
REVOCATIONS = "realtime_revocations"
# CivicPress's own index names, so that a shared database does not get duplicates.
INDEX_ROOM = "idx_realtime_snapshots_room_id"
INDEX_CREATED = "realtime_snapshots_created_at_idx"
INSERT_LOG = (
    f"INSERT INTO {UPDATE_LOG} (room_id, seq, update_data, checksum, created_at) "
    "VALUES (?, ?, ?, ?, ?)"
)


class Tx(Protocol):
    """One open transaction; every statement first checks that the call is still wanted."""

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]: ...

    def run(self, sql: str, params: Sequence[object] = ()) -> None: ...

    def run_many(self, sql: str, params: Sequence[Sequence[object]]) -> None: ...


class SqlStore(Store, RevocationStore):
    """The queries of both SQL stores; subclasses provide the connection, transactions and
    error mapping. Each call is one transaction in the store's worker thread; it never
    deletes a row that fails verification and never holds a lock across calls."""

    def __init__(self, *, name: str, keep: int = DEFAULT_KEEP, clock: Callable[[], int]) -> None:
        super().__init__(keep=keep, clock=clock)
        self._worker = StoreWorker(name, interrupt=self._interrupt, interrupt_blocks=self._blocks)

    _blocks = False

    @abc.abstractmethod
    def _interrupt(self) -> None: ...

    @abc.abstractmethod
    def _transaction(self, write: bool) -> AbstractContextManager[Tx]:
        """Begin, yield, commit (or roll back); driver errors become `StoreError`s."""

    def _lock_room(self, tx: Tx, room_id: str) -> None:
        """Serialise writers of one room across processes, where the database needs it."""

    async def _call(self, write: bool, fn: Callable[[Tx], T]) -> T:
        return await self._worker.call(partial(self._in_transaction, write, fn))

    def _in_transaction(self, write: bool, fn: Callable[[Tx], T]) -> T:
        with self._transaction(write) as tx:
            return fn(tx)

    # -- the Store interface -----------------------------------------------------------------

    async def ping(self) -> None:
        """Raise `StoreError` unless a trivial query succeeds. Cancellation interrupts it."""
        await self._call(False, lambda tx: tx.rows("SELECT 1"))

    async def save_revocation(self, revocation: Revocation) -> None:
        """See `RevocationStore.save_revocation`; also drops token ids whose `until` has passed."""
        await self._call(True, partial(self._save_revocation, revocation))

    async def load_revocations(self) -> list[Revocation]:
        """See `RevocationStore.load_revocations`."""
        return await self._call(False, self._load_revocations)

    async def load(self, room_id: str) -> Loaded:
        """See `Store.load`. Raises `StoreError`; cancellation interrupts the query."""
        return await self._call(False, partial(self._load, room_id))

    async def append(self, batch: Sequence[tuple[str, bytes]]) -> list[int]:
        """See `Store.append`: one transaction. Raises `StoreError`; cancellation interrupts
        the transaction, which then may or may not have committed."""
        if not batch:
            return []
        return await self._call(True, partial(self._append, list(batch)))

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
        """See `Store.write_snapshot`: one transaction. Raises `StoreError`; cancellation
        interrupts it, and then it may or may not have committed."""
        extra = tuple(carry)
        dropped = frozenset(discard)
        return await self._call(
            True,
            lambda tx: self._write_snapshot(
                tx,
                room_id=room_id,
                state=state,
                covers_seq=covers_seq,
                carry=extra,
                compress=compress,
                discard=dropped,
            ),
        )

    async def sweep(self, older_than_ms: int, live_rooms: set[str]) -> int:
        """See `Store.sweep`; one transaction per room. Raises `StoreError`; cancellation
        stops between or inside rooms (each room is swept entirely or not at all)."""
        candidates = await self._call(False, partial(self._sweep_candidates, older_than_ms))
        swept = 0
        for room_id in candidates:
            if room_id in live_rooms:
                continue
            if await self._call(True, partial(self._sweep_room, room_id, older_than_ms)):
                swept += 1
        return swept

    async def list_rooms(self) -> list[str]:
        rows = await self._call(
            False,
            lambda tx: tx.rows(
                f"SELECT room_id FROM {SNAPSHOTS} UNION SELECT room_id FROM {UPDATE_LOG} ORDER BY 1"
            ),
        )
        return [str(room_id) for (room_id,) in rows]

    async def snapshots(self, room_id: str) -> list[SnapshotInfo]:
        return await self._call(False, partial(self._snapshot_infos, room_id))

    async def verify_all(self) -> VerifyReport:
        """Verify every row, one read transaction per room. Raises `StoreError`."""
        rooms = await self.list_rooms()
        snapshots = records = 0
        problems: list[Problem] = []
        for room_id in rooms:
            counts = await self._call(False, partial(self._verify_room, room_id))
            snapshots += counts[0]
            records += counts[1]
            problems.extend(counts[2])
        return VerifyReport(
            rooms=len(rooms), snapshots=snapshots, log_records=records, problems=tuple(problems)
        )

    # -- in the worker thread ----------------------------------------------------------------

    def _meta_select(self) -> str:
        return (
            "id, room_id, version, integrity_hash, format_version, byte_size, created_at, "
            "compression, log_seq, length(snapshot_data)"
        )

    def _snapshot_infos(self, room_id: str, tx: Tx) -> list[SnapshotInfo]:
        rows = tx.rows(
            f"SELECT {self._meta_select()} FROM {SNAPSHOTS} WHERE room_id = ? "
            "ORDER BY version DESC, created_at DESC",
            (room_id,),
        )
        return [_info(row) for row in rows]

    def _snapshot_record(self, info: SnapshotInfo, tx: Tx) -> SnapshotRecord | None:
        rows = tx.rows(
            f"SELECT snapshot_data, compression FROM {SNAPSHOTS} WHERE id = ?",
            (info.id,),
        )
        if not rows:
            return None
        data, compression = rows[0]
        return SnapshotRecord(
            id=info.id,
            room_id=info.room_id,
            version=info.version,
            data=_blob(data),
            integrity_hash=info.integrity_hash,
            format_version=info.format_version,
            byte_size=info.byte_size,
            created_at=info.created_at,
            compression=None if compression is None else str(compression),
            log_seq=info.log_seq,
        )

    def _check_snapshot(self, info: SnapshotInfo, tx: Tx) -> tuple[bytes | None, Problem | None]:
        record = self._snapshot_record(info, tx)
        if record is None:
            return None, Problem(
                room_id=info.room_id, what="snapshot", ident=info.id, reason="row vanished"
            )
        try:
            return verify_snapshot(record), None
        except CorruptRecord as exc:
            return None, Problem(
                room_id=info.room_id, what="snapshot", ident=info.id, reason=exc.reason
            )

    def _log_records(self, tx: Tx, room_id: str, where: str, bound: int) -> list[LogRecord]:
        rows = tx.rows(
            f"SELECT seq, update_data, checksum, created_at FROM {UPDATE_LOG} "
            f"WHERE room_id = ? AND seq {where} ? ORDER BY seq",
            (room_id, bound),
        )
        return [
            LogRecord(
                room_id=room_id,
                seq=int(seq),
                data=_blob(data),
                checksum=int(crc),
                created_at=int(created),
            )
            for seq, data, crc, created in rows
        ]

    def _load(self, room_id: str, tx: Tx) -> Loaded:
        problems: list[Problem] = []
        chosen: SnapshotInfo | None = None
        state: bytes | None = None
        # Newest first, reading one blob at a time: usually only the newest is read.
        for info in self._snapshot_infos(room_id, tx):
            state, problem = self._check_snapshot(info, tx)
            if problem is None:
                chosen = info
                break
            problems.append(problem)
        after = chosen.log_seq if chosen is not None else 0
        good, bad = verified_records(self._log_records(tx, room_id, ">", after))
        problems.extend(bad)
        return Loaded(
            room_id=room_id,
            snapshot=chosen,
            state=state,
            log=tuple(good),
            problems=tuple(problems),
        )

    def _last_seq(self, tx: Tx, room_id: str) -> int:
        rows = tx.rows(
            f"SELECT MAX(seq) FROM {UPDATE_LOG} WHERE room_id = ? "
            f"UNION ALL SELECT MAX(log_seq) FROM {SNAPSHOTS} WHERE room_id = ?",
            (room_id, room_id),
        )
        return max((int(value) for (value,) in rows if value is not None), default=0)

    def _append(self, batch: list[tuple[str, bytes]], tx: Tx) -> list[int]:
        created = self._now_ms()
        next_seq: dict[str, int] = {}
        rows: list[tuple[object, ...]] = []
        seqs: list[int] = []
        for room_id, data in batch:
            if room_id not in next_seq:
                self._lock_room(tx, room_id)
                next_seq[room_id] = self._last_seq(tx, room_id) + 1
            seq = next_seq[room_id]
            next_seq[room_id] = seq + 1
            record = build_log_record(room_id, seq, data, created)
            rows.append((room_id, seq, data, record.checksum, created))
            seqs.append(seq)
        tx.run_many(INSERT_LOG, rows)
        return seqs

    def _write_snapshot(
        self,
        tx: Tx,
        *,
        room_id: str,
        state: bytes,
        covers_seq: int,
        carry: tuple[bytes, ...],
        compress: bool,
        discard: frozenset[bytes] = frozenset(),
    ) -> SnapshotRecord:
        self._lock_room(tx, room_id)
        (previous,) = tx.rows(
            f"SELECT COALESCE(MAX(version), 0) FROM {SNAPSHOTS} WHERE room_id = ?", (room_id,)
        )[0]
        record = build_snapshot(
            room_id,
            state,
            version=int(previous) + 1,
            created_at=self._now_ms(),
            log_seq=covers_seq,
            compress=compress,
        )
        tx.run(
            f"INSERT INTO {SNAPSHOTS} (id, room_id, snapshot_data, version, integrity_hash, "
            "format_version, byte_size, created_at, compression, log_seq) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.id,
                room_id,
                record.data,
                record.version,
                record.integrity_hash,
                record.format_version,
                record.byte_size,
                record.created_at,
                record.compression,
                record.log_seq,
            ),
        )
        infos = self._snapshot_infos(room_id, tx)
        for info in infos[self.keep :]:
            self._delete_snapshot_if_sound(info, tx)
        # Truncate only up to the oldest kept snapshot: each kept snapshot plus the log
        # after it must still rebuild the room, or falling back to it would lose edits.
        cutoff = min(info.log_seq for info in infos[: self.keep])
        covered = self._sound_records(tx, room_id, covers_seq)
        # Updates the new state does not contain (waiting for a dependency) would no longer
        # be loaded once behind the snapshot's log_seq: they move to the end of the log.
        coverage = Coverage(state)
        # Dropped by the room (pending, never resolved): deleted, never carried forward.
        dropped = [r for r in covered if discard and sha256(r.data).digest() in discard]
        moved = [r.data for r in covered if r not in dropped and not coverage.contains(r.data)]
        self._delete_log(tx, room_id, cutoff, [r for r in covered if r.seq <= cutoff])
        if dropped:
            tx.run_many(
                f"DELETE FROM {UPDATE_LOG} WHERE room_id = ? AND seq = ?",
                [(room_id, r.seq) for r in dropped if r.seq > cutoff],
            )
        reappend = [*moved, *carry]
        if reappend:
            first = self._last_seq(tx, room_id) + 1
            created = self._now_ms()
            tx.run_many(
                INSERT_LOG,
                [
                    (room_id, first + i, data, checksum(data), created)
                    for i, data in enumerate(reappend)
                ],
            )
        return record

    def _delete_snapshot_if_sound(self, info: SnapshotInfo, tx: Tx) -> bool:
        _, problem = self._check_snapshot(info, tx)
        if problem is not None:
            log.warning("persistence.kept_corrupt store=%s %s", self.description, problem)
            return False
        tx.run(f"DELETE FROM {SNAPSHOTS} WHERE id = ?", (info.id,))
        return True

    def _sound_records(self, tx: Tx, room_id: str, upto: int) -> list[LogRecord]:
        """The room's log records up to `upto` that verify; the others are logged and kept."""
        sound, problems = verified_records(self._log_records(tx, room_id, "<=", upto))
        for problem in problems:
            log.warning("persistence.kept_corrupt store=%s %s", self.description, problem)
        return sound

    def _delete_log(self, tx: Tx, room_id: str, upto: int, sound: list[LogRecord]) -> None:
        """Delete `sound`, the verified records up to `upto` (corrupt ones stay)."""
        if not sound:
            return
        (count,) = tx.rows(
            f"SELECT COUNT(*) FROM {UPDATE_LOG} WHERE room_id = ? AND seq <= ?", (room_id, upto)
        )[0]
        if int(count) == len(sound):
            tx.run(f"DELETE FROM {UPDATE_LOG} WHERE room_id = ? AND seq <= ?", (room_id, upto))
        else:
            tx.run_many(
                f"DELETE FROM {UPDATE_LOG} WHERE room_id = ? AND seq = ?",
                [(room_id, record.seq) for record in sound],
            )

    def _sweep_candidates(self, older_than_ms: int, tx: Tx) -> list[str]:
        rows = tx.rows(
            f"SELECT room_id FROM (SELECT room_id, created_at FROM {SNAPSHOTS} "
            f"UNION ALL SELECT room_id, created_at FROM {UPDATE_LOG}) AS rows_of_rooms "
            "GROUP BY room_id HAVING MAX(created_at) < ? ORDER BY room_id",
            (older_than_ms,),
        )
        return [str(room_id) for (room_id,) in rows]

    def _sweep_room(self, room_id: str, older_than_ms: int, tx: Tx) -> bool:
        self._lock_room(tx, room_id)
        # Checked again inside the write transaction: the room may have been written since.
        newest = tx.rows(
            f"SELECT MAX(created_at) FROM (SELECT created_at FROM {SNAPSHOTS} WHERE room_id = ? "
            f"UNION ALL SELECT created_at FROM {UPDATE_LOG} WHERE room_id = ?) AS rows_of_room",
            (room_id, room_id),
        )[0][0]
        if newest is None or int(newest) >= older_than_ms:
            return False
        for info in self._snapshot_infos(room_id, tx):
            self._delete_snapshot_if_sound(info, tx)
        everything = 2**62
        self._delete_log(tx, room_id, everything, self._sound_records(tx, room_id, everything))
        return True

    def _save_revocation(self, revocation: Revocation, tx: Tx) -> None:
        tx.run(
            f"DELETE FROM {REVOCATIONS} WHERE until_at IS NOT NULL AND until_at <= ?",
            (revocation.revoked_at,),
        )
        tx.run(
            f"INSERT INTO {REVOCATIONS} (kind, subject, revoked_at, until_at) VALUES (?, ?, ?, ?) "
            # The later revocation wins, even if an older write commits last (a retry
            # after a timeout): it refuses more tokens, and for longer.
            "ON CONFLICT (kind, subject) DO UPDATE SET "
            f"revoked_at = CASE WHEN excluded.revoked_at > {REVOCATIONS}.revoked_at "
            f"THEN excluded.revoked_at ELSE {REVOCATIONS}.revoked_at END, "
            f"until_at = CASE WHEN {REVOCATIONS}.until_at IS NULL "
            f"OR excluded.until_at IS NULL THEN NULL "
            f"WHEN excluded.until_at > {REVOCATIONS}.until_at "
            f"THEN excluded.until_at ELSE {REVOCATIONS}.until_at END",
            (revocation.kind, revocation.subject, revocation.revoked_at, revocation.until),
        )

    def _load_revocations(self, tx: Tx) -> list[Revocation]:
        rows = tx.rows(
            f"SELECT kind, subject, revoked_at, until_at FROM {REVOCATIONS} "
            "WHERE until_at IS NULL OR until_at > ? ORDER BY revoked_at",
            (time.time(),),
        )
        return [
            Revocation(
                kind="user" if kind == "user" else "token",
                subject=str(subject),
                revoked_at=float(revoked_at),
                until=None if until is None else float(until),
            )
            for kind, subject, revoked_at, until in rows
        ]

    def _verify_room(self, room_id: str, tx: Tx) -> tuple[int, int, list[Problem]]:
        problems: list[Problem] = []
        infos = self._snapshot_infos(room_id, tx)
        for info in infos:
            _, problem = self._check_snapshot(info, tx)
            if problem is not None:
                problems.append(problem)
        records = self._log_records(tx, room_id, ">", -1)
        problems.extend(verified_records(records)[1])
        return len(infos), len(records), problems


def _blob(value: object) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    # A hand-written row may hold text or NULL; it then fails verification as it should.
    return b"" if value is None else str(value).encode()


def _int(value: object, default: int) -> int:
    return default if value is None else int(str(value))


def _info(row: tuple[Any, ...]) -> SnapshotInfo:
    (ident, room_id, version, digest, fmt, size, created, compression, log_seq, stored) = row
    # CivicPress rows may hold NULL where we always write a value; read them leniently and
    # let verification judge the data.
    return SnapshotInfo(
        id=str(ident),
        room_id=str(room_id),
        version=_int(version, 0),
        integrity_hash="" if digest is None else str(digest),
        format_version=_int(fmt, 1),
        byte_size=_int(size, 0),
        created_at=_int(created, 0),
        compression="zlib" if compression == "zlib" else None,
        log_seq=_int(log_seq, 0),
        stored_size=_int(stored, 0),
    )
