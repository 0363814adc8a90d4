"""Hypothesis strategies for hostile y-websocket frames."""

from __future__ import annotations

from hypothesis import strategies as st
from pycrdt import Doc, Text

from civicrealtime.protocol import messages
from civicrealtime.protocol.awareness import AwarenessEntry, encode_awareness_update
from civicrealtime.protocol.varint import encode_var_uint


def _real_update(text: str) -> bytes:
    # A fixed client id keeps generation deterministic, so hypothesis can replay and shrink.
    doc = Doc(client_id=424242)
    doc.get("t", type=Text).insert(0, text)
    return doc.get_update()


valid_updates = st.text(min_size=1, max_size=20).map(_real_update)

valid_frames = st.one_of(
    valid_updates.map(messages.encode_sync_update),
    valid_updates.map(messages.encode_sync_step2),
    st.just(messages.encode_sync_step1(b"\x00")),
    st.builds(
        lambda cid, clock, name: messages.encode_awareness(
            encode_awareness_update(
                [AwarenessEntry(client_id=cid, clock=clock, state=f'{{"n":"{name}"}}')]
            )
        ),
        st.integers(1, 2**31),
        st.integers(1, 100),
        st.text(alphabet="abcdef", max_size=5),
    ),
    st.just(bytes([messages.MessageType.QUERY_AWARENESS])),
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    frame = bytearray(draw(valid_frames))
    for _ in range(draw(st.integers(1, 4))):
        if not frame:
            break
        index = draw(st.integers(0, len(frame) - 1))
        action = draw(st.sampled_from(["flip", "drop", "dup", "insert"]))
        if action == "flip":
            frame[index] ^= draw(st.integers(1, 255))
        elif action == "drop":
            del frame[index]
        elif action == "dup":
            frame.insert(index, frame[index])
        else:
            frame.insert(index, draw(st.integers(0, 255)))
    return bytes(frame)


truncated = valid_frames.flatmap(lambda f: st.integers(0, max(0, len(f) - 1)).map(lambda n: f[:n]))
huge_varuints = st.builds(
    lambda prefix, value: prefix + encode_var_uint(value),
    st.sampled_from([b"\x00\x02", b"\x00\x01", b"\x00\x00", b"\x01", b"\x00\x02\x05"]),
    st.integers(2**20, 2**53 - 1),
)
overlong = st.just(b"\x00\x02" + b"\xff" * 12)
wrong_types = st.builds(
    lambda kind, rest: encode_var_uint(kind) + rest, st.integers(4, 2**20), st.binary(max_size=8)
)
text_frames = st.one_of(
    st.text(max_size=50),
    st.just('{"type":"ping"}'),
    st.integers(1000, 5000).map(lambda n: "[" * n),
    st.just('{"type": 1}'),
)
# Past the fuzz server's 64 KiB message limit: the connection must be closed with 1009.
oversized = st.integers(66_000, 70_000).map(lambda n: b"\x00\x02" + b"\x80" * n)

hostile_frames = st.one_of(
    valid_frames,
    mutated(),
    truncated,
    huge_varuints,
    overlong,
    wrong_types,
    st.binary(max_size=64),
    text_frames,
    oversized,
)
