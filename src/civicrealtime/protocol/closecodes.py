"""Every WebSocket close code the server sends, with the reason text it uses.

The 4xxx codes follow the original CivicPress server so that its editor shows the right
message; `docs/protocol.md` holds the same table for people.
"""

from __future__ import annotations

import enum
import json

# RFC 6455: the close frame's payload is at most 125 bytes, 2 of which hold the code.
MAX_REASON_BYTES = 123


class CloseCode(enum.IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001  # a connection silent past `connection_cleanup.stale_threshold`
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013  # slow consumer: its outbound queue overflowed; it resyncs
    AUTH_FAILED = 4001
    PERMISSION_DENIED = 4003
    NOT_FOUND = 4004  # unknown room type (and, later, unknown record)
    TOO_MANY_EDITS = 4013
    LIMIT_EXCEEDED = 4029  # connection or room limits
    INVALID_ROOM = 4400  # room id empty, too long, or with forbidden characters
    ROOM_FAILED = 4500  # the room actor crashed; the client reconnects to a fresh one
    SHUTTING_DOWN = 4503  # graceful shutdown; the editor shows "Reconnecting"


def close_reason(code: str, **extra: str) -> str:
    """The compact JSON close reason of the original, cut to fit in a close frame.

    Extra fields are dropped from the end, then shortened, until the encoding fits.
    """
    fields: dict[str, str] = {"code": code, **extra}
    text = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
    while len(text.encode("utf-8")) > MAX_REASON_BYTES and len(fields) > 1:
        last = list(fields)[-1]
        value = fields[last]
        if len(value) > 8:
            fields[last] = value[: len(value) // 2] + "…"
        else:
            del fields[last]
        text = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
    return text
