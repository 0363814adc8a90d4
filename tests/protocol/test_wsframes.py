"""The client-frame reader (protocol/wsframes.py), with wsproto as its oracle: the same
messages for any chunking of what a real client sends, and the same close for what breaks
RFC 6455. No network."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from civicrealtime.protocol import wsframes
from civicrealtime.protocol.wsframes import ClientFrameReader, Close, Violation, unmask

MAX = 1 << 20


def client_bytes(events: list[object]) -> bytes:
    """What a wsproto client puts on the wire for `events` (masked, as clients must)."""
    client = Connection(ConnectionType.CLIENT)
    return b"".join(client.send(event) for event in events)  # type: ignore[arg-type]


def wsproto_reads(data: bytes, chunks: list[int]) -> tuple[list[object], list[object]]:
    """What wsproto's server side makes of `data` fed in `chunks`: messages, control."""
    server = Connection(ConnectionType.SERVER)
    messages: list[object] = []
    control: list[object] = []
    parts: list[bytes | str] = []
    for piece in split(data, chunks):
        server.receive_data(piece)
        for event in server.events():
            if isinstance(event, BytesMessage | TextMessage):
                parts.append(event.data if isinstance(event.data, str) else bytes(event.data))
                if event.message_finished:
                    messages.append(
                        "".join(parts) if isinstance(parts[0], str) else b"".join(parts)
                    )  # type: ignore[arg-type]
                    parts = []
            elif isinstance(event, Ping):
                control.append(("ping", bytes(event.payload)))
            elif isinstance(event, Pong):
                control.append(("pong", bytes(event.payload)))
            elif isinstance(event, CloseConnection):
                control.append(("close", event.code, event.reason or ""))
                return messages, control
    return messages, control


def our_reads(
    data: bytes, chunks: list[int], max_size: int = MAX
) -> tuple[list[object], list[object]]:
    reader = ClientFrameReader(max_size)
    messages: list[object] = []
    control: list[object] = []
    for piece in split(data, chunks):
        got, events = reader.feed(piece)
        messages += got
        for event in events:
            if isinstance(event, wsframes.Ping):
                control.append(("ping", event.payload))
            elif isinstance(event, wsframes.Pong):
                control.append(("pong", event.payload))
            elif isinstance(event, Close):
                control.append(("close", event.code, event.reason))
            else:
                assert isinstance(event, Violation)
                control.append(("close", event.code, "violation"))
    return messages, control


def split(data: bytes, chunks: list[int]) -> list[bytes]:
    pieces, pos = [], 0
    for size in chunks:
        if pos >= len(data):
            break
        pieces.append(data[pos : pos + size])
        pos += size
    if pos < len(data):
        pieces.append(data[pos:])
    return pieces


def fragments(message: bytes | str, cuts: list[int]) -> list[object]:
    """`message` as a text or binary message cut into frames at `cuts`."""
    kind = TextMessage if isinstance(message, str) else BytesMessage
    points = sorted({c % (len(message) + 1) for c in cuts})
    pieces, last = [], 0
    for point in [*points, len(message)]:
        pieces.append(message[last:point])
        last = point
    return [
        kind(data=piece, message_finished=i == len(pieces) - 1)  # type: ignore[arg-type]
        for i, piece in enumerate(pieces)
    ]


payloads = st.one_of(st.binary(max_size=70_000), st.text(max_size=300))
client_events = st.lists(
    st.one_of(
        st.tuples(payloads, st.lists(st.integers(0, 70_000), max_size=3)).map(
            lambda pc: fragments(*pc)
        ),
        st.binary(max_size=125).map(lambda p: [Ping(payload=p)]),
        st.binary(max_size=125).map(lambda p: [Pong(payload=p)]),
    ),
    max_size=8,
).map(lambda groups: [event for group in groups for event in group])


@settings(max_examples=300, deadline=None)
@given(client_events, st.lists(st.integers(1, 5000), max_size=40))
def test_any_chunking_of_a_real_clients_frames_reads_as_wsproto_reads_it(
    events: list[object], chunks: list[int]
) -> None:
    data = client_bytes(events)
    assert our_reads(data, chunks) == wsproto_reads(data, [len(data) or 1])


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=200), st.lists(st.integers(1, 50), max_size=10))
def test_arbitrary_bytes_never_raise_and_a_violation_is_wsprotos_close(
    garbage: bytes, chunks: list[int]
) -> None:
    """Valid frames, then anything: our reader refuses only what wsproto refuses, with
    the same code, and never raises. (A close code of 1014, Bad Gateway in IANA's
    registry, wsproto refuses and we accept.)"""
    data = client_bytes([BytesMessage(data=b"ok")]) + garbage
    messages, control = our_reads(data, chunks)
    assert messages[:1] == [b"ok"]
    theirs_messages, theirs_control = wsproto_reads(data, [len(data)])
    assert messages == theirs_messages[: len(messages)]
    violations = [c for c in control if c[0] == "close" and c[2] == "violation"]
    if violations and theirs_control and theirs_control[-1][0] == "close":
        assert theirs_control[-1][1] == violations[0][1]
    elif violations:
        # We refuse a frame as soon as its first bytes break a rule; wsproto may still be
        # waiting for the rest of its header. It has then delivered nothing more either.
        assert theirs_messages == messages


