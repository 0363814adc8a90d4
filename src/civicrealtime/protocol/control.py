"""Text (JSON) control frames: what the original CivicPress server sent, byte for byte.

Compact JSON with keys in the original's order. The stock y-websocket client cannot parse
text frames (it logs an error and carries on), so every unsolicited frame can be switched
off with `protocol.control_frames: false`; replies the client asked for (pong) stay.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from .errors import MalformedMessage


def _dump(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def connection_ack(room_id: str, client_id: str) -> str:
    return _dump(
        {"type": "control", "event": "connection.ack", "roomId": room_id, "clientId": client_id}
    )


def error_frame(code: str, message: str) -> str:
    return _dump({"type": "control", "event": "error", "error": {"code": code, "message": message}})


def pong_frame(timestamp_ms: int) -> str:
    return _dump({"type": "pong", "timestamp": timestamp_ms})


def notice_frame(level: str, message: str) -> str:
    return _dump(
        {"type": "control", "event": "notice", "notice": {"level": level, "message": message}}
    )


def session_revoked_frame(reason: str) -> str:
    return _dump({"type": "control", "event": "session.revoked", "reason": reason})


def saved_frame(through: dict[int, int], updates: int) -> str:
    """Durable: each Yjs client's structs below its clock, and the first `updates` update
    messages the connection sent (docs/protocol.md, "saved")."""
    return _dump(
        {
            "type": "control",
            "event": "saved",
            "through": {str(client): clock for client, clock in sorted(through.items())},
            "updates": updates,
        }
    )


@attrs.frozen(kw_only=True, slots=True)
class ControlMessage:
    """Base of text frames a client may send."""


@attrs.frozen(kw_only=True, slots=True)
class ClientPing(ControlMessage):
    pass


@attrs.frozen(kw_only=True, slots=True)
class OtherControl(ControlMessage):
    """A well-formed JSON object of a type the server does not act on."""

    type: str


# Text frames are tiny in the original protocol; a large one is abuse, not a ping.
MAX_CONTROL_FRAME_CHARS = 4096


def decode_control(text: str) -> ControlMessage:
    if len(text) > MAX_CONTROL_FRAME_CHARS:
        raise MalformedMessage(f"text frame of {len(text)} characters")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        # Deep nesting ("[[[[...") exhausts the recursion limit well under the size cap.
        raise MalformedMessage("text frame is not JSON") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise MalformedMessage('text frame is not a JSON object with a string "type"')
    if obj["type"] == "ping":
        return ClientPing()
    return OtherControl(type=obj["type"])
