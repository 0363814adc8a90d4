"""Frames built once per broadcast equal wsproto's."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import BytesMessage, TextMessage

from civicrealtime.protocol.wire import OPCODE_BINARY, WireFrame, frame, wire_bytes


def wsproto_server_frame(message: bytes | str) -> bytes:
    server = Connection(ConnectionType.SERVER)
    event = TextMessage(data=message) if isinstance(message, str) else BytesMessage(data=message)
    return server.send(event)


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_lengths_at_every_boundary(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert frame(payload, OPCODE_BINARY) == wsproto_server_frame(payload)


@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_same_bytes_as_wsproto(message: bytes | str) -> None:
    assert wire_bytes(message) == wsproto_server_frame(message)


def test_a_broadcast_is_framed_once() -> None:
    shared = WireFrame(b"\x00\x02\x01\x00")
    assert shared.wire is shared.wire
    assert shared.wire == wsproto_server_frame(b"\x00\x02\x01\x00")
