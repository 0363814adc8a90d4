"""The persistence writer as the rooms' `RoomHooks`: the only place rooms meet a store."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..rooms.hooks import SnapshotFailed, StateDamaged
from ..rooms.origin import Origin
from .errors import RoomDamaged, StoreError
from .historyrecorder import HistoryRecorder
from .writer import StoreWriter

# An update handed over without an origin (a caller from before history): kept, unnamed.
UNKNOWN = Origin(actor="admin")


class PersistedRooms:
    """The rooms' `RoomHooks` backed by a `StoreWriter`: an adapter, it owns nothing."""

    persistent = True

    def __init__(self, persistence: StoreWriter, history: HistoryRecorder | None = None) -> None:
        self.persistence = persistence
        self.history = history

    async def load(self, key: str) -> Sequence[bytes]:
        try:
            updates = await self.persistence.load(key)
        except RoomDamaged as exc:
            raise StateDamaged(str(exc)) from exc
        if self.history is not None:
            self.history.loaded(key, updates)
        return updates

    def received(self, key: str, update: bytes, origin: Origin | None = None) -> None:
        self.persistence.received(key, update)
        if self.history is not None:
            self.history.received(key, update, origin if origin is not None else UNKNOWN)

    def mark(self, key: str) -> int:
        return self.persistence.mark(key)

    async def snapshot(self, key: str, state: bytes, *, received: int) -> None:
        try:
            await self.persistence.snapshot(key, state, received=received)
        except StoreError as exc:
            raise SnapshotFailed(str(exc)) from exc

    def unflushed(self, key: str) -> int:
        return self.persistence.unflushed(key)

    def discard(self, key: str, updates: Sequence[bytes]) -> None:
        self.persistence.discard(key, updates)

    def must_stay(self, key: str) -> bool:
        return self.persistence.must_stay(key)

    def forget(self, key: str) -> None:
        self.persistence.forget(key)
        if self.history is not None:
            self.history.forget(key)

    # What is durable (rooms/saving.py `DurabilitySource`): the "saved" acknowledgement.
    def durable(self, key: str) -> int:
        return self.persistence.durability.durable(key)

    def watch(self, key: str, notify: Callable[[int, bool], bool]) -> None:
        self.persistence.durability.watch(key, notify)

    def unwatch(self, key: str, notify: Callable[[int, bool], bool]) -> None:
        self.persistence.durability.unwatch(key, notify)
