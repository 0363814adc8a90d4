"""The room manager without a network: starting rooms once, eviction, crashes, shutdown.

Members join through the rooms' mailboxes as connections do (`acquire`, then `Join`).
Timers run on trio's autojump clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import trio
import trio.testing
from pycrdt import Doc, Text

from civicrealtime.protocol.closecodes import CloseCode
from civicrealtime.protocol.events import UpdateReceived
from civicrealtime.rooms import (
    FromClient,
    Join,
    Leave,
    Member,
    MemoryOnly,
    RoomHandle,
    RoomManager,
    RoomType,
    RoomTypeRegistry,
    RoomUnavailable,
)
from civicrealtime.rooms.origin import Origin
from civicrealtime.stats import Stats

from ..conftest import make_config
from .members import close_of, drain, kinds, make_member, received


class CrashOnMarker(MemoryOnly):
    def received(self, key: str, update: bytes, origin: Origin | None = None) -> None:
        if b"BOOM" in update:
            raise RuntimeError("simulated room failure")


class GatedLoad(MemoryOnly):
    def __init__(self) -> None:
        self.loads = 0
        self.gate = trio.Event()

    async def load(self, key: str) -> Sequence[bytes]:
        self.loads += 1
        await self.gate.wait()
        return ()


def registry(**hooks: MemoryOnly) -> RoomTypeRegistry:
    types = [RoomType(name="records")]
    types += [RoomType(name=name, hooks=h) for name, h in hooks.items()]
    return RoomTypeRegistry(types)


@pytest.fixture
async def nursery_for_rooms() -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as nursery:
        yield nursery
        nursery.cancel_scope.cancel()


async def start(
    nursery: trio.Nursery, types: RoomTypeRegistry | None = None, **config: object
) -> RoomManager:
    manager = RoomManager(make_config(**config), types or registry(), stats=Stats())
    await nursery.start(manager.run)
    return manager


async def join(manager: RoomManager, key: str, member: Member) -> RoomHandle:
    room_type = key.partition(":")[0]
    handle = await manager.acquire(key, room_type)
    await handle.mailbox.send(Join(member=member))
    await trio.testing.wait_all_tasks_blocked()
    return handle


def update_with(text: str) -> bytes:
    doc: Doc[Any] = Doc()
    doc.get("t", type=Text).insert(0, text)
    return doc.get_update()


async def test_an_empty_room_is_evicted_after_its_grace_period_and_starts_afresh(
    autojump_clock: trio.testing.MockClock, nursery_for_rooms: trio.Nursery
) -> None:
    manager = await start(nursery_for_rooms, rooms={"cleanup_timeout": 30})
    member = make_member(1)
    handle = await join(manager, "records:e", member)
    await handle.mailbox.send(FromClient(member=member, event=_update("kept in memory")))
    await handle.mailbox.send(Leave(member=member))
    with trio.move_on_after(29):
        await handle.stopped.wait()
    assert not handle.stopped.is_set()
    assert manager.get("records:e") is handle
    with trio.fail_after(2):
        await handle.stopped.wait()
    assert manager.get("records:e") is None

    again = await join(manager, "records:e", make_member(2))
    assert again is not handle
    assert str(again.room.doc.get("t", type=Text)) == ""  # memory only: a fresh document


async def test_a_crashing_room_closes_its_members_4500_and_no_other_room(
    nursery_for_rooms: trio.Nursery,
) -> None:
    manager = await start(nursery_for_rooms, registry(fragile=CrashOnMarker()))
    doomed = make_member(1, control_frames=True)
    doomed_peer = make_member(2)
    survivor, survivor_peer = make_member(3), make_member(4)
    fragile = await join(manager, "fragile:x", doomed)
    await join(manager, "fragile:x", doomed_peer)
    safe = await join(manager, "records:safe", survivor)
    await join(manager, "records:safe", survivor_peer)
    for member in (doomed, doomed_peer, survivor, survivor_peer):
        await drain(member)

    await fragile.mailbox.send(FromClient(member=doomed, event=_update("BOOM")))
    with trio.fail_after(5):
        await fragile.stopped.wait()

    for member in (doomed, doomed_peer):
        close = close_of(member)
        assert close is not None and close[0] == CloseCode.ROOM_FAILED
    # The error frame only to the member that gets control frames, before the close.
    errors = [s.payload["error"]["code"] for s in await received(doomed) if s.kind == "error"]
    assert errors == ["UNKNOWN_ERROR"]
    assert manager.crashes == 1
    assert manager.get("fragile:x") is None  # the key is free: a reconnect starts afresh

    await safe.mailbox.send(FromClient(member=survivor, event=_update("alive")))
    await trio.testing.wait_all_tasks_blocked()
    assert kinds(await received(survivor_peer)) == ["update"]
    assert close_of(survivor) is None and close_of(survivor_peer) is None
    assert manager.get("records:safe") is safe

    again = await join(manager, "fragile:x", make_member(5))
    assert again is not fragile and not again.failed


async def test_concurrent_first_joiners_share_one_actor_and_one_load(
    nursery_for_rooms: trio.Nursery,
) -> None:
    hooks = GatedLoad()
    manager = await start(nursery_for_rooms, registry(slow=hooks))
    handles: list[RoomHandle] = []

    async def acquire() -> None:
        handles.append(await manager.acquire("slow:crowd", "slow"))

    async with trio.open_nursery() as joiners:
        for _ in range(5):
            joiners.start_soon(acquire)
        await trio.testing.wait_all_tasks_blocked()
        assert handles == []  # every joiner waits for the one load
        hooks.gate.set()
    assert hooks.loads == 1
    assert len({id(handle) for handle in handles}) == 1
    assert handles[0].pending_joins == 5


async def test_at_max_rooms_the_least_recently_used_empty_room_makes_way(
    autojump_clock: trio.testing.MockClock, nursery_for_rooms: trio.Nursery
) -> None:
    manager = await start(nursery_for_rooms, rooms={"max_rooms": 2, "cleanup_timeout": 600})
    for conn_id, name in enumerate(("old", "newer")):
        member = make_member(conn_id)
        handle = await join(manager, f"records:{name}", member)
        await handle.mailbox.send(Leave(member=member))
        autojump_clock.jump(1)  # the clock orders their last use
    busy = make_member(9)
    await join(manager, "records:third", busy)
    assert manager.get("records:old") is None
    assert manager.get("records:newer") is not None

    # Every room has a member: a new one is refused.
    await join(manager, "records:newer", make_member(10))
    with pytest.raises(RoomUnavailable) as refused:
        await manager.acquire("records:fourth", "records")
    assert refused.value.close_code == CloseCode.LIMIT_EXCEEDED


async def test_shutdown_closes_every_member_4503_after_what_was_queued(
    nursery_for_rooms: trio.Nursery,
) -> None:
    manager = await start(nursery_for_rooms)
    members = [make_member(1, control_frames=True), make_member(2)]
    for member in members:
        await join(manager, "records:bye", member)
    with trio.fail_after(5):
        await manager.shutdown(trio.current_time() + 5)
    for member in members:
        close = close_of(member)
        assert close is not None and close[0] == CloseCode.SHUTTING_DOWN
        assert not member.outbound.aborted  # flushed: the join's frames were not cut off
    assert kinds(await received(members[0]))[-1] == "error"
    with pytest.raises(RoomUnavailable):
        await manager.acquire("records:late", "records")


def _update(text: str) -> UpdateReceived:
    """What a connection's session makes of a client's sync update."""
    return UpdateReceived(update=update_with(text), is_step2=False)
