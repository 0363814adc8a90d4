"""A reader of Yjs v1 updates down to their structs, and the split points they imply.

Why this exists: yrs (pycrdt 0.14) splits a string item at a UTF-16 offset by keeping the
whole character on the left when the offset falls between the two halves of a surrogate
pair, so the right part is empty and lengths stop matching clocks (y-crdt/y-crdt#399).
Yjs replaces each lone half with U+FFFD instead. Which offsets an update makes the receiver
split at can be read from the update alone: after each item's origin, at each item's right
origin, and at both ends of each deleted range. `document.py` uses these to contain the
split before yrs sees it.

The layout (lib0 encoding, Yjs `UpdateDecoderV1`): a count of clients, then per client a
count of structs, the client id and the first clock, then the structs; then the delete set.
A struct starts with an info byte: its low five bits name the content (0 GC, 10 Skip, else an
Item's content ref), bit 8 says an origin follows, bit 7 a right origin, bit 6 a parent sub
key. An item with neither origin carries its parent (a root name or an item id).

Sans-IO and pure: no pycrdt, no trio. Every malformed input raises `MalformedMessage`.
"""

from __future__ import annotations

import attrs

from .errors import MalformedMessage
from .varint import Reader

_BIT8 = 0x80  # origin present
_BIT7 = 0x40  # right origin present
_BIT6 = 0x20  # parent sub present
_CONTENT = 0x1F

GC = 0
DELETED = 1
JSON = 2
BINARY = 3
STRING = 4
EMBED = 5
FORMAT = 6
TYPE = 7
ANY = 8
DOC = 9
SKIP = 10

# Type refs whose ContentType carries a name (YXmlElement's node name, YXmlHook's hook name).
_NAMED_TYPE_REFS = frozenset({3, 5})
# lib0 `readAny` nests objects and arrays; deeper than this is hostile, not a document.
_MAX_ANY_DEPTH = 64


@attrs.frozen(slots=True, kw_only=True)
class StringItem:
    """A string item of an update: who wrote it, its first clock, and where its bytes are."""

    client: int
    clock: int
    text: str
    start: int  # offset of the var-string (length prefix included) in the update
    end: int  # offset just past its last byte

    def pair_clocks(self) -> list[int]:
        """The clocks of the low halves of the surrogate pairs in this item.

        A split *at* one of those clocks separates a pair: that is the case to contain.
        """
        clocks: list[int] = []
        if self.text.isascii():
            return clocks
        offset = self.clock
        for char in self.text:
            if ord(char) > 0xFFFF:
                clocks.append(offset + 1)
                offset += 2
            else:
                offset += 1
        return clocks


@attrs.frozen(slots=True, kw_only=True)
class UpdateLayout:
    """What the containment needs from one update."""

    strings: tuple[StringItem, ...]
    # (client, clock): the receiver splits so that `clock` starts an item of `client`.
    split_points: frozenset[tuple[int, int]]
    # {client: clock past the last struct or deleted range}: the state a document needs
    # for all of the update to be integrated (anything beyond waits, pending).
    reach: dict[int, int]
    # {client: (first clock, clock past the last struct)} of the structs carried.
    structs: dict[int, tuple[int, int]]
    # {client: clock past the last id referenced} by origins, right origins and parents.
    needs: dict[int, int]
    has_skip: bool


def utf16_length(text: str) -> int:
    """The length of `text` in UTF-16 code units, the unit of Yjs clocks."""
    if text.isascii():
        return len(text)
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


class _Found:
    """What the struct readers collect while walking one update."""

    __slots__ = ("needs", "points", "strings")

    def __init__(self) -> None:
        self.strings: list[StringItem] = []
        self.points: set[tuple[int, int]] = set()
        self.needs: dict[int, int] = {}


def read_layout(update: bytes) -> UpdateLayout:
    """Decode a v1 update's structs and delete set; raise `MalformedMessage` if malformed."""
    reader = Reader(update)
    found = _Found()
    reach: dict[int, int] = {}
    spans: dict[int, tuple[int, int]] = {}
    has_skip = False
    clients = reader.read_var_uint()
    if clients > len(update):
        raise MalformedMessage(f"update claims {clients} clients in {len(update)} bytes")
    for _ in range(clients):
        structs = reader.read_var_uint()
        if structs > reader.remaining:
            raise MalformedMessage(f"update claims {structs} structs past its end")
        client = reader.read_var_uint()
        clock = first = reader.read_var_uint()
        for _ in range(structs):
            length = _read_struct(reader, client, clock, found)
            if length < 0:
                clock -= length  # a Skip: clocks this update does not carry
                has_skip = True
            else:
                clock += length
                reach[client] = max(reach.get(client, 0), clock)
        spans[client] = (min(first, spans.get(client, (first, 0))[0]), clock)
    _read_delete_set(reader, found.points, reach)
    return UpdateLayout(
        strings=tuple(found.strings),
        split_points=frozenset(found.points),
        reach=reach,
        structs=spans,
        needs=found.needs,
        has_skip=has_skip,
    )


