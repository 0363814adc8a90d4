"""Text (JSON) control frames: exact bytes out, tolerant-but-bounded parsing in."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from civicrealtime.protocol.control import (
    CONTROL_SUBPROTOCOL,
    MAX_CONTROL_FRAME_CHARS,
    ClientPing,
    ControlFramesMode,
    Negotiated,
    OtherControl,
    connection_ack,
    decode_control,
    error_frame,
    negotiate,
    notice_frame,
    pong_frame,
    session_revoked_frame,
)
from civicrealtime.protocol.errors import MalformedMessage


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (
            connection_ack("records:abc", "c-1"),
            '{"type":"control","event":"connection.ack","roomId":"records:abc","clientId":"c-1"}',
        ),
        (
            error_frame("ROOM_TYPE_NOT_REGISTERED", "unknown room type 'x'"),
            '{"type":"control","event":"error","error":'
            '{"code":"ROOM_TYPE_NOT_REGISTERED","message":"unknown room type \'x\'"}}',
        ),
        (pong_frame(1700000000123), '{"type":"pong","timestamp":1700000000123}'),
        (pong_frame(0), '{"type":"pong","timestamp":0}'),
        (
            notice_frame("warning", "read-only"),
            '{"type":"control","event":"notice","notice":{"level":"warning","message":"read-only"}}',
        ),
        (
            session_revoked_frame("logged out"),
            '{"type":"control","event":"session.revoked","reason":"logged out"}',
        ),
        # Non-ASCII stays as is (ensure_ascii=False); quotes and control characters escape.
        (
            session_revoked_frame('été "x"\n'),
            '{"type":"control","event":"session.revoked","reason":"été \\"x\\"\\n"}',
        ),
        (
            connection_ack("records:😀", ""),
            '{"type":"control","event":"connection.ack","roomId":"records:😀","clientId":""}',
        ),
    ],
)
def test_exact_text(frame: str, expected: str) -> None:
    assert frame == expected


@settings(max_examples=100)
@given(st.text(max_size=50), st.text(max_size=50))
def test_frames_are_compact_json_with_fixed_key_order(a: str, b: str) -> None:
    cases = [
        (connection_ack(a, b), ["type", "event", "roomId", "clientId"]),
        (error_frame(a, b), ["type", "event", "error"]),
        (notice_frame(a, b), ["type", "event", "notice"]),
        (session_revoked_frame(a), ["type", "event", "reason"]),
    ]
    for text, keys in cases:
        obj = json.loads(text)
        assert list(obj) == keys
        assert text == json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    assert json.loads(error_frame(a, b))["error"] == {"code": a, "message": b}
    assert list(json.loads(notice_frame(a, b))["notice"]) == ["level", "message"]
    assert json.loads(connection_ack(a, b))["roomId"] == a


@pytest.mark.parametrize(
    "text",
    [
        '{"type":"ping"}',
        '{"type": "ping", "timestamp": 123}',
        ' {"timestamp":1,"type":"ping"} ',
        '{"type":"ping","nested":{"a":[1,2,3]}}',
    ],
)
def test_ping(text: str) -> None:
    assert decode_control(text) == ClientPing()


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ('{"type":"pong"}', "pong"),
        ('{"type":"control","event":"x"}', "control"),
        ('{"type":""}', ""),
        ('{"type":"PING"}', "PING"),
        ('{"type":"été"}', "été"),
    ],
)
def test_other_types(text: str, kind: str) -> None:
    assert decode_control(text) == OtherControl(type=kind)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ping",
        "{",
        "{'type':'ping'}",
        '{"type":"ping"',
        "[" * 3000,  # deep nesting: a RecursionError in the parser, refused
    ],
    ids=lambda t: repr(t[:20]),
)
def test_not_json(text: str) -> None:
    with pytest.raises(MalformedMessage, match="not JSON"):
        decode_control(text)


@pytest.mark.parametrize(
    "text",
    [
        "null",
        "1",
        '"ping"',
        '["ping"]',
        '[{"type":"ping"}]',
        "{}",
        '{"kind":"ping"}',
        '{"type":null}',
        '{"type":1}',
        '{"type":["ping"]}',
        '{"type":{"ping":1}}',
    ],
)
def test_not_an_object_with_string_type(text: str) -> None:
    with pytest.raises(MalformedMessage, match='string "type"'):
        decode_control(text)


def test_deep_nesting_never_escapes() -> None:
    # Within the size limit but deeper than CPython 3.11's JSON parser recurses: refused
    # as malformed (a newer Python may parse it, and then it is a ping).
    text = '{"type":"ping","x":' + "[" * 2000 + "]" * 2000 + "}"
    assert len(text) <= MAX_CONTROL_FRAME_CHARS
    try:
        result = decode_control(text)
    except MalformedMessage as exc:
        assert "not JSON" in str(exc)
    else:
        assert result == ClientPing()


def test_size_limit() -> None:
    body = '{"type":"ping","pad":"'
    at_limit = body + "x" * (MAX_CONTROL_FRAME_CHARS - len(body) - 2) + '"}'
    assert len(at_limit) == MAX_CONTROL_FRAME_CHARS
    assert decode_control(at_limit) == ClientPing()
    over = body + "x" * (MAX_CONTROL_FRAME_CHARS - len(body) - 1) + '"}'
    assert len(over) == MAX_CONTROL_FRAME_CHARS + 1
    with pytest.raises(MalformedMessage, match="4097 characters"):
        decode_control(over)


def test_size_limit_is_checked_before_parsing() -> None:
    with pytest.raises(MalformedMessage, match="characters"):
        decode_control("[" * 1_000_000)


@settings(max_examples=300)
@given(st.text(max_size=200))
def test_arbitrary_text_only_raises_malformed(text: str) -> None:
    try:
        result = decode_control(text)
    except MalformedMessage:
        return
    assert isinstance(result, ClientPing | OtherControl)


@settings(max_examples=100)
@given(
    st.dictionaries(
        st.text(max_size=5), st.integers() | st.text(max_size=5) | st.none(), max_size=4
    ),
    st.text(max_size=10),
)
def test_any_object_with_string_type(extra: dict[str, object], kind: str) -> None:
    obj = {**extra, "type": kind}
    expected = ClientPing() if kind == "ping" else OtherControl(type=kind)
    assert decode_control(json.dumps(obj)) == expected


C = CONTROL_SUBPROTOCOL


@pytest.mark.parametrize(
    ("mode", "offered", "expected"),
    [
        # The default: only a client that offers the control subprotocol gets the frames,
        # and the 101 selects it so the client knows.
        ("opt-in", (), Negotiated(control_frames=False, subprotocol=None)),
        ("opt-in", ("auth.t",), Negotiated(control_frames=False, subprotocol="auth.t")),
        ("opt-in", ("auth.t", C), Negotiated(control_frames=True, subprotocol=C)),
        ("opt-in", (C,), Negotiated(control_frames=True, subprotocol=C)),
        ("opt-in", ("a", "b"), Negotiated(control_frames=False, subprotocol="a")),
        ("always", (), Negotiated(control_frames=True, subprotocol=None)),
        ("always", ("auth.t",), Negotiated(control_frames=True, subprotocol="auth.t")),
        ("always", ("auth.t", C), Negotiated(control_frames=True, subprotocol=C)),
        # never: the control entry is never selected, since the frames will not come.
        ("never", ("auth.t", C), Negotiated(control_frames=False, subprotocol="auth.t")),
        ("never", (C, "auth.t"), Negotiated(control_frames=False, subprotocol="auth.t")),
        ("never", (C,), Negotiated(control_frames=False, subprotocol=None)),
    ],
)
def test_negotiate(mode: ControlFramesMode, offered: tuple[str, ...], expected: Negotiated) -> None:
    assert negotiate(mode, offered) == expected


@settings(max_examples=200)
@given(
    st.sampled_from(["opt-in", "always", "never"]),
    st.lists(st.sampled_from([C, "auth.x", "other", "civicrealtime.control.v2"]), max_size=4),
)
def test_negotiate_selects_only_an_offered_entry(
    mode: ControlFramesMode, offered: list[str]
) -> None:
    result = negotiate(mode, offered)
    assert result.subprotocol is None or result.subprotocol in offered
    # The control entry is selected exactly when the connection gets the frames and asked.
    assert (result.subprotocol == C) == (result.control_frames and C in offered)
    others = [entry for entry in offered if entry != C]
    assert result.subprotocol is not None or not others
