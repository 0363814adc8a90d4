"""The room's seam to other nodes: what it tells them, and how they reach it.

A room tells its relay about every update and awareness frame that came from a LOCAL
client (never about remote ones: nothing is published twice). Other nodes reach the room
only through its mailbox, with `FromNode` messages, like everything else that changes a
room. `NoRelay` is the single-node default; the cluster package implements it with Redis.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import trio

from .messages import RoomMessage


class RoomRelay(Protocol):
    async def opened(
        self, key: str, mailbox: trio.MemorySendChannel[RoomMessage]
    ) -> Sequence[bytes]:
        """The room is loading: start delivering remote traffic to `mailbox`.

        Returns the updates other nodes published that the store may not hold yet (the
        stream's tail), applied after the stored state and before anyone is synced.
        """
        ...

    def closed(self, key: str) -> None:
        """The room left memory: stop delivering to its mailbox."""
        ...

    def local_update(self, key: str, update: bytes) -> None:
        """A local client's update was applied (or is pending): publish it. Never waits."""
        ...

    def local_awareness(self, key: str, frame: bytes) -> None:
        """A local client's awareness frame changed the room's awareness. Never waits."""
        ...

    def snapshot_allowed(self, key: str) -> bool:
        """Only one node writes a room's snapshot at a time (a lease)."""
        ...

    def snapshot_written(self, key: str) -> None:
        """The store now holds everything published before the snapshot (trim the stream)."""
        ...


class NoRelay:
    async def opened(
        self, key: str, mailbox: trio.MemorySendChannel[RoomMessage]
    ) -> Sequence[bytes]:
        return ()

    def closed(self, key: str) -> None:
        return None

    def local_update(self, key: str, update: bytes) -> None:
        return None

    def local_awareness(self, key: str, frame: bytes) -> None:
        return None

    def snapshot_allowed(self, key: str) -> bool:
        return True

    def snapshot_written(self, key: str) -> None:
        return None