def masked(first: int, payload: bytes, *, length_bytes: bytes | None = None) -> bytes:
    """A hand-made client frame: first byte as given, masked with a zero key."""
    if length_bytes is None:
        length_bytes = bytes([0x80 | len(payload)])
    return bytes([first]) + length_bytes + b"\x00\x00\x00\x00" + payload


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\x82\x02ok", 1002),  # unmasked
        (masked(0xC2, b"x"), 1002),  # RSV1 without an extension
        (masked(0x83, b"x"), 1002),  # reserved opcode
        (masked(0x09, b"x"), 1002),  # fragmented ping
        (masked(0x89, b"x" * 126, length_bytes=b"\xfe\x00\x7e"), 1002),  # ping over 125
        (masked(0x82, b"x", length_bytes=b"\xfe\x00\x01"), 1002),  # not the shortest length
        (masked(0x80, b"x"), 1002),  # continuation outside a message
        (masked(0x02, b"a") + masked(0x82, b"b"), 1002),  # new message inside a fragmented one
        (masked(0x81, b"\xff"), 1007),  # text not UTF-8
        (masked(0x01, b"\xe2\x82") + masked(0x80, b"\x28"), 1007),  # broken across fragments
        (masked(0x88, b"\x03"), 1002),  # close of one byte
        (masked(0x88, struct.pack("!H", 1006)), 1002),  # local-only code
        (masked(0x88, struct.pack("!H", 999)), 1002),
        (masked(0x88, struct.pack("!H", 2000)), 1002),  # reserved, undefined
        (masked(0x88, struct.pack("!H", 1000) + b"\xff"), 1007),  # reason not UTF-8
    ],
)
def test_what_rfc_6455_forbids_is_a_violation(data: bytes, code: int) -> None:
    _, events = ClientFrameReader(MAX).feed(data)
    assert events and isinstance(events[-1], Violation)
    assert events[-1].code == code
    assert wsproto_reads(data, [len(data)])[1][-1][1] == code


def test_a_close_frame_ends_reading() -> None:
    reader = ClientFrameReader(MAX)
    data = client_bytes([BytesMessage(data=b"a"), CloseConnection(code=4000, reason="é")])
    messages, events = reader.feed(data + client_bytes([BytesMessage(data=b"after")]))
    assert messages == [b"a"]
    assert events == [Close(4000, "é")]
    assert reader.ended
    assert reader.feed(b"anything") == ([], [])
    empty = ClientFrameReader(MAX)
    assert empty.feed(masked(0x88, b""))[1] == [Close(wsframes.NO_STATUS, "")]


def test_a_message_over_the_limit_is_refused_from_its_header() -> None:
    """The payload is never waited for, nor held: the header is enough."""
    reader = ClientFrameReader(1000)
    header = masked(0x82, b"", length_bytes=b"\xff" + struct.pack("!Q", 1 << 40))
    _, events = reader.feed(header)
    assert events == [Violation(1009, "a message over 1000 bytes")]
    # Fragments count together.
    reader = ClientFrameReader(1000)
    data = client_bytes(fragments(b"x" * 1200, [600]))
    messages, events = reader.feed(data)
    assert messages == [] and [e.code for e in events if isinstance(e, Violation)] == [1009]


def test_a_large_message_in_small_reads_is_held_once() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    data = client_bytes([BytesMessage(data=payload)])
    reader = ClientFrameReader(2 << 20)
    got: list[bytes | str] = []
    for start in range(0, len(data), 16384):
        messages, events = reader.feed(data[start : start + 16384])
        assert events == []
        got += messages
    assert got == [payload]


def test_unmask_is_xor_with_the_repeated_key() -> None:
    key = b"\x01\x02\x03\x04"
    payload = bytes(range(11))
    expected = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    assert unmask(payload, key) == expected
    assert unmask(b"", key) == b""
