"""What connection tasks send to a room's mailbox. The room is the only reader."""

from __future__ import annotations

from collections.abc import Callable

import attrs
import trio

from ..protocol import Event
from ..protocol.document import YDocument
from .member import Member
from .origin import Origin


@attrs.frozen(kw_only=True, slots=True)
class RoomMessage:
    """Base of every mailbox message."""


@attrs.frozen(kw_only=True, slots=True)
class Join(RoomMessage):
    member: Member


@attrs.frozen(kw_only=True, slots=True)
class Leave(RoomMessage):
    member: Member


@attrs.frozen(kw_only=True, slots=True)
class TakeSnapshot(RoomMessage):
    """An operator asks for a snapshot now; the room answers True once it is written."""

    reply: trio.MemorySendChannel[bool]


@attrs.frozen(kw_only=True, slots=True)
class FromNode(RoomMessage):
    """Traffic another node published for this room (cross-node fan-out)."""

    node: str
    update: bytes | None = None
    awareness: bytes | None = None  # an awareness update payload (not a frame)


@attrs.frozen(kw_only=True, slots=True)
class NodeGone(RoomMessage):
    """Another node stopped (its heartbeat expired): its clients' presence goes too."""

    node: str


@attrs.frozen(kw_only=True, slots=True)
class FromClient(RoomMessage):
    member: Member
    event: Event


@attrs.frozen(kw_only=True, slots=True)
class FromClientBatch(RoomMessage):
    """The events of several frames a member's connection read at once, in order: one
    mailbox message (one task switch) for all of them."""

    member: Member
    events: tuple[Event, ...]


@attrs.frozen(kw_only=True, slots=True)
class EditResult:
    """A server-side edit's outcome: how many updates (of how many bytes) it made."""

    updates: int = 0
    size: int = 0
    error: str | None = None


@attrs.frozen(kw_only=True, slots=True)
class ServerEdit(RoomMessage):
    """A change made without a socket (ops API, file watcher), attributed to `actor`.

    `edit` runs in the room's task, on its document, and must make its change in one
    transaction (or raise before changing anything): everyone then gets one update.
    """

    actor: str
    # Who the history attributes it to (a restore's caller; the API's or the watcher's actor).
    origin: Origin
    # On the room's `YDocument`: a peer's update goes through `apply` (character splits),
    # a local change is written into `document.doc` in one transaction.
    edit: Callable[[YDocument], None]
    reply: trio.MemorySendChannel[EditResult]
