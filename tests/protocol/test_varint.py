"""lib0 var-uint / var-bytes / var-string framing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pycrdt import write_var_uint as pycrdt_write_var_uint

from civicrealtime.protocol.errors import MalformedMessage
from civicrealtime.protocol.varint import (
    MAX_SAFE_INTEGER,
    Reader,
    encode_var_bytes,
    encode_var_string,
    encode_var_uint,
)

# Produced by lib0's `encoding.writeVarUint` (yjs 13.6 / lib0, see tests/js).
VAR_UINT_GOLDEN = [
    (0, "00"),
    (1, "01"),
    (127, "7f"),
    (128, "8001"),
    (300, "ac02"),
    (16383, "ff7f"),
    (16384, "808001"),
    (2**32, "8080808010"),
    (2**53 - 1, "ffffffffffffff0f"),
]

safe_ints = st.integers(min_value=0, max_value=MAX_SAFE_INTEGER)


def read_one(data: bytes) -> tuple[int, int]:
    reader = Reader(data)
    value = reader.read_var_uint()
    return value, reader.position


def test_max_safe_integer_is_javascripts() -> None:
    assert MAX_SAFE_INTEGER == 9007199254740991


@pytest.mark.parametrize(("value", "hex_"), VAR_UINT_GOLDEN)
def test_encode_golden(value: int, hex_: str) -> None:
    assert encode_var_uint(value) == bytes.fromhex(hex_)


@pytest.mark.parametrize(("value", "hex_"), VAR_UINT_GOLDEN)
def test_decode_golden(value: int, hex_: str) -> None:
    data = bytes.fromhex(hex_)
    assert read_one(data) == (value, len(data))


@pytest.mark.parametrize(("value", "hex_"), VAR_UINT_GOLDEN)
def test_decode_golden_with_trailing_bytes(value: int, hex_: str) -> None:
    data = bytes.fromhex(hex_)
    reader = Reader(data + b"\x2a\xff")
    assert reader.read_var_uint() == value
    assert reader.position == len(data)
    assert reader.remaining == 2


@pytest.mark.parametrize(("value", "hex_"), VAR_UINT_GOLDEN)
def test_every_proper_prefix_is_truncated(value: int, hex_: str) -> None:
    data = bytes.fromhex(hex_)
    for cut in range(len(data)):
        with pytest.raises(MalformedMessage):
            Reader(data[:cut]).read_var_uint()


@given(safe_ints)
def test_round_trip(value: int) -> None:
    encoded = encode_var_uint(value)
    assert read_one(encoded) == (value, len(encoded))
    # Canonical: the last byte alone has the high bit clear, and no zero padding.
    assert all(b & 0x80 for b in encoded[:-1])
    assert encoded[-1] < 0x80
    assert len(encoded) == 1 or encoded[-1] != 0
    assert len(encoded) == max(1, -(-value.bit_length() // 7))


@given(safe_ints)
def test_same_bytes_as_pycrdt(value: int) -> None:
    assert encode_var_uint(value) == pycrdt_write_var_uint(value)


@pytest.mark.parametrize("value", [-1, -(2**60), MAX_SAFE_INTEGER + 1, 2**64])
def test_encode_rejects_out_of_range(value: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        encode_var_uint(value)


@given(st.integers(max_value=-1) | st.integers(min_value=MAX_SAFE_INTEGER + 1))
def test_encode_rejects_any_out_of_range(value: int) -> None:
    with pytest.raises(ValueError):
        encode_var_uint(value)


@pytest.mark.parametrize(
    "hex_",
    [
        "",
        "80",
        "ff",
        "8080",
        "ffffffffffffff",  # 7 continuation bytes, no terminator
    ],
)
def test_truncated(hex_: str) -> None:
    with pytest.raises(MalformedMessage, match="truncated"):
        Reader(bytes.fromhex(hex_)).read_var_uint()


@pytest.mark.parametrize("continuations", [8, 9, 10, 20, 1000])
def test_over_long_continuation_run(continuations: int) -> None:
    data = b"\x80" * continuations + b"\x01"
    with pytest.raises(MalformedMessage, match="longer than 8 bytes"):
        Reader(data).read_var_uint()


def test_over_long_without_terminator() -> None:
    # Eight continuation bytes are already too many, whether or not more data follows.
    with pytest.raises(MalformedMessage, match="longer than 8 bytes"):
        Reader(b"\xff" * 8).read_var_uint()


@pytest.mark.parametrize(
    "value", [MAX_SAFE_INTEGER + 1, 2**54, 2**56 - 1], ids=["2**53", "2**54", "2**56-1"]
)
def test_decode_rejects_beyond_safe_range(value: int) -> None:
    # Eight bytes hold 56 bits: encode by hand what encode_var_uint refuses to.
    out = bytearray()
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    assert len(out) == 8
    with pytest.raises(MalformedMessage, match="safe integer"):
        Reader(bytes(out)).read_var_uint()


def test_non_canonical_encoding_is_accepted_like_lib0() -> None:
    # lib0 does not insist on the shortest form; neither do we.
    assert read_one(b"\x80\x00") == (0, 2)
    assert read_one(b"\x81\x80\x00") == (1, 3)


def test_failed_read_does_not_advance() -> None:
    reader = Reader(b"\x05\x80")
    assert reader.read_var_uint() == 5
    with pytest.raises(MalformedMessage):
        reader.read_var_uint()
    assert reader.position == 1
    assert reader.remaining == 1


@given(st.binary(max_size=64))
def test_decode_arbitrary_bytes_only_raises_malformed(data: bytes) -> None:
    reader = Reader(data)
    try:
        value = reader.read_var_uint()
    except MalformedMessage:
        return
    assert 0 <= value <= MAX_SAFE_INTEGER
    assert 1 <= reader.position <= 8


# --- var-bytes and var-string ------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "hex_"),
    [
        (b"", "00"),
        (b"\x00", "0100"),
        (b"abc", "03616263"),
        (b"\xff" * 128, "8001" + "ff" * 128),
    ],
)
def test_var_bytes_golden(data: bytes, hex_: str) -> None:
    assert encode_var_bytes(data) == bytes.fromhex(hex_)
    reader = Reader(bytes.fromhex(hex_))
    assert reader.read_var_bytes() == data
    assert reader.remaining == 0


@given(st.binary(max_size=400), st.binary(max_size=8))
def test_var_bytes_round_trip(data: bytes, tail: bytes) -> None:
    reader = Reader(encode_var_bytes(data) + tail)
    assert reader.read_var_bytes() == data
    assert reader.remaining == len(tail)


@given(st.binary(min_size=1, max_size=300))
def test_var_bytes_truncated_payload(data: bytes) -> None:
    encoded = encode_var_bytes(data)
    with pytest.raises(MalformedMessage, match="exceeds"):
        Reader(encoded[:-1]).read_var_bytes()


def test_var_bytes_huge_length_prefix() -> None:
    with pytest.raises(MalformedMessage, match="exceeds"):
        Reader(encode_var_uint(MAX_SAFE_INTEGER) + b"abc").read_var_bytes()


@pytest.mark.parametrize(
    ("text", "hex_"),
    [
        ("", "00"),
        ("a", "0161"),
        ("é", "02c3a9"),
        ("read-only é", "0c726561642d6f6e6c7920c3a9"),
        ("😀", "04f09f9880"),
    ],
)
def test_var_string_golden(text: str, hex_: str) -> None:
    # The length prefix counts UTF-8 bytes, as lib0's writeVarString does.
    assert encode_var_string(text) == bytes.fromhex(hex_)
    assert Reader(bytes.fromhex(hex_)).read_var_string() == text


@given(st.text(max_size=200))
def test_var_string_round_trip(text: str) -> None:
    encoded = encode_var_string(text)
    reader = Reader(encoded)
    assert reader.read_var_string() == text
    assert reader.remaining == 0


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff",
        b"\xc3",  # truncated two-byte sequence
        b"\xc0\xaf",  # over-long encoding of '/'
        b"\xed\xa0\x80",  # UTF-16 surrogate
        b"\xf4\x90\x80\x80",  # beyond U+10FFFF
        b"ok\x80",
    ],
)
def test_var_string_invalid_utf8(raw: bytes) -> None:
    with pytest.raises(MalformedMessage, match="UTF-8"):
        Reader(encode_var_bytes(raw)).read_var_string()


def test_var_string_cannot_be_cut_mid_character() -> None:
    encoded = encode_var_string("é")
    # A length prefix of 1 cuts the two-byte character in half.
    with pytest.raises(MalformedMessage, match="UTF-8"):
        Reader(b"\x01" + encoded[1:]).read_var_string()
