"""The publish buffer (outbox.py): order, give-back, and what overflow does."""

from __future__ import annotations

import logging

import pytest
from pycrdt import Doc, Text

from civicrealtime.cluster.entries import (
    AWARENESS,
    DATA,
    KIND,
    UPDATE,
)
from civicrealtime.cluster.outbox import Outgoing, PublishBuffer


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
