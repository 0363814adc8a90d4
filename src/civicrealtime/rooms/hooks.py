"""The room's seam for what lives outside one process: persistence (and other nodes).

A room calls these at fixed points of its life; it never imports a store. `MemoryOnly`
keeps rooms in memory only; the persistence layer adapts its writer to this protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .origin import Origin


class SnapshotFailed(Exception):
    """A snapshot could not be written; the updates stay in the log, so nothing is lost."""


class StateDamaged(Exception):
    """The room's stored state is damaged: refuse joiners until an operator decides."""


class RoomHooks(Protocol):
    # False: no snapshot timers, nothing to flush before eviction.
    persistent: bool

    async def load(self, key: str) -> Sequence[bytes]:
        """Updates that rebuild the room's document, applied before anyone is synced.

        An exception here fails the room's start: joiners are refused with 4500 rather
        than given an empty document that could later overwrite good data.
        """
        ...

    def received(self, key: str, update: bytes, origin: Origin | None = None) -> None:
        """A raw update the room accepted (it changed the document or is pending in it).

        `origin`: who made it (a member, or the server for a seed or a restore), for the
        history. Called without waiting; the implementation buffers it (group commit).
        """
        ...

    def mark(self, key: str) -> int:
        """A position in the stream of received updates, taken with a captured state."""
        ...

    async def snapshot(self, key: str, state: bytes, *, received: int) -> None:
        """Store the full state, which holds every update received up to `received`.

        Raises SnapshotFailed; cancellation interrupts the write.
        """
        ...

    def unflushed(self, key: str) -> int:
        """Received updates of the room not yet durable."""
        ...

    def discard(self, key: str, updates: Sequence[bytes]) -> None:
        """Received updates the room dropped (pending, never resolved): not to be kept.

        Those still buffered are never written; the next snapshot removes the others from
        the log instead of carrying them forward.
        """
        ...

    def must_stay(self, key: str) -> bool:
        """Evicting the room now could lose updates (the store is failing): keep it."""
        ...

    def forget(self, key: str) -> None:
        """The room left memory."""
        ...


class MemoryOnly:
    """Rooms start empty and vanish on eviction."""

    persistent = False

    async def load(self, key: str) -> Sequence[bytes]:
        return ()

    def received(self, key: str, update: bytes, origin: Origin | None = None) -> None:
        return None

    def mark(self, key: str) -> int:
        return 0

    async def snapshot(self, key: str, state: bytes, *, received: int) -> None:
        return None

    def unflushed(self, key: str) -> int:
        return 0

    def discard(self, key: str, updates: Sequence[bytes]) -> None:
        return None

    def must_stay(self, key: str) -> bool:
        return False

    def forget(self, key: str) -> None:
        return None
