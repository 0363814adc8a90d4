"""The cluster's parts without Redis: ids, the publish buffer, room links, local presence."""

from __future__ import annotations

import json
import logging

import pytest
import trio
from pycrdt import Doc, Text

from civicrealtime.cluster.entries import (
    AWARENESS,
    DATA,
    KIND,
    UPDATE,
    awareness_payload,
    format_id,
    parse_id,
    successor,
)
from civicrealtime.cluster.links import RoomLink
from civicrealtime.cluster.outbox import Outgoing, PublishBuffer
from civicrealtime.cluster.presence import LocalPresence
from civicrealtime.protocol.awareness import (
    AwarenessEntry,
    decode_awareness_update,
    encode_awareness_update,
)
from civicrealtime.protocol.messages import encode_awareness, encode_sync_update
from civicrealtime.rooms.messages import FromNode, NodeGone, RoomMessage


def test_stream_ids() -> None:
    assert parse_id(b"1700000000000-3") == (1700000000000, 3)
    assert parse_id("5") == (5, 0)
    assert format_id((12, 4)) == b"12-4"
    assert successor((12, 4)) == (12, 5)
    assert parse_id(b"1-2") < parse_id(b"1-10") < parse_id(b"2-0")


def test_awareness_payload_of_a_frame() -> None:
    assert awareness_payload(encode_awareness(b"\x01\x02")) == b"\x01\x02"
    assert awareness_payload(encode_sync_update(b"\x00\x00")) is None
    assert awareness_payload(b"\x01\xff") is None


def _edits(count: int) -> list[bytes]:
    doc: Doc = Doc()
    text = doc.get("text", type=Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    for i in range(count):
        text.insert(len(text), f"<{i}>")
    return updates


def _update(room: str, data: bytes) -> Outgoing:
    return Outgoing(stream=room.encode(), fields={KIND: UPDATE, DATA: data}, room=room)


def test_buffer_keeps_order_and_gives_back() -> None:
    buffer = PublishBuffer(1 << 20)
    for i in range(5):
        buffer.push(_update("r", bytes([i])))
    batch = buffer.take(3)
    assert [item.fields[DATA] for item in batch] == [b"\x00", b"\x01", b"\x02"]
    buffer.give_back(batch)
    assert [item.fields[DATA] for item in buffer.take(10)] == [bytes([i]) for i in range(5)]


def test_overflow_drops_presence_then_merges_updates_losslessly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    updates = _edits(200)
    limit = sum(len(u) for u in updates) + 64 * 60
    buffer = PublishBuffer(limit)
    presence = Outgoing(stream=b"r", fields={KIND: AWARENESS, DATA: b"x" * 100}, room="r")
    with caplog.at_level(logging.ERROR, logger="civicrealtime.cluster"):
        buffer.push(presence)
        for update in updates:
            buffer.push(_update("r", update))
    assert "cluster.publish_overflow" in caplog.text
    kept = buffer.take(1000)
    assert all(item.kind == UPDATE for item in kept)
    assert len(kept) < len(updates)
    doc: Doc = Doc()
    for item in kept:
        doc.apply_update(item.fields[DATA])
    assert str(doc.get("text", type=Text)) == "".join(f"<{i}>" for i in range(200))
    assert not buffer.dropped_rooms


def test_overflow_beyond_merging_drops_the_largest_room_loudly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    buffer = PublishBuffer(4096)
    with caplog.at_level(logging.ERROR, logger="civicrealtime.cluster"):
        buffer.push(_update("small", b"\x00" * 10))
        # One update larger than the bound: merging cannot help, only dropping.
        buffer.push(_update("big", b"\x01" * 5000))
    assert buffer.dropped_rooms == {"big"}
    assert "cluster.publish_dropped room=big" in caplog.text
    assert [item.room for item in buffer.take(100)] == ["small"]
    assert buffer.bytes <= 4096


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


def test_local_presence_answers_and_withdraws() -> None:
    presence = LocalPresence()

    def update(client: int, clock: int, state: object) -> bytes:
        return encode_awareness_update(
            [AwarenessEntry(client_id=client, clock=clock, state=json.dumps(state))]
        )

    presence.apply("room", update(1, 3, {"name": "a"}))
    presence.apply("room", update(2, 1, {"name": "b"}))
    presence.apply("room", update(2, 2, None))  # b left
    presence.apply("room", update(1, 2, {"name": "stale"}))  # older clock: ignored
    everyone = presence.everyone("room")
    assert everyone is not None
    assert [
        (e.client_id, e.clock, json.loads(e.state)) for e in decode_awareness_update(everyone)
    ] == [(1, 3, {"name": "a"})]
    removal = presence.withdraw("room")
    assert removal is not None
    assert [(e.client_id, e.clock, e.state) for e in decode_awareness_update(removal)] == [
        (1, 4, "null")
    ]
    assert presence.everyone("room") is None
    assert presence.withdraw("room") is None


def test_local_presence_withdraws_a_clock_at_the_top_of_the_range() -> None:
    """Issue #20: clock + 1 past 2**53 - 1 raised in encode; the same clock is sent there."""
    presence = LocalPresence()
    top = 2**53 - 1
    presence.apply(
        "room", encode_awareness_update([AwarenessEntry(client_id=4242, clock=top, state="{}")])
    )
    removal = presence.withdraw("room")
    assert removal is not None
    assert decode_awareness_update(removal) == [
        AwarenessEntry(client_id=4242, clock=top, state="null")
    ]
