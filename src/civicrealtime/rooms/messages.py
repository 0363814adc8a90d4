"""What connection tasks send to a room's mailbox. The room is the only reader."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import trio
from pycrdt import Doc

from ..protocol import Event
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
class ServerChange(RoomMessage):
    """A change the server makes to the document (a restore), on behalf of `origin`.

    `change` runs inside the room, on its document, and may raise `InvalidUpdate` only;
    the room applies, relays and logs the result like an edit and answers with the number
    of updates it made (0: the document already was so), or the error's text.
    """

    change: Callable[[Doc[Any]], None]
    origin: Origin
    reply: trio.MemorySendChannel[int | str]
