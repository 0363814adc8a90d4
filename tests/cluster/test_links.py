"""A room's link to its stream (links.py): parked deliveries, what was applied."""

from __future__ import annotations

import pytest
import trio

from civicrealtime.cluster.links import RoomLink, RoomLinks
from civicrealtime.rooms.messages import FromNode, NodeGone, RoomMessage


async def test_link_parks_messages_while_the_mailbox_is_full() -> None:
    send, receive = trio.open_memory_channel[RoomMessage](2)
    link = RoomLink(key="k", stream=b"s", mailbox=send, read_id=(1, 0))
    for i in range(4):
        link.deliver(FromNode(node="n", update=bytes([i])), (10, i))
    assert len(link.pending) == 2 and link.paused_since is not None
    got = [receive.receive_nowait(), receive.receive_nowait()]
    link.flush()
    got += [receive.receive_nowait(), receive.receive_nowait()]
    assert [m.update for m in got if isinstance(m, FromNode)] == [bytes([i]) for i in range(4)]
    assert not link.pending and link.paused_since is None


async def test_link_tells_which_entries_the_room_surely_applied() -> None:
    send, receive = trio.open_memory_channel[RoomMessage](8)
    link = RoomLink(key="k", stream=b"s", mailbox=send, read_id=(5, 0))
    # Nothing delivered: everything read so far is in the document.
    assert link.applied_below() == (5, 1)
    for i in range(3):
        link.deliver(FromNode(node="n", update=b"u"), (10, i))
    link.read_id = (10, 2)
    # Three in the mailbox (and one may be in the room's hands): none surely applied.
    assert link.applied_below() == (10, 0)
    for _ in range(3):
        receive.receive_nowait()
    # Emptied, but the last one may not be handled yet.
    assert link.applied_below() == (10, 2)
    link.deliver(NodeGone(node="n"), None)
    receive.receive_nowait()
    assert link.applied_below() == (10, 3)
    link.read_id = None
    assert link.applied_below() is None


async def test_link_notices_its_room_is_gone() -> None:
    send, receive = trio.open_memory_channel[RoomMessage](1)
    link = RoomLink(key="k", stream=b"s", mailbox=send)
    receive.close()
    link.deliver(FromNode(node="n", update=b"u"), (1, 0))
    assert not link.alive and not link.pending


async def test_links_replace_close_and_forget() -> None:
    links = RoomLinks()
    first, first_out = trio.open_memory_channel[RoomMessage](1)
    second, _ = trio.open_memory_channel[RoomMessage](1)
    old = RoomLink(key="k", stream=b"s", mailbox=first)
    links.add(old)
    links.add(RoomLink(key="k", stream=b"s", mailbox=second))  # the room opened again
    assert not old.alive and len(links) == 1
    with pytest.raises(trio.EndOfChannel):
        first_out.receive_nowait()
    gone, _ = trio.open_memory_channel[RoomMessage](1)
    links.add(RoomLink(key="g", stream=b"g", mailbox=gone))
    gone.close()
    links.get("g").deliver(NodeGone(node="n"), None)  # type: ignore[union-attr]
    assert links.alive() == ["k"]
    assert set(links.by_stream()) == {b"s", b"g"}
    for key in links:  # a copy: closing while looping is fine
        links.remove(key)
    assert len(links) == 0 and "k" not in links
