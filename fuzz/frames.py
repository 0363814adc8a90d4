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


# -- awareness shapes (issue #20): what a hostile member can put in presence frames ---------

MAX_CLOCK = 2**53 - 1
# The victim's client id: a state the fuzzer's owner publishes, which nobody else may change.
VICTIM_ID = 111
_ids = st.one_of(st.sampled_from([VICTIM_ID, 1, 2, 3, 4, 5, 6, 7, 8]), st.integers(0, MAX_CLOCK))
_clocks = st.one_of(
    st.sampled_from([0, 1, 2, 3, MAX_CLOCK - 1, MAX_CLOCK]), st.integers(0, MAX_CLOCK)
)
_states = st.sampled_from(
    [
        "{}",
        "null",
        '{"user":{"name":"x","color":"#f00"}}',
        '{"blob":"' + "x" * 20_000 + '"}',  # over the 16 KiB state bound
        "[" + ",".join(["1"] * 7_000) + "]",  # 14 KB of dense JSON: costly to parse
        '{"blob":"' + "y" * 15_000 + '"}',  # just under the bound: fills a room fast
    ]
)


def _awareness(entries: list[tuple[int, int, str]]) -> bytes:
    return messages.encode_awareness(
        encode_awareness_update(
            AwarenessEntry(client_id=cid, clock=clock, state=state) for cid, clock, state in entries
        )
    )


awareness_entries = st.lists(st.tuples(_ids, _clocks, _states), min_size=1, max_size=12).map(
    _awareness
)
# A count far past any room's bound, in a frame under the fuzz server's message limit: it
# must be refused on its first var-uint (the 1,000,000 entries froze the loop).
huge_counts = st.integers(1_001, 1_500_000).map(
    lambda count: messages.encode_awareness(encode_var_uint(count) + b"\x01\x01\x02{}" * count)
)
# As many entries as a room may hold (an honest echo of the join frame is that large).
room_sized = st.builds(
    lambda count, clock, state: _awareness([(10_000 + i, clock, state) for i in range(count)]),
    st.sampled_from([8, 999, 1_000]),
    _clocks,
    st.sampled_from(['{"u":1}', "[" + ",".join(["1"] * 500) + "]", "null"]),
)
# Removals (and re-adds) of a few ids at rising clocks, many per frame.
removal_storms = st.builds(
    lambda ids, start, count: _awareness(
        [
            (ids[i % len(ids)], min(start + i, MAX_CLOCK), "null" if i % 3 else "{}")
            for i in range(count)
        ]
    ),
    st.lists(_ids, min_size=1, max_size=6),
    _clocks,
    st.integers(1, 1_000),
)
awareness_frames = st.one_of(awareness_entries, huge_counts, room_sized, removal_storms)
