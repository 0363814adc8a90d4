"""The room's seam for what lives outside one process: persistence and other nodes.

A room calls these at fixed points of its life. The default does nothing, so rooms live in
memory only; the persistence and clustering layers plug in here without touching the room.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from pycrdt import Doc


class RoomHooks(Protocol):
    async def load(self, key: str) -> Sequence[bytes]:
        """Updates that rebuild the room's document, applied before anyone is synced.

        An exception here fails the room's start: joiners are refused with 4500 rather
        than given an empty document that could later overwrite good data.
        """
        ...

    def applied(self, key: str, update: bytes) -> None:
        """Called, without waiting, for every update the room applied from a client."""
        ...

    async def retiring(self, key: str, doc: Doc[Any]) -> None:
        """The room is being evicted or shut down: last chance to persist.

        Runs shielded under the shutdown deadline.
        """
        ...


class MemoryOnly:
    """Rooms start empty and vanish on eviction."""

    async def load(self, key: str) -> Sequence[bytes]:
        return ()

    def applied(self, key: str, update: bytes) -> None:
        return None

    async def retiring(self, key: str, doc: Doc[Any]) -> None:
        return None
