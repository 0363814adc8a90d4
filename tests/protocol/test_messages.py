"""y-protocols binary frames: golden tables both ways, prefixes, hostile input, pycrdt parity."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import (
    Doc,
    Map,
    Text,
    YMessageType,
    YSyncMessageType,
    create_awareness_message,
    create_sync_message,
    create_update_message,
    handle_sync_message,
)
from pycrdt._sync import create_sync_step1_message, create_sync_step2_message

from civicrealtime.protocol.errors import MalformedMessage, RemoteProtocolError
from civicrealtime.protocol.messages import (
    AwarenessMessage,
    Message,
    MessageType,
    PermissionDenied,
    QueryAwareness,
    SyncStep1,
    SyncStep2,
    SyncType,
    SyncUpdate,
    decode,
    encode,
    encode_awareness,
    encode_sync_step1,
    encode_sync_step2,
    encode_sync_update,
)
from civicrealtime.protocol.varint import encode_var_uint

# A Yjs 13.6 document (clientID 12345, text "héllo", map {k: 1}) and its frames, produced
# with yjs + y-protocols 1.0.7 (`syncProtocol.writeSyncStep1` etc., behind y-websocket's
# leading message type).
JS_STATE_VECTOR = bytes.fromhex("01b96006")
JS_UPDATE = bytes.fromhex("0102b96000040101740668c3a96c6c6f2801016d016b017d0100")
JS_AWARENESS = bytes.fromhex(
    "01b96001267b2275736572223a7b226e616d65223a22416e61222c22636f6c6f72223a2223663030227d7d"
)

GOLDEN: list[tuple[Message, str]] = [
    (SyncStep1(state_vector=JS_STATE_VECTOR), "00" + "000401b96006"),
    (SyncStep2(update=JS_UPDATE), "00" + "011a" + JS_UPDATE.hex()),
    (SyncUpdate(update=JS_UPDATE), "00" + "021a" + JS_UPDATE.hex()),
    (AwarenessMessage(payload=JS_AWARENESS), "01" + "2b" + JS_AWARENESS.hex()),
    (PermissionDenied(reason="read-only é"), "02" + "000c726561642d6f6e6c7920c3a9"),
    (QueryAwareness(), "03"),
    # Small hand-checked cases.
    (SyncStep1(state_vector=b"\x00"), "00000100"),
    (SyncStep2(update=b"\x00\x00"), "0001020000"),
    (SyncUpdate(update=b""), "000200"),
    (AwarenessMessage(payload=b""), "0100"),
    (PermissionDenied(reason=""), "020000"),
    (SyncUpdate(update=b"\xaa" * 200), "0002c801" + "aa" * 200),
]
GOLDEN_IDS = [f"{type(m).__name__}-{i}" for i, (m, _) in enumerate(GOLDEN)]

messages = st.one_of(
    st.builds(SyncStep1, state_vector=st.binary(max_size=300)),
    st.builds(SyncStep2, update=st.binary(max_size=300)),
    st.builds(SyncUpdate, update=st.binary(max_size=300)),
    st.builds(AwarenessMessage, payload=st.binary(max_size=300)),
    st.builds(PermissionDenied, reason=st.text(max_size=100)),
    st.just(QueryAwareness()),
)


def test_wire_constants() -> None:
    assert [int(t) for t in MessageType] == [0, 1, 2, 3]
    assert [int(t) for t in SyncType] == [0, 1, 2]
    assert int(MessageType.SYNC) == int(YMessageType.SYNC)
    assert int(MessageType.AWARENESS) == int(YMessageType.AWARENESS)
    assert int(SyncType.STEP1) == int(YSyncMessageType.SYNC_STEP1)
    assert int(SyncType.STEP2) == int(YSyncMessageType.SYNC_STEP2)
    assert int(SyncType.UPDATE) == int(YSyncMessageType.SYNC_UPDATE)


@pytest.mark.parametrize(("message", "hex_"), GOLDEN, ids=GOLDEN_IDS)
def test_encode_golden(message: Message, hex_: str) -> None:
    assert encode(message) == bytes.fromhex(hex_)


@pytest.mark.parametrize(("message", "hex_"), GOLDEN, ids=GOLDEN_IDS)
def test_decode_golden(message: Message, hex_: str) -> None:
    decoded = decode(bytes.fromhex(hex_))
    assert decoded == message
    assert type(decoded) is type(message)


@pytest.mark.parametrize(("message", "hex_"), GOLDEN, ids=GOLDEN_IDS)
def test_every_proper_prefix_is_malformed(message: Message, hex_: str) -> None:
    # Every message but QUERY_AWARENESS ends with a length-prefixed field, so no proper
    # prefix of a frame is itself a complete frame; QUERY_AWARENESS's only proper prefix is
    # the empty frame.
    frame = bytes.fromhex(hex_)
    for cut in range(len(frame)):
        with pytest.raises(MalformedMessage):
            decode(frame[:cut])


@pytest.mark.parametrize(("message", "hex_"), GOLDEN, ids=GOLDEN_IDS)
def test_trailing_bytes_are_ignored(message: Message, hex_: str) -> None:
    # Documented: like y-protocols, bytes after a complete message are ignored.
    assert decode(bytes.fromhex(hex_) + b"\x00\xff\x03trailing") == message


def test_shorthand_encoders_match_encode() -> None:
    assert encode_sync_step1(b"sv") == encode(SyncStep1(state_vector=b"sv"))
    assert encode_sync_step2(b"u2") == encode(SyncStep2(update=b"u2"))
    assert encode_sync_update(b"u") == encode(SyncUpdate(update=b"u"))
    assert encode_awareness(b"aw") == encode(AwarenessMessage(payload=b"aw"))


@settings(max_examples=200)
@given(messages)
def test_round_trip(message: Message) -> None:
    frame = encode(message)
    assert decode(frame) == message


@settings(max_examples=100)
@given(messages)
def test_prefixes_of_random_frames_are_malformed(message: Message) -> None:
    frame = encode(message)
    for cut in range(len(frame)):
        with pytest.raises(MalformedMessage):
            decode(frame[:cut])


@settings(max_examples=100)
@given(messages, st.binary(max_size=20))
def test_round_trip_with_trailing_bytes(message: Message, tail: bytes) -> None:
    assert decode(encode(message) + tail) == message


def test_empty_frame() -> None:
    with pytest.raises(MalformedMessage, match="truncated"):
        decode(b"")


@pytest.mark.parametrize("kind", [4, 5, 127, 128, 300, 2**32, 2**53 - 1])
def test_unknown_message_type(kind: int) -> None:
    with pytest.raises(MalformedMessage, match=f"unknown message type {kind}"):
        decode(encode_var_uint(kind) + b"\x00\x00")


@pytest.mark.parametrize("sub", [3, 4, 127, 128, 2**40])
def test_unknown_sync_type(sub: int) -> None:
    frame = b"\x00" + encode_var_uint(sub) + b"\x02ab"
    with pytest.raises(MalformedMessage, match=f"unknown sync message type {sub}"):
        decode(frame)


def test_unknown_sync_type_checked_after_payload() -> None:
    # An unknown sub-type with a truncated payload is still only MalformedMessage.
    with pytest.raises(MalformedMessage):
        decode(b"\x00\x07\x05ab")


@pytest.mark.parametrize("sub", [1, 2, 128])
def test_unknown_auth_type(sub: int) -> None:
    with pytest.raises(MalformedMessage, match=f"unknown auth message type {sub}"):
        decode(b"\x02" + encode_var_uint(sub) + b"\x00")


def test_auth_reason_must_be_utf8() -> None:
    with pytest.raises(MalformedMessage, match="UTF-8"):
        decode(b"\x02\x00\x02\xc3\x28")


@pytest.mark.parametrize(
    "hex_",
    [
        "00",  # sync without sub-type
        "0000",  # step 1 without payload
        "000005abcd",  # payload shorter than its length prefix
        "0002ffffffffffffff0f",  # length prefix of 2**53-1
        "0002" + "80" * 9 + "01",  # over-long length prefix
        "01",  # awareness without payload
        "0105",
        "02",  # auth without sub-type
        "0200",  # auth without reason
        "0200056162",
        "80",  # truncated message type
        "80808080808080808001",  # over-long message type
    ],
)
def test_malformed_frames(hex_: str) -> None:
    with pytest.raises(MalformedMessage):
        decode(bytes.fromhex(hex_))


def test_malformed_is_a_remote_error() -> None:
    with pytest.raises(RemoteProtocolError):
        decode(b"\x09")


@settings(max_examples=500)
@given(st.binary(max_size=64))
def test_decode_arbitrary_bytes(frame: bytes) -> None:
    try:
        message = decode(frame)
    except MalformedMessage:
        return
    # Whatever decodes re-encodes to a prefix-compatible frame of the same meaning.
    assert decode(encode(message)) == message


@given(st.sampled_from([0, 1, 2, 3]), st.binary(max_size=64))
def test_decode_arbitrary_bodies(kind: int, body: bytes) -> None:
    try:
        message = decode(bytes([kind]) + body)
    except MalformedMessage:
        return
    assert isinstance(message, Message)


class NotAMessage(Message):
    pass


@pytest.mark.parametrize("value", [Message(), NotAMessage(), b"\x03", None])
def test_encode_rejects_non_messages(value: object) -> None:
    with pytest.raises(TypeError, match="not a protocol message"):
        encode(value)  # type: ignore[arg-type]


def test_messages_are_frozen() -> None:
    message = SyncUpdate(update=b"x")
    with pytest.raises(AttributeError):
        message.update = b"y"  # type: ignore[misc]


# --- parity with pycrdt's own encoders ---------------------------------------------------


def make_doc() -> Doc:
    doc = Doc(client_id=12345)
    doc["t"] = text = Text()
    doc["m"] = map_ = Map()
    text += "héllo"
    map_["k"] = 1
    return doc


def test_sync_step1_equals_pycrdt_create_sync_message() -> None:
    doc = make_doc()
    ours = encode(SyncStep1(state_vector=doc.get_state()))
    assert ours == create_sync_message(doc)
    assert decode(create_sync_message(doc)) == SyncStep1(state_vector=doc.get_state())


def test_sync_step2_and_update_equal_pycrdt() -> None:
    update = make_doc().get_update()
    assert encode(SyncStep2(update=update)) == create_sync_step2_message(update)
    assert encode(SyncUpdate(update=update)) == create_update_message(update)


def test_pycrdt_handles_our_frames() -> None:
    # pycrdt's handle_sync_message takes the frame without its leading message type.
    source = make_doc()
    target = Doc()
    frame = encode(SyncUpdate(update=source.get_update()))
    assert handle_sync_message(frame[1:], target) is None
    assert target.get_update() == source.get_update()

    # ... and replies to a step 1 with a complete step 2 frame.
    reply = handle_sync_message(encode(SyncStep1(state_vector=b"\x00"))[1:], source)
    assert reply is not None
    decoded = decode(reply)
    assert isinstance(decoded, SyncStep2)
    fresh = Doc()
    fresh.apply_update(decoded.update)
    assert fresh.get_state() == source.get_state()


@settings(max_examples=100)
@given(st.binary(max_size=300))
def test_payload_encoders_equal_pycrdt(payload: bytes) -> None:
    assert encode(SyncStep1(state_vector=payload)) == create_sync_step1_message(payload)
    assert encode(SyncStep2(update=payload)) == create_sync_step2_message(payload)
    assert encode(SyncUpdate(update=payload)) == create_update_message(payload)
    assert encode(AwarenessMessage(payload=payload)) == create_awareness_message(payload)
