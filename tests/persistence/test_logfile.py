from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from civicrealtime.persistence.logfile import HEADER_SIZE, encode_record, encode_room, parse


def log_of(*updates: bytes) -> bytes:
    return encode_room("room", 1) + b"".join(
        encode_record(seq, 100 + seq, data) for seq, data in enumerate(updates, start=1)
    )


def test_parses_what_it_writes() -> None:
    parsed = parse(log_of(b"a", b"", b"ccc"), "fallback")
    assert parsed.room_id == "room"
    assert [(r.seq, r.data) for r in parsed.records] == [(1, b"a"), (2, b""), (3, b"ccc")]
    assert parsed.bad == () and parsed.last_seq == 3 and parsed.newest == 103


def test_corrupt_middle_record_is_skipped_and_the_rest_is_read() -> None:
    buf = bytearray(log_of(b"first", b"second", b"third"))
    buf[buf.find(b"second") + 2] ^= 0x01
    parsed = parse(bytes(buf), "room")
    assert [r.data for r in parsed.records] == [b"first", b"third"]
    assert [span.seq for span in parsed.bad] == [2]


def test_damaged_header_resyncs_at_the_next_record() -> None:
    buf = bytearray(log_of(b"first", b"second", b"third"))
    buf[buf.find(b"second") - HEADER_SIZE + 5] ^= 0xFF  # inside the length field
    parsed = parse(bytes(buf), "room")
    assert [r.data for r in parsed.records] == [b"first", b"third"]
    assert "bad record header" in parsed.bad[0].reason


@given(
    updates=st.lists(st.binary(min_size=1, max_size=64), min_size=1, max_size=8),
    cut=st.integers(min_value=1),
)
def test_any_torn_tail_loses_only_the_last_record(updates: list[bytes], cut: int) -> None:
    buf = log_of(*updates)
    last = encode_record(len(updates), 100 + len(updates), updates[-1])
    torn = buf[: len(buf) - 1 - cut % (len(last) - 1)]
    parsed = parse(torn, "room")
    assert [r.data for r in parsed.records] == updates[:-1]
    assert len(parsed.bad) == 1 and "torn" in parsed.bad[0].reason
