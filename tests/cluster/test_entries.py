"""Stream ids and entry fields (entries.py)."""

from __future__ import annotations

from civicrealtime.cluster.entries import (
    awareness_payload,
    format_id,
    parse_id,
    successor,
)
from civicrealtime.protocol.messages import encode_awareness, encode_sync_update


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
