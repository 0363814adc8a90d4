"""Server-side edits and reads of a room, with or without anyone connected.

The room is reached like a join reaches it: the manager loads it if it is not live (stored
state, else its seed), so a read never answers blank over stored data and an edit is never
lost to a room loading meanwhile. The edit itself travels through the room's mailbox
(`ServerEdit`): the room remains the only code that changes its document. A room loaded
only for this goes away again after its grace period, snapshotted like any other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import trio
from pycrdt import Doc

from ..protocol.document import YDocument
from .manager import RoomManager
from .messages import EditResult, ServerEdit
from .origin import Origin

T = TypeVar("T")


class RoomGone(Exception):
    """The room stopped (evicted, shut down) before it answered."""


async def edit_room(
    manager: RoomManager,
    key: str,
    room_type: str,
    *,
    actor: str,
    edit: Callable[[YDocument], None],
    origin: Origin | None = None,
) -> EditResult:
    """Run `edit` in the room's task; raises `RoomUnavailable` or `RoomGone`.

    `origin` is who the history attributes the change to; by default the API `actor`.
    """
    if origin is None:
        origin = Origin(actor="api", sub=actor)
    handle = await manager.acquire(key, room_type)
    try:
        reply, answer = trio.open_memory_channel[EditResult](1)
        result: EditResult | None = None
        try:
            await handle.mailbox.send(
                ServerEdit(actor=actor, origin=origin, edit=edit, reply=reply)
            )
            # A room that stops with the edit still queued drops it unanswered: stop
            # waiting when it is gone (it answers at once otherwise, before it can stop).
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_cancel_when_set, handle.stopped, nursery.cancel_scope)
                with answer:
                    result = await answer.receive()
                nursery.cancel_scope.cancel()
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.EndOfChannel):
            raise RoomGone(key) from None
        if result is None:
            raise RoomGone(key)
        return result
    finally:
        manager.release_pending(handle)


async def _cancel_when_set(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def read_room(
    manager: RoomManager, key: str, room_type: str, read: Callable[[Doc[Any]], T]
) -> T:
    """`read(doc)` on the room's loaded document, synchronously (no change, no await)."""
    handle = await manager.acquire(key, room_type)
    try:
        return read(handle.room.doc)
    finally:
        manager.release_pending(handle)
