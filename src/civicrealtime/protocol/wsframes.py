"""Sans-IO reader of the frames a WebSocket client sends a server (RFC 6455 §5), after the
upgrade: bytes in, whole messages and control events out.

Why our own rather than wsproto's: for the small frames editors send (a keystroke is a
30-byte update) wsproto's general parser costs about 7.5 µs per frame, with a generator,
several objects and an extension hook per frame; this one costs under 1 µs
(docs/benchmarks.md). wsproto still does the opening handshake (transport/websocket.py),
and is the oracle of this module's tests (tests/protocol/test_wsframes.py): the same
messages for any chunking of valid input, a close for invalid input.

What it enforces, as a server must: every frame masked; no reserved bits (we negotiate no
extension); known opcodes; control frames whole and at most 125 bytes; the shortest length
encoding; continuation only inside a fragmented message; text in UTF-8, also across
fragments; close frames with a valid code and a UTF-8 reason; and `max_message_size` for a
message's fragments together, checked from each frame's header, before its payload is held.
The first violation ends the stream: `Violation`, then nothing more.

Cost per read is bounded by the read: a data frame longer than what arrived is unmasked
piece by piece as it comes, never all at once when its last byte arrives.
"""

from __future__ import annotations

import codecs
import struct

import attrs

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
_DATA_OPCODES = frozenset({OP_CONTINUATION, OP_TEXT, OP_BINARY})
_CONTROL_OPCODES = frozenset({OP_CLOSE, OP_PING, OP_PONG})

PROTOCOL_ERROR = 1002
NO_STATUS = 1005  # a close frame without a code, as RFC 6455 §7.1.5 reports it
INVALID_PAYLOAD = 1007
MESSAGE_TOO_BIG = 1009
# Codes a peer may not send: reserved (1004), or only ever reported locally.
_LOCAL_ONLY = frozenset({1004, 1005, 1006, 1015})
# 1000-2999 are the protocol's; of those only the defined ones may be sent.
_DEFINED = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


@attrs.frozen(slots=True)
class Ping:
    payload: bytes


@attrs.frozen(slots=True)
class Pong:
    payload: bytes


@attrs.frozen(slots=True)
class Close:
    """The peer's close frame: its code (1005 when it carried none) and reason."""

    code: int
    reason: str


@attrs.frozen(slots=True)
class Violation:
    """The input broke the protocol; the connection must close with `code`."""

    code: int
    detail: str


FrameEvent = Ping | Pong | Close | Violation


