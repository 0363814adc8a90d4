"""What connection tasks send to a room's mailbox. The room is the only reader."""

from __future__ import annotations

import attrs
import trio

from ..protocol import Event
from .member import Member


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
class FromClient(RoomMessage):
    member: Member
    event: Event
