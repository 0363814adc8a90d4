"""FrameDecoder.receive: one frame in, one event out, never an exception."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from civicrealtime.protocol import (
    AwarenessEntry,
    AwarenessReceived,
    Event,
    FrameDecoder,
    Ignored,
    InvalidMessage,
    PingReceived,
    QueryAwarenessReceived,
    SyncStep1Received,
    UpdateReceived,
)
from civicrealtime.protocol.awareness import encode_awareness_update
from civicrealtime.protocol.messages import (
    AwarenessMessage,
    PermissionDenied,
    QueryAwareness,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    encode,
)
from civicrealtime.protocol.varint import encode_var_uint

JS_STATE_VECTOR = bytes.fromhex("01b96006")
JS_UPDATE = bytes.fromhex("0102b96000040101740668c3a96c6c6f2801016d016b017d0100")
AWARENESS = encode_awareness_update([AwarenessEntry(client_id=5, clock=2, state='{"user":"x"}')])


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (
            encode(SyncStep1(state_vector=JS_STATE_VECTOR)),
            SyncStep1Received(state_vector=JS_STATE_VECTOR),
        ),
        (encode(SyncStep1(state_vector=b"\x00")), SyncStep1Received(state_vector=b"\x00")),
        (encode(SyncStep2(update=JS_UPDATE)), UpdateReceived(update=JS_UPDATE, is_step2=True)),
        (encode(SyncUpdate(update=JS_UPDATE)), UpdateReceived(update=JS_UPDATE, is_step2=False)),
        (
            encode(SyncUpdate(update=b"\x00\x00")),
            UpdateReceived(update=b"\x00\x00", is_step2=False),
        ),
        (
            encode(AwarenessMessage(payload=AWARENESS)),
            AwarenessReceived(
                entries=(AwarenessEntry(client_id=5, clock=2, state='{"user":"x"}'),),
                frame=encode(AwarenessMessage(payload=AWARENESS)),
            ),
        ),
        (
            encode(AwarenessMessage(payload=b"\x00")),
            AwarenessReceived(entries=(), frame=b"\x01\x01\x00"),
        ),
        (encode(QueryAwareness()), QueryAwarenessReceived()),
        (encode(PermissionDenied(reason="no")), Ignored(what="auth message from a client")),
        ('{"type":"ping"}', PingReceived()),
        ('{"type":"ping","timestamp":1}', PingReceived()),
        ('{"type":"hello"}', Ignored(what="control frame of type 'hello'")),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Event) else None,
)
def test_receive(frame: bytes | str, expected: Event) -> None:
    session = FrameDecoder()
    assert session.receive(frame) == expected
    assert session.counts == {type(expected).__name__: 1}


def test_awareness_frame_is_kept_verbatim_with_trailing_bytes() -> None:
    frame = encode(AwarenessMessage(payload=AWARENESS)) + b"tail"
    event = FrameDecoder().receive(frame)
    assert isinstance(event, AwarenessReceived)
    assert event.frame == frame


def test_ignored_control_type_is_truncated() -> None:
    event = FrameDecoder().receive('{"type":"' + "x" * 100 + '"}')
    assert event == Ignored(what=f"control frame of type {'x' * 32!r}")


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"", "truncated"),
        (b"\x09", "unknown message type 9"),
        (b"\x00\x05\x00", "unknown sync message type 5"),
        (b"\x00\x00\x05ab", "exceeds"),
        (b"\x80" * 20, "longer than 8 bytes"),
        # Valid frames whose payloads fail their pre-checks.
        (encode(SyncStep1(state_vector=b"")), "state vector"),
        (encode(SyncStep1(state_vector=encode_var_uint(2**40) + b"\x01")), "state vector"),
        (encode(SyncUpdate(update=b"")), "update header"),
        (encode(SyncUpdate(update=encode_var_uint(2**32) + b"\x00\x00")), "claims"),
        (encode(SyncStep2(update=b"\x01" + encode_var_uint(2**30) + b"\x00")), "claims"),
        (encode(AwarenessMessage(payload=b"")), "truncated"),
        (encode(AwarenessMessage(payload=encode_var_uint(2**50))), "claims"),
        (encode(AwarenessMessage(payload=b"\x01\x01\x01\x01{")), "not JSON"),
        (encode(AwarenessMessage(payload=b"\x01\x01\x01\x03NaN")), "not JSON"),
        (encode(AwarenessMessage(payload=b"\x01\x01\x01\x02\xc3\x28")), "UTF-8"),
        (b"\x02\x01\x00", "unknown auth message type"),
        # Text frames.
        ("", "not JSON"),
        ("ping", "not JSON"),
        ("[1]", 'string "type"'),
        ('{"type":7}', 'string "type"'),
        ("[" * 3000, "not JSON"),
        ('{"type":"ping","pad":"' + "x" * 5000 + '"}', "characters"),
    ],
)
def test_malformed_frames_become_invalid_message(frame: bytes | str, reason: str) -> None:
    session = FrameDecoder()
    event = session.receive(frame)
    assert isinstance(event, InvalidMessage)
    assert reason in event.reason
    assert session.counts == {"InvalidMessage": 1}


def test_deeply_nested_awareness_state_is_contained() -> None:
    state = b"[" * 5000
    payload = b"\x01\x01\x01" + encode_var_uint(len(state)) + state
    event = FrameDecoder().receive(encode(AwarenessMessage(payload=payload)))
    assert isinstance(event, InvalidMessage)


def test_counts_accumulate() -> None:
    session = FrameDecoder()
    frames: list[bytes | str] = [
        encode(SyncStep1(state_vector=b"\x00")),
        encode(SyncUpdate(update=JS_UPDATE)),
        encode(SyncUpdate(update=JS_UPDATE)),
        b"\xff",
        '{"type":"ping"}',
        "nope",
        encode(QueryAwareness()),
    ]
    for frame in frames:
        session.receive(frame)
    assert session.counts == {
        "SyncStep1Received": 1,
        "UpdateReceived": 2,
        "InvalidMessage": 2,
        "PingReceived": 1,
        "QueryAwarenessReceived": 1,
    }
    assert sum(session.counts.values()) == len(frames)


def test_decoders_do_not_share_counts() -> None:
    a, b = FrameDecoder(), FrameDecoder()
    a.receive(b"\x03")
    assert b.counts == {}
    assert a.counts == {"QueryAwarenessReceived": 1}


@settings(max_examples=500)
@given(st.binary(max_size=100))
def test_arbitrary_bytes_never_raise(frame: bytes) -> None:
    session = FrameDecoder()
    event = session.receive(frame)
    assert isinstance(event, Event)
    assert sum(session.counts.values()) == 1


@given(st.sampled_from([b"\x00\x00", b"\x00\x01", b"\x00\x02", b"\x01", b"\x02\x00"]), st.binary())
def test_arbitrary_bodies_never_raise(head: bytes, body: bytes) -> None:
    assert isinstance(FrameDecoder().receive(head + body), Event)


@settings(max_examples=300)
@given(st.text(max_size=200))
def test_arbitrary_text_never_raises(text: str) -> None:
    event = FrameDecoder().receive(text)
    assert isinstance(event, PingReceived | Ignored | InvalidMessage)


@settings(max_examples=100)
@given(st.text(st.sampled_from('[]{}":,1 type ping'), max_size=300))
def test_json_ish_text_never_raises(text: str) -> None:
    event = FrameDecoder().receive(text)
    assert isinstance(event, PingReceived | Ignored | InvalidMessage)
