"""The storage interface every backend implements, and the results it returns.

A store holds two things per room: snapshots (full states, `realtime_snapshots`) and an
update log (raw updates, `realtime_update_log`). Loading a room is the newest snapshot that
verifies plus the log records after it. Rows that fail verification are kept, reported in
`problems`, and skipped; no code path deletes a row that fails verification.

Every method runs the blocking work in the store's own thread. Cancelling a call
interrupts it; whether a cancelled write was committed is then unknown, which is safe here
because applying a Yjs update twice changes nothing.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from types import TracebackType
from typing import ClassVar, Literal

import attrs
import trio

from .errors import CorruptRecord, RoomDamaged, StoreError
from .rebuild import merged_state, rebuild
from .rows import LogRecord, SnapshotInfo, SnapshotRecord, now_ms, verify_log_record

DEFAULT_KEEP = 3
# How long a caller off the data path (an admin command, the records watcher's delivery)
# waits for one store call before reporting an error.
STORE_CALL_TIMEOUT = 30.0

log = logging.getLogger("civicrealtime.persistence")


@attrs.frozen(kw_only=True)
class Problem:
    """One stored row that failed verification (or could not be parsed)."""

    room_id: str
    what: Literal["snapshot", "log"]
    ident: str  # the snapshot id, or "seq N" / "offset N" for the log
    reason: str

    def __str__(self) -> str:
        return f"{self.what} {self.ident} of room {self.room_id!r}: {self.reason}"


def verified_records(records: Iterable[LogRecord]) -> tuple[list[LogRecord], list[Problem]]:
    """The log records that verify, in order, and a `Problem` for each one that does not."""
    sound: list[LogRecord] = []
    problems: list[Problem] = []
    for record in records:
        try:
            verify_log_record(record)
        except CorruptRecord as exc:
            ident = f"seq {record.seq}"
            problems.append(
                Problem(room_id=record.room_id, what="log", ident=ident, reason=exc.reason)
            )
        else:
            sound.append(record)
    return sound, problems


@attrs.frozen(kw_only=True)
class Loaded:
    """What a room is rebuilt from: apply `updates()` in order into a fresh document."""

    room_id: str
    snapshot: SnapshotInfo | None  # the newest snapshot that verified, if any
    state: bytes | None  # its uncompressed state
    log: tuple[LogRecord, ...]  # verified records with seq > snapshot.log_seq, in seq order
    problems: tuple[Problem, ...]

    @property
    def covered_seq(self) -> int:
        """The highest log seq the loaded updates contain."""
        base = self.snapshot.log_seq if self.snapshot is not None else 0
        return max(base, self.log[-1].seq) if self.log else base

    @property
    def damaged(self) -> bool:
        """Snapshots exist, none verified, and the log does not rebuild the room alone.

        The log reaches back far enough when it still starts at seq 1: nothing was ever
        truncated, so it holds every update the snapshots were made of. Once truncated (the
        first snapshot cuts the log up to its `log_seq`), the records left depend on
        content only the snapshots held: applied alone they are all pending, a blank
        document. What the log cannot show is a state that only ever lived in a snapshot
        (an `import`, or updates shed while the store failed); `inspect` lists the sizes.
        """
        if self.snapshot is not None or not any(p.what == "snapshot" for p in self.problems):
            return False
        return not (self.log and self.log[0].seq == 1)

    def damage(self) -> str:
        """What `damaged` found, for log lines and errors."""
        failed = sum(1 for p in self.problems if p.what == "snapshot")
        start = f"starts at seq {self.log[0].seq}" if self.log else "is empty"
        return (
            f"room {self.room_id!r}: all {failed} snapshots failed verification and the "
            f"update log {start}, so it cannot rebuild the room; refusing to serve it blank "
            f"(see `civicrealtime snapshots inspect {self.room_id}`)"
        )

    def updates(self) -> list[bytes]:
        head = [self.state] if self.state is not None else []
        return head + [record.data for record in self.log]


@attrs.frozen(kw_only=True)
class VerifyReport:
    rooms: int
    snapshots: int
    log_records: int
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


class Store(abc.ABC):
    """The one contract of a room-state store; every backend subclasses it.

    Owns the room's stored rows (snapshots and update log) and their verification. A
    backend implements the abstract methods; export, import, compaction and `rebuild_room`
    are built here on `load` and `write_snapshot`, with the pycrdt work in a thread so the
    event loop keeps serving rooms meanwhile. A store never deletes a row that fails
    verification and never holds a room's live document. All methods raise `StoreError`
    (a subclass) when the store fails. Other concerns a backend may keep in the same
    database have their own interfaces (`revocationstore.RevocationStore`).
    """

    # True when every node of a cluster reaches the same data (a database server), False
    # for a file of this machine: clustering refuses a store that is not shared.
    shared_by_nodes: ClassVar[bool] = False

    def __init__(self, *, keep: int = DEFAULT_KEEP, clock: Callable[[], int] = now_ms) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.keep = keep
        self._now_ms = clock

    @property
    @abc.abstractmethod
    def description(self) -> str:
        """Where the data lives, for log lines (no credentials)."""
        ...

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and create or upgrade the schema. Idempotent."""
        ...

    @abc.abstractmethod
    async def close(self) -> None:
        """Wait for the store's thread to finish its current call, then disconnect."""
        ...

    @abc.abstractmethod
    async def ping(self) -> None:
        """Return when the store answers; raise `StoreError` when it does not."""
        ...

    @abc.abstractmethod
    async def load(self, room_id: str) -> Loaded:
        """The newest verifying snapshot (falling back to older ones) and the log after it."""
        ...

    @abc.abstractmethod
    async def append(self, batch: Sequence[tuple[str, bytes]]) -> list[int]:
        """Append raw updates for any rooms in one transaction; their seqs, in batch order.

        Seqs are per room and increasing. Either the whole batch is stored or (on error)
        none of it is, except on the filesystem store, where rooms are separate files and
        a failure can leave earlier rooms of the batch written (a retry then duplicates
        them, which is harmless).
        """
        ...

    @abc.abstractmethod
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
        """Store a snapshot containing every log record up to `covers_seq`, in one transaction.

        Then applies retention (the newest `keep` snapshots stay) and truncates the log up
        to the oldest kept snapshot's `log_seq`, so that any kept snapshot plus the log
        still rebuilds the room. Log records whose content is not in `state` (updates still
        waiting for a missing dependency) and rows that fail verification are never
        truncated. `carry` holds raw updates to re-append after the truncation. Log records
        up to `covers_seq` whose sha256 digest is in `discard` (updates the room dropped,
        see `StoreWriter.discard`) are deleted rather than kept.
        """
        ...

    @abc.abstractmethod
    async def sweep(self, older_than_ms: int, live_rooms: set[str]) -> int:
        """Delete the rows of rooms not in `live_rooms` whose newest row is older than the cutoff.

        Returns how many rooms were swept. Rows that fail verification stay.
        """
        ...

    @abc.abstractmethod
    async def list_rooms(self) -> list[str]: ...

    @abc.abstractmethod
    async def snapshots(self, room_id: str) -> list[SnapshotInfo]:
        """Snapshot metadata, newest first."""
        ...

    @abc.abstractmethod
    async def verify_all(self) -> VerifyReport:
        """Read and verify every row of every room."""
        ...

    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with trio.CancelScope(shield=True):
            await self.close()

    async def export_state(self, room_id: str) -> bytes:
        """The room's state, snapshot and log merged, pending updates included.

        Rows that fail verification are left out and logged. Raises `StoreError` when the
        store cannot be read and `InvalidUpdate` when a stored update cannot be applied.
        Cancellation: the pycrdt work finishes first (it is bounded by the room's size).
        """
        loaded = await self.load(room_id)
        self._report(loaded)
        return await trio.to_thread.run_sync(merged_state, loaded.updates())

    async def import_state(
        self, room_id: str, state: bytes, *, compress: bool = False
    ) -> SnapshotRecord:
        """Merge `state` into the room and store the result as a new snapshot.

        A merge, not a replacement: a CRDT room cannot forget what its clients still hold,
        and merging never loses stored data. To replace a room, delete its rows first.
        Raises `InvalidUpdate` when `state` is not a valid update, `StoreError` on failure,
        `RoomDamaged` for a damaged room (a merge would hide the damage).
        """
        loaded = await self._load_sound(room_id)
        rebuilt = await trio.to_thread.run_sync(rebuild, [*loaded.updates(), state])
        return await self.write_snapshot(
            room_id,
            rebuilt.state,
            covers_seq=loaded.covered_seq,
            carry=rebuilt.pending if state in rebuilt.pending else (),
            compress=compress,
        )

    async def compact(self, room_id: str, *, compress: bool = False) -> SnapshotRecord | None:
        """Fold the log into a new snapshot. None when the room has no log after its snapshot.

        Updates still waiting for a missing dependency stay in the log (write_snapshot
        keeps what the new state does not contain). Raises `StoreError` (`RoomDamaged`
        for a damaged room), or `InvalidUpdate` when a stored update cannot be applied
        (then nothing is written).
        """
        loaded = await self._load_sound(room_id)
        if not loaded.log:
            return None
        rebuilt = await trio.to_thread.run_sync(rebuild, loaded.updates())
        return await self.write_snapshot(
            room_id, rebuilt.state, covers_seq=loaded.covered_seq, compress=compress
        )

    async def rebuild_room(
        self, room_id: str, *, accept_loss: bool = False, compress: bool = False
    ) -> tuple[Loaded, SnapshotRecord]:
        """Write a new snapshot of what loads (the newest sound snapshot, or the log alone).

        For a room that loads with problems, this makes the repair the daemon does at each
        load durable. A damaged room (`Loaded.damaged`) raises `RoomDamaged` unless
        `accept_loss`: then what the log still holds becomes the room's state, and updates
        that depend on the lost content stay in the log, pending. The bad rows are kept.
        """
        loaded = await self.load(room_id)
        self._report(loaded)
        if loaded.damaged and not accept_loss:
            raise RoomDamaged(f"{self.description}: {loaded.damage()}")
        if loaded.snapshot is None and not loaded.log and not loaded.problems:
            raise StoreError(f"{self.description}: no stored state for room {room_id!r}")
        rebuilt = await trio.to_thread.run_sync(rebuild, loaded.updates())
        record = await self.write_snapshot(
            room_id, rebuilt.state, covers_seq=loaded.covered_seq, compress=compress
        )
        if accept_loss and loaded.damaged:
            log.warning(
                "persistence.loss_accepted store=%s room=%s state_bytes=%d pending=%d",
                self.description,
                room_id,
                len(rebuilt.state),
                len(rebuilt.pending),
            )
        return loaded, record

    async def _load_sound(self, room_id: str) -> Loaded:
        loaded = await self.load(room_id)
        self._report(loaded)
        if loaded.damaged:
            raise RoomDamaged(f"{self.description}: {loaded.damage()}")
        return loaded

    def _report(self, loaded: Loaded) -> None:
        for problem in loaded.problems:
            log.warning("persistence.corrupt_row store=%s %s", self.description, problem)
