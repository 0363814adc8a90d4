"""The persistence writer as the rooms' `RoomHooks`: the only place rooms meet a store."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..rooms.hooks import SnapshotFailed, StateDamaged
from .errors import RoomDamaged, StoreError
from .writer import Persistence


class PersistedRooms:
    persistent = True

    def __init__(self, persistence: Persistence) -> None:
        self.persistence = persistence

    async def load(self, key: str) -> Sequence[bytes]:
        try:
            return await self.persistence.load(key)
        except RoomDamaged as exc:
            raise StateDamaged(str(exc)) from exc

    def received(self, key: str, update: bytes) -> None:
        self.persistence.received(key, update)

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

    # What is durable (rooms/saving.py `DurabilitySource`): the "saved" acknowledgement.
    def durable(self, key: str) -> int:
        return self.persistence.durable(key)

    def watch(self, key: str, notify: Callable[[int, bool], bool]) -> None:
        self.persistence.watch(key, notify)

    def unwatch(self, key: str, notify: Callable[[int, bool], bool]) -> None:
        self.persistence.unwatch(key, notify)