@attrs.define(slots=True)
class _Partial:
    """A data frame read in pieces: its header, and its payload unmasked so far."""

    opcode: int
    fin: bool
    mask: bytes
    left: int  # payload bytes still to come
    done: int = 0
    parts: list[bytes] = attrs.Factory(list)


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR `payload` with the 4-byte `mask` repeated (one big-integer operation)."""
    length = len(payload)
    if not length:
        return b""
    key = (mask * (length // 4 + 1))[:length]
    value = int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")
    return value.to_bytes(length, "little")


class ClientFrameReader:
    """Feed it what the socket gives; it returns the complete messages and the events.

    `feed` returns `(messages, events)`: the messages (bytes for binary, str for text) whole
    and in order, and the control events (`Ping`, `Pong`, `Close`, `Violation`) in order.
    A message completed before a control frame is listed before it in time; callers that
    need the interleaving handle one read at a time, as a server does (a ping's answer
    and the messages around it are independent).
    """

    __slots__ = (
        "_buffer",
        "_decoder",
        "_ended",
        "_max_message_size",
        "_opcode",
        "_partial",
        "_parts",
        "_size",
    )

    def __init__(self, max_message_size: int) -> None:
        self._max_message_size = max_message_size
        # What a read left of an incomplete frame. Appended to in place: a large frame
        # arriving in many reads is copied once, not once per read.
        self._buffer = bytearray()
        # The fragmented message in progress: its opcode, parts and size so far.
        self._opcode: int | None = None
        self._parts: list[bytes] = []
        self._size = 0
        self._decoder: codecs.IncrementalDecoder | None = None
        self._ended = False
        # A data frame whose payload is still arriving.
        self._partial: _Partial | None = None

    @property
    def ended(self) -> bool:
        """A close frame or a violation was read: nothing after it is parsed."""
        return self._ended

    def feed(self, data: bytes) -> tuple[list[bytes | str], list[FrameEvent]]:
        messages: list[bytes | str] = []
        events: list[FrameEvent] = []
        if self._ended:
            return messages, events
        held = self._buffer
        buffer: bytes | bytearray
        if held:
            held += data
            buffer = held
        else:
            buffer = data  # the common case: parsed where it lies
        pos = 0
        end = len(buffer)
        while True:
            if self._partial is not None:
                pos = self._continue_partial(buffer, pos, end, messages, events)
                if self._partial is not None or self._ended:
                    break
                continue
            if end - pos < 2:
                break
            first, second = buffer[pos], buffer[pos + 1]
            opcode = first & 0x0F
            length = second & 0x7F
            header = 2
            if first & 0x70:
                events.append(self._violate(PROTOCOL_ERROR, "reserved bits set (no extension)"))
                break
            if not second & 0x80:
                events.append(self._violate(PROTOCOL_ERROR, "an unmasked frame from a client"))
                break
            control = opcode in _CONTROL_OPCODES
            if not control and opcode not in _DATA_OPCODES:
                events.append(self._violate(PROTOCOL_ERROR, f"unknown opcode {opcode:#x}"))
                break
            if control and (length > 125 or not first & 0x80):
                events.append(
                    self._violate(PROTOCOL_ERROR, "a control frame fragmented or over 125 bytes")
                )
                break
            if length == 126:
                if end - pos < 4:
                    break
                (length,) = struct.unpack_from("!H", buffer, pos + 2)
                header = 4
                if length < 126:
                    events.append(self._violate(PROTOCOL_ERROR, "a length not in shortest form"))
                    break
            elif length == 127:
                if end - pos < 10:
                    break
                (length,) = struct.unpack_from("!Q", buffer, pos + 2)
                header = 10
                if length < 1 << 16 or length >> 63:
                    events.append(self._violate(PROTOCOL_ERROR, "a length not in shortest form"))
                    break
            if not control and self._size + length > self._max_message_size:
                # Refused from the header: the payload is never held.
                events.append(
                    self._violate(MESSAGE_TOO_BIG, f"a message over {self._max_message_size} bytes")
                )
                break
            start = pos + header + 4
            if start > end:
                break
            mask = bytes(buffer[pos + header : start])
            if end - start < length:
                if control:
                    break  # at most 125 bytes: waited for whole
                # A data frame larger than what arrived: unmasked as it comes, so that no
                # read costs more than its own bytes (a 10 MiB frame, unmasked at its end,
                # would hold the loop for tens of milliseconds).
                self._partial = _Partial(opcode, bool(first & 0x80), mask, length)
                pos = start
                continue
            payload = unmask(bytes(buffer[start : start + length]), mask)
            pos = start + length
            if control:
                event = self._control(opcode, payload)
                events.append(event)
                if isinstance(event, Close | Violation):
                    break
                continue
            message = self._data(opcode, payload, bool(first & 0x80))
            if isinstance(message, Violation):
                events.append(message)
                break
            if message is not None:
                messages.append(message)
        if self._ended:
            self._buffer = bytearray()
        elif buffer is held:
            del held[:pos]
        elif pos < end:
            self._buffer = bytearray(buffer[pos:])
        return messages, events

    def _continue_partial(
        self,
        buffer: bytes | bytearray,
        pos: int,
        end: int,
        messages: list[bytes | str],
        events: list[FrameEvent],
    ) -> int:
        """Take what arrived of the frame in progress; finish it when it is whole."""
        partial = self._partial
        assert partial is not None
        take = min(partial.left, end - pos)
        if take:
            phase = partial.done % 4
            key = partial.mask[phase:] + partial.mask[:phase]
            partial.parts.append(unmask(bytes(buffer[pos : pos + take]), key))
            partial.done += take
            partial.left -= take
            pos += take
        if partial.left:
            return pos
        self._partial = None
        message = self._data(partial.opcode, b"".join(partial.parts), partial.fin)
        if isinstance(message, Violation):
            events.append(message)
        elif message is not None:
            messages.append(message)
        return pos

    def _data(self, opcode: int, payload: bytes, fin: bool) -> bytes | str | Violation | None:
        if opcode == OP_CONTINUATION:
            if self._opcode is None:
                return self._violate(PROTOCOL_ERROR, "a continuation outside a message")
            opcode = self._opcode
        elif self._opcode is not None:
            return self._violate(PROTOCOL_ERROR, "a new message inside a fragmented one")
        if fin and self._opcode is None:
            # The common case: a whole message in one frame.
            if opcode == OP_BINARY:
                return payload
            try:
                return payload.decode("utf-8")
            except UnicodeDecodeError:
                return self._violate(INVALID_PAYLOAD, "text that is not UTF-8")
        if self._opcode is None:
            self._opcode = opcode
            if opcode == OP_TEXT:
                self._decoder = codecs.getincrementaldecoder("utf-8")()
        if self._decoder is not None:
            try:
                # Checked part by part: invalid text is refused as soon as it is seen.
                self._decoder.decode(payload, fin)
            except UnicodeDecodeError:
                return self._violate(INVALID_PAYLOAD, "text that is not UTF-8")
        self._parts.append(payload)
        self._size += len(payload)
        if not fin:
            return None
        whole = b"".join(self._parts)
        text = self._opcode == OP_TEXT
        self._opcode, self._parts, self._size, self._decoder = None, [], 0, None
        return whole.decode("utf-8") if text else whole

    def _control(self, opcode: int, payload: bytes) -> FrameEvent:
        if opcode == OP_PING:
            return Ping(payload)
        if opcode == OP_PONG:
            return Pong(payload)
        if not payload:
            self._ended = True
            return Close(NO_STATUS, "")
        if len(payload) == 1:
            return self._violate(PROTOCOL_ERROR, "a close frame of one byte")
        (code,) = struct.unpack_from("!H", payload)
        if not (
            (1000 <= code <= 2999 and code in _DEFINED and code not in _LOCAL_ONLY)
            or 3000 <= code <= 4999
        ):
            return self._violate(PROTOCOL_ERROR, f"a close code a peer may not send ({code})")
        try:
            reason = payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            return self._violate(INVALID_PAYLOAD, "a close reason that is not UTF-8")
        self._ended = True
        return Close(code, reason)

    def _violate(self, code: int, detail: str) -> Violation:
        self._ended = True
        self._parts = []
        self._partial = None
        return Violation(code, detail)
