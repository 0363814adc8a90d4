"""Every way the server closes a WebSocket: one table of (close code, reason code, text).

The 4xxx codes follow the original CivicPress server so that its editor shows the right
message. Each row is a `Close`: its numeric code, the reason code carried in the close
frame's compact JSON reason (and in the error frame that precedes a rejection), and the
text the error frame carries. Every close the server sends is one of these rows; metrics
count closes by row, not by searching reason strings. `docs/protocol.md` ("Close codes")
and the demo's status labels (`web/demo/src/status.js`) are checked against this module by
tests/protocol/test_closecodes.py.
"""

from __future__ import annotations

import enum
import json

import attrs

# RFC 6455: the close frame's payload is at most 125 bytes, 2 of which hold the code.
MAX_REASON_BYTES = 123


class CloseCode(enum.IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001  # a connection silent past `connection_cleanup.stale_threshold`
    PROTOCOL_ERROR = 1002  # a frame RFC 6455 forbids (unmasked, bad opcode, bad length)
    ABNORMAL = 1006  # never sent: what a connection that ended without a close frame reports
    INVALID_PAYLOAD = 1007  # a text message that is not UTF-8
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


# What the CivicPress editor shows for each code; any other code is "connection lost".
EDITOR_LABELS: dict[int, str] = {
    CloseCode.NORMAL: "disconnected",
    CloseCode.AUTH_FAILED: "session expired",
    CloseCode.PERMISSION_DENIED: "no permission to edit",
    CloseCode.NOT_FOUND: "record not found",
    CloseCode.TOO_MANY_EDITS: "too many edits at once",
    CloseCode.LIMIT_EXCEEDED: "too many active sessions",
    CloseCode.ROOM_FAILED: "reconnecting",
    CloseCode.SHUTTING_DOWN: "reconnecting",
}
CONNECTION_LOST = "connection lost"


def editor_label(code: int) -> str:
    return EDITOR_LABELS.get(code, CONNECTION_LOST)


@attrs.frozen(slots=True)
class Close:
    """One row of the table: how the server closes a connection, and why."""

    code: CloseCode
    reason_code: str  # "" only for the normal close, which carries no reason
    text: str  # for people: the error frame's message before the close

    def reason(self, **extra: str) -> str:
        """The close frame's reason: compact JSON of the reason code and `extra`."""
        if not self.reason_code:
            return ""
        return close_reason(self.reason_code, **extra)

    def request(self, **extra: str) -> CloseRequest:
        return CloseRequest(close=self, reason=self.reason(**extra))


@attrs.frozen(slots=True)
class CloseRequest:
    """A close to send: its table row and the reason text built from it."""

    close: Close
    reason: str

    @property
    def code(self) -> int:
        return int(self.close.code)


def _row(code: CloseCode, reason_code: str, text: str) -> Close:
    return Close(code=code, reason_code=reason_code, text=text)


NORMAL = _row(CloseCode.NORMAL, "", "closed")
STALE_CONNECTION = _row(CloseCode.GOING_AWAY, "STALE_CONNECTION", "nothing received for too long")
SLOW_CONSUMER = _row(CloseCode.TRY_AGAIN_LATER, "SLOW_CONSUMER", "fell too far behind")
SEND_TIMEOUT = _row(CloseCode.TRY_AGAIN_LATER, "SEND_TIMEOUT", "a write took too long")
TRANSPORT_FAILED = _row(
    CloseCode.INTERNAL_ERROR, "TRANSPORT_FAILED", "the server failed to write to the connection"
)
SETUP_TIMEOUT = _row(CloseCode.TRY_AGAIN_LATER, "SETUP_TIMEOUT", "joining took too long")
ROOM_EVICTED = _row(CloseCode.TRY_AGAIN_LATER, "ROOM_EVICTED", "room evicted")
AUTH_FAILED = _row(CloseCode.AUTH_FAILED, "AUTH_FAILED", "authentication failed")
TOKEN_EXPIRED = _row(CloseCode.AUTH_FAILED, "TOKEN_EXPIRED", "token expired")
SESSION_REVOKED = _row(CloseCode.AUTH_FAILED, "SESSION_REVOKED", "session revoked")
PERMISSION_DENIED = _row(
    CloseCode.PERMISSION_DENIED, "PERMISSION_DENIED", "no permission to open this room"
)
ROOM_TYPE_NOT_REGISTERED = _row(
    CloseCode.NOT_FOUND, "ROOM_TYPE_NOT_REGISTERED", "unknown room type"
)
ROOM_NOT_FOUND = _row(CloseCode.NOT_FOUND, "ROOM_NOT_FOUND", "no such record")
RATE_LIMIT_EXCEEDED = _row(CloseCode.TOO_MANY_EDITS, "RATE_LIMIT_EXCEEDED", "too many messages")
CONNECTION_LIMIT_EXCEEDED = _row(
    CloseCode.LIMIT_EXCEEDED, "CONNECTION_LIMIT_EXCEEDED", "too many connections"
)
ROOM_LIMIT_EXCEEDED = _row(CloseCode.LIMIT_EXCEEDED, "ROOM_LIMIT_EXCEEDED", "all rooms are in use")
PENDING_LIMIT = _row(
    CloseCode.LIMIT_EXCEEDED,
    "PENDING_LIMIT",
    "too many changes that depend on changes the server never received",
)
INVALID_ROOM = _row(CloseCode.INVALID_ROOM, "INVALID_ROOM", "invalid room name")
UNKNOWN_ERROR = _row(CloseCode.ROOM_FAILED, "UNKNOWN_ERROR", "room failed; reconnect")
ROOM_UNAVAILABLE = _row(CloseCode.ROOM_FAILED, "ROOM_UNAVAILABLE", "room failed to load")
ROOM_DAMAGED = _row(
    CloseCode.ROOM_FAILED,
    "ROOM_DAMAGED",
    "the room's stored state is damaged; an operator must repair it",
)
PROTOCOL_ERROR = _row(
    CloseCode.PROTOCOL_ERROR, "PROTOCOL_ERROR", "a frame the WebSocket protocol forbids"
)
INVALID_PAYLOAD = _row(CloseCode.INVALID_PAYLOAD, "INVALID_PAYLOAD", "a text message not in UTF-8")
MESSAGE_TOO_BIG = _row(
    CloseCode.MESSAGE_TOO_BIG, "MESSAGE_TOO_BIG", "a message over connection.max_message_size"
)
ROOM_CLOSED = _row(CloseCode.SHUTTING_DOWN, "ROOM_CLOSED", "room closed; reconnecting")
SERVER_SHUTTING_DOWN = _row(CloseCode.SHUTTING_DOWN, "SERVER_SHUTTING_DOWN", "server restarting")

CLOSES: tuple[Close, ...] = (
    NORMAL,
    STALE_CONNECTION,
    SLOW_CONSUMER,
    SEND_TIMEOUT,
    TRANSPORT_FAILED,
    SETUP_TIMEOUT,
    ROOM_EVICTED,
    AUTH_FAILED,
    TOKEN_EXPIRED,
    SESSION_REVOKED,
    PERMISSION_DENIED,
    ROOM_TYPE_NOT_REGISTERED,
    ROOM_NOT_FOUND,
    RATE_LIMIT_EXCEEDED,
    CONNECTION_LIMIT_EXCEEDED,
    ROOM_LIMIT_EXCEEDED,
    PENDING_LIMIT,
    INVALID_ROOM,
    PROTOCOL_ERROR,
    INVALID_PAYLOAD,
    MESSAGE_TOO_BIG,
    UNKNOWN_ERROR,
    ROOM_UNAVAILABLE,
    ROOM_DAMAGED,
    ROOM_CLOSED,
    SERVER_SHUTTING_DOWN,
)
_BY_REASON = {close.reason_code: close for close in CLOSES}

# Closes of a connection that did not read fast enough (metrics: slow_consumer_closes).
SLOW_CONSUMER_CLOSES = frozenset({SLOW_CONSUMER, SEND_TIMEOUT})


def by_reason(reason_code: str) -> Close:
    """The row of a reason code; KeyError for a code the table does not hold."""
    return _BY_REASON[reason_code]


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
