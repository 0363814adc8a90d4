"""What every backend does the same way: the document-level maintenance operations.

Export, import and compaction are built on `load` and `write_snapshot`, with the pycrdt
work done in a thread so the event loop keeps serving rooms meanwhile.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from types import TracebackType

import trio

from ..auth.revocation import Revocation
from .errors import RoomDamaged, StoreError
from .rebuild import merged_state, rebuild
from .rows import SnapshotInfo, SnapshotRecord, now_ms
from .store import DEFAULT_KEEP, Loaded, VerifyReport

log = logging.getLogger("civicrealtime.persistence")


class StoreBase(abc.ABC):
    def __init__(self, *, keep: int = DEFAULT_KEEP, clock: Callable[[], int] = now_ms) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.keep = keep
        self._now_ms = clock

    @property
    @abc.abstractmethod
    def description(self) -> str: ...

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ping(self) -> None: ...

    @abc.abstractmethod
    async def load(self, room_id: str) -> Loaded: ...

    @abc.abstractmethod
    async def append(self, batch: Sequence[tuple[str, bytes]]) -> list[int]: ...

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
    ) -> SnapshotRecord: ...

    @abc.abstractmethod
    async def sweep(self, older_than_ms: int, live_rooms: set[str]) -> int: ...

    @abc.abstractmethod
    async def list_rooms(self) -> list[str]: ...

    @abc.abstractmethod
    async def snapshots(self, room_id: str) -> list[SnapshotInfo]: ...

    @abc.abstractmethod
    async def verify_all(self) -> VerifyReport: ...

    @abc.abstractmethod
    async def save_revocation(self, revocation: Revocation) -> None: ...

    @abc.abstractmethod
    async def load_revocations(self) -> list[Revocation]: ...

    async def __aenter__(self) -> StoreBase:
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
