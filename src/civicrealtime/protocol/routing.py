"""Turning an upgrade request's target into a room, without I/O.

`/realtime/<type>/<id>` (the prefix is configurable): `record` is normalised to `records`,
the id is percent-decoded, normalised to Unicode NFC, and must then be 1 to 255 UTF-8 bytes
with no control characters and no `/`. Like the original, extra path segments and the query
string do not name the room.

NFC, rather than refusing other forms: `café` typed on one system and pasted from another
(macOS file names are decomposed) is one record, so both spellings must reach one room. A
refusal would break clients that never chose their normalisation.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import parse_qs, unquote_to_bytes

import attrs

from .closecodes import CloseCode

MAX_ROOM_ID_BYTES = 255
ROOM_TYPE_ALIASES = {"record": "records"}


@attrs.frozen(kw_only=True, slots=True)
class RoomRoute:
    room_type: str
    room_id: str
    query: dict[str, list[str]]

    @property
    def key(self) -> str:
        return f"{self.room_type}:{self.room_id}"


@attrs.frozen(kw_only=True, slots=True)
class OutsidePrefix:
    """Not under the configured path: refuse the upgrade with HTTP 404."""


@attrs.frozen(kw_only=True, slots=True)
class BadRoom:
    """Under the prefix, but not a usable room: an error frame, then this close."""

    code: str
    message: str
    close_code: CloseCode


def _has_control_chars(text: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf") for ch in text)


def normalise_prefix(prefix: str) -> str:
    return "/" + prefix.strip("/") if prefix.strip("/") else ""


def parse_target(
    target: str, prefix: str, room_types: frozenset[str]
) -> RoomRoute | OutsidePrefix | BadRoom:
    path, _, query = target.partition("?")
    base = normalise_prefix(prefix)
    if base and path != base and not path.startswith(base + "/"):
        return OutsidePrefix()
    parts = path[len(base) :].split("/")
    # parts[0] is the empty string before the first "/".
    room_type = parts[1] if len(parts) > 1 else ""
    raw_id = parts[2] if len(parts) > 2 else ""
    if not room_type:
        return BadRoom(
            code="INVALID_ROOM",
            message="expected a path of the form <prefix>/<roomType>/<roomId>",
            close_code=CloseCode.INVALID_ROOM,
        )
    room_type = ROOM_TYPE_ALIASES.get(room_type, room_type)
    try:
        room_id = unicodedata.normalize("NFC", unquote_to_bytes(raw_id).decode("utf-8"))
    except UnicodeDecodeError:
        return BadRoom(
            code="INVALID_ROOM",
            message="room id is not valid UTF-8 after percent-decoding",
            close_code=CloseCode.INVALID_ROOM,
        )
    size = len(room_id.encode("utf-8"))
    if not 1 <= size <= MAX_ROOM_ID_BYTES:
        return BadRoom(
            code="INVALID_ROOM",
            message=f"room id must be 1 to {MAX_ROOM_ID_BYTES} bytes, got {size}",
            close_code=CloseCode.INVALID_ROOM,
        )
    if "/" in room_id or _has_control_chars(room_id):
        return BadRoom(
            code="INVALID_ROOM",
            message="room id must not contain '/' or control characters",
            close_code=CloseCode.INVALID_ROOM,
        )
    if room_type not in room_types:
        return BadRoom(
            code="ROOM_TYPE_NOT_REGISTERED",
            message=f"unknown room type {room_type[:64]!r}",
            close_code=CloseCode.NOT_FOUND,
        )
    return RoomRoute(room_type=room_type, room_id=room_id, query=parse_qs(query))
