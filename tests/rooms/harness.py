"""A running `Room` for unit tests: built without a manager, fed through its mailbox.

`open_room` starts it (loaded, serving); `Harness.send` queues messages and returns once
every task is blocked, so the room has handled them and everything they set off.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio
import trio.testing
from pycrdt import Doc, Text

from civicrealtime.config import RealtimeConfig
from civicrealtime.protocol import FrameDecoder
from civicrealtime.rooms import Member, MemoryOnly, RoomType
from civicrealtime.rooms.messages import FromClient, Join, RoomMessage
from civicrealtime.rooms.origin import Origin
from civicrealtime.rooms.relay import NoRelay
from civicrealtime.rooms.room import Room
from civicrealtime.stats import Stats

from ..conftest import make_config
from .members import Seen, received


def doc_with(text: str, *, base: bytes | None = None) -> bytes:
    """An update inserting `text` at the start of `t` (after `base`, if given)."""
    doc: Doc[Any] = Doc()
    if base is not None:
        doc.apply_update(base)
    before = doc.get_state()
    doc.get("t", type=Text).insert(0, text)
    return doc.get_update(before)


def text_of(*updates: bytes) -> str:
    doc: Doc[Any] = Doc()
    for update in updates:
        doc.apply_update(update)
    return str(doc.get("t", type=Text))


class Stored(MemoryOnly):
    """Loads the given updates, once `gate` is set (at once without a gate)."""

    def __init__(self, *updates: bytes, gate: trio.Event | None = None) -> None:
        self.updates = list(updates)
        self.gate = gate
        self.kept: list[bytes] = []
        # Who each kept update is attributed to (the history's origin), in the same order.
        self.origins: list[Origin | None] = []

    async def load(self, key: str) -> Sequence[bytes]:
        if self.gate is not None:
            await self.gate.wait()
        return self.updates

    def received(self, key: str, update: bytes, origin: Origin | None = None) -> None:
        self.kept.append(update)
        self.origins.append(origin)


class Persistent(Stored):
    persistent = True

    def __init__(self) -> None:
        super().__init__()
        self.snapshots: list[bytes] = []

    async def snapshot(self, key: str, state: bytes, *, received: int) -> None:
        self.snapshots.append(state)


class Published(NoRelay):
    """A relay that records what the room publishes to other nodes."""

    def __init__(self) -> None:
        self.updates: list[bytes] = []
        self.awareness: list[bytes] = []

    def local_update(self, key: str, update: bytes) -> None:
        self.updates.append(update)

    def local_awareness(self, key: str, frame: bytes) -> None:
        self.awareness.append(frame)


@attrs.define
class Harness:
    room: Room
    mailbox: trio.MemorySendChannel[RoomMessage]
    emptied: trio.Event
    stats: Stats = attrs.Factory(Stats)
    session: FrameDecoder = attrs.Factory(FrameDecoder)

    async def send(self, *sent: RoomMessage) -> None:
        """Queue the messages, then let the room handle them (and everything they set off)."""
        for message in sent:
            self.mailbox.send_nowait(message)
        await trio.testing.wait_all_tasks_blocked()

    async def join(self, member: Member) -> list[Seen]:
        await self.send(Join(member=member))
        return await received(member)

    def from_client(self, member: Member, frame: bytes) -> FromClient:
        """A frame the member's client sent, decoded as its connection decodes it."""
        return FromClient(member=member, event=self.session.receive(frame))

    async def client_sends(self, member: Member, frame: bytes) -> None:
        await self.send(self.from_client(member, frame))


def build_room(
    mailbox: trio.MemoryReceiveChannel[RoomMessage],
    sender: trio.MemorySendChannel[RoomMessage],
    *,
    on_empty: Callable[[Room], None],
    hooks: MemoryOnly | None = None,
    config: RealtimeConfig | None = None,
    relay: NoRelay | None = None,
    stats: Stats | None = None,
) -> Room:
    return Room(
        key="records:unit",
        config=config or make_config(),
        hooks=hooks or MemoryOnly(),
        room_type=RoomType(name="records"),
        relay=relay,
        mailbox_sender=sender,
        mailbox=mailbox,
        on_empty=on_empty,
        on_join=lambda room: None,
        stats=stats,
    )


@asynccontextmanager
async def open_room(**options: Any) -> AsyncIterator[Harness]:
    """A running room (loaded, serving its mailbox), stopped on the way out."""
    send, receive = trio.open_memory_channel[RoomMessage](256)
    emptied = trio.Event()
    stats = Stats()
    room = build_room(receive, send, on_empty=lambda room: emptied.set(), stats=stats, **options)
    async with trio.open_nursery() as nursery:
        await nursery.start(room.run)
        yield Harness(room=room, mailbox=send, emptied=emptied, stats=stats)
        nursery.cancel_scope.cancel()