def _read_struct(
    reader: Reader,
    client: int,
    clock: int,
    found: _Found,
) -> int:
    """Read one struct; return its length in clocks (negated for a Skip)."""
    points, needs = found.points, found.needs
    info = _read_byte(reader)
    ref = info & _CONTENT
    if ref == GC:
        return reader.read_var_uint()
    if ref == SKIP:
        return -reader.read_var_uint()
    if info & _BIT8:
        origin_client = reader.read_var_uint()
        past = reader.read_var_uint() + 1
        points.add((origin_client, past))
        needs[origin_client] = max(needs.get(origin_client, 0), past)
    if info & _BIT7:
        right_client = reader.read_var_uint()
        right = reader.read_var_uint()
        points.add((right_client, right))
        needs[right_client] = max(needs.get(right_client, 0), right + 1)
    if not info & (_BIT8 | _BIT7):
        if reader.read_var_uint() == 1:
            reader.read_var_bytes()  # a root type's name
        else:
            parent_client = reader.read_var_uint()  # the parent item's id
            past = reader.read_var_uint() + 1
            needs[parent_client] = max(needs.get(parent_client, 0), past)
        if info & _BIT6:
            reader.read_var_bytes()
    return _read_content(reader, ref, client, clock, found.strings)


def _read_content(
    reader: Reader, ref: int, client: int, clock: int, strings: list[StringItem]
) -> int:
    if ref == STRING:
        start = reader.position
        text = _decode_utf8(reader.read_var_bytes())
        strings.append(
            StringItem(client=client, clock=clock, text=text, start=start, end=reader.position)
        )
        return utf16_length(text)
    if ref == DELETED:
        return reader.read_var_uint()
    if ref == JSON:
        count = reader.read_var_uint()
        for _ in range(count):
            reader.read_var_bytes()
        return count
    if ref in (BINARY, EMBED):
        reader.read_var_bytes()
        return 1
    if ref == FORMAT:
        reader.read_var_bytes()
        reader.read_var_bytes()
        return 1
    if ref == TYPE:
        if reader.read_var_uint() in _NAMED_TYPE_REFS:
            reader.read_var_bytes()
        return 1
    if ref == ANY:
        count = reader.read_var_uint()
        for _ in range(count):
            _skip_any(reader, 0)
        return count
    if ref == DOC:
        reader.read_var_bytes()
        _skip_any(reader, 0)
        return 1
    raise MalformedMessage(f"unknown content ref {ref} at byte {reader.position}")


def _read_delete_set(reader: Reader, points: set[tuple[int, int]], reach: dict[int, int]) -> None:
    clients = reader.read_var_uint()
    if clients > reader.remaining:
        raise MalformedMessage(f"delete set claims {clients} clients past the end")
    for _ in range(clients):
        client = reader.read_var_uint()
        ranges = reader.read_var_uint()
        if ranges > reader.remaining:
            raise MalformedMessage(f"delete set claims {ranges} ranges past the end")
        for _ in range(ranges):
            clock = reader.read_var_uint()
            length = reader.read_var_uint()
            points.add((client, clock))
            points.add((client, clock + length))
            reach[client] = max(reach.get(client, 0), clock + length)


def _read_byte(reader: Reader) -> int:
    data = reader.read_bytes(1)
    return data[0]


def _decode_utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedMessage(f"string content is not UTF-8: {exc.reason}") from exc


def _skip_any(reader: Reader, depth: int) -> None:
    """Skip one lib0 `any` value (the tag is 127 minus the type's number)."""
    if depth > _MAX_ANY_DEPTH:
        raise MalformedMessage("lib0 any value nested too deep")
    tag = _read_byte(reader)
    if tag in (127, 126, 121, 120):  # undefined, null, false, true
        return
    if tag == 125:  # var-int
        _skip_var_int(reader)
    elif tag == 124:  # float32
        reader.read_bytes(4)
    elif tag in (123, 122):  # float64, bigint64
        reader.read_bytes(8)
    elif tag in (119, 116):  # string, Uint8Array
        reader.read_var_bytes()
    elif tag == 118:  # object: count, then (key, value)
        for _ in range(_count(reader)):
            reader.read_var_bytes()
            _skip_any(reader, depth + 1)
    elif tag == 117:  # array
        for _ in range(_count(reader)):
            _skip_any(reader, depth + 1)
    else:
        raise MalformedMessage(f"unknown lib0 any tag {tag}")


def _count(reader: Reader) -> int:
    count = reader.read_var_uint()
    if count > reader.remaining:
        raise MalformedMessage(f"count {count} exceeds the {reader.remaining} bytes left")
    return count


def _skip_var_int(reader: Reader) -> None:
    # lib0 var-int: sign in bit 7 of the first byte, then 7 bits per byte like a var-uint.
    for _ in range(10):
        if _read_byte(reader) < 0x80:
            return
    raise MalformedMessage("var-int longer than 10 bytes")
