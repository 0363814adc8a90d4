"""WebSocket framing of server messages (RFC 6455 §5.2), done once per broadcast.

A library that frames per connection builds a fan-out to 50 members 50 times. A server
frame carries no mask and, without negotiated extensions (we accept none), depends on
nothing per connection, so the room frames a broadcast once and every member's socket gets
the same bytes. The transport frames its control frames (ping, pong, close) here too.
"""

from __future__ import annotations

import struct

OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
_FIN = 0x80


def frame(payload: bytes, opcode: int) -> bytes:
    """One complete, unmasked server frame."""
    length = len(payload)
    if length < 126:
        header = bytes((_FIN | opcode, length))
    elif length < 1 << 16:
        header = struct.pack("!BBH", _FIN | opcode, 126, length)
    else:
        header = struct.pack("!BBQ", _FIN | opcode, 127, length)
    return header + payload


class WireFrame:
    """A binary message framed on first use, then shared by every connection that sends it."""

    __slots__ = ("_wire", "payload")

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self._wire: bytes | None = None

    @property
    def wire(self) -> bytes:
        if self._wire is None:
            self._wire = frame(self.payload, OPCODE_BINARY)
        return self._wire

    def __len__(self) -> int:
        return len(self.payload)


def wire_bytes(message: bytes | str | WireFrame) -> bytes:
    """The bytes to write for any outbound message."""
    if isinstance(message, WireFrame):
        return message.wire
    if isinstance(message, str):
        return frame(message.encode("utf-8"), OPCODE_TEXT)
    return frame(message, OPCODE_BINARY)


class WireRest(WireFrame):
    """The unsent end of a frame a direct write cut short (counted as its whole message)."""

    __slots__ = ()

    def __init__(self, payload: bytes, rest: bytes) -> None:
        self.payload = payload
        self._wire = rest
