"""lib0 variable-length integers, byte arrays and strings (the framing of y-protocols).

A var-uint stores 7 bits per byte, least significant group first, with the high bit set on
every byte but the last. lib0 refuses integers beyond JavaScript's safe range (2**53 - 1),
and so do we: a longer run of continuation bytes is hostile input, not a number.
"""

from __future__ import annotations

from .errors import MalformedMessage

MAX_SAFE_INTEGER = 2**53 - 1
# ceil(53 / 7): any var-uint longer than this cannot be a safe integer.
_MAX_VAR_UINT_BYTES = 8


def encode_var_uint(value: int) -> bytes:
    """Encode a non-negative integer as a lib0 var-uint."""
    if value < 0 or value > MAX_SAFE_INTEGER:
        raise ValueError(f"var-uint out of range: {value}")
    out = bytearray()
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_var_bytes(data: bytes) -> bytes:
    """Encode a byte string prefixed by its length (lib0 `writeVarUint8Array`)."""
    return encode_var_uint(len(data)) + data


def encode_var_string(text: str) -> bytes:
    """Encode a UTF-8 string prefixed by its byte length (lib0 `writeVarString`)."""
    return encode_var_bytes(text.encode("utf-8"))


class Reader:
    """A cursor over one binary frame. Every read raises `MalformedMessage` on bad input."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    @property
    def position(self) -> int:
        return self._pos

    def read_var_uint(self) -> int:
        data, pos = self._data, self._pos
        # Most var-uints in an update (counts, small clocks, content refs) fit one byte.
        if pos < len(data) and data[pos] < 0x80:
            self._pos = pos + 1
            return data[pos]
        result = 0
        shift = 0
        for count in range(_MAX_VAR_UINT_BYTES):
            if pos >= len(data):
                raise MalformedMessage("truncated var-uint")
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                if result > MAX_SAFE_INTEGER:
                    raise MalformedMessage("var-uint beyond the safe integer range")
                self._pos = pos
                return result
            shift += 7
            del count
        raise MalformedMessage("var-uint longer than 8 bytes")

    def read_var_bytes(self) -> bytes:
        length = self.read_var_uint()
        if length > self.remaining:
            raise MalformedMessage(
                f"length prefix {length} exceeds the {self.remaining} bytes left in the frame"
            )
        start = self._pos
        self._pos += length
        return self._data[start : self._pos]

    def read_bytes(self, length: int) -> bytes:
        """Exactly `length` raw bytes."""
        if length > self.remaining:
            raise MalformedMessage(f"needs {length} bytes, {self.remaining} left in the frame")
        start = self._pos
        self._pos += length
        return self._data[start : self._pos]

    def read_var_string(self) -> str:
        raw = self.read_var_bytes()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedMessage("string is not valid UTF-8") from exc
