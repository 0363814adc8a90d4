"""Text (JSON) control frames: what the original CivicPress server sent, byte for byte.

Compact JSON with keys in the original's order. The stock y-websocket client cannot parse
a text frame: it throws in a browser and dies under Node. So the unsolicited frames (ack,
error, notice, session.revoked) go only to a connection that asked for them by offering the
`civicrealtime.control.v1` subprotocol, the one handshake input a browser controls besides
the URL; `protocol.control_frames` can also send them to every connection or to none.
Replies the client asked for (pong) always go out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

import attrs

from .errors import MalformedMessage

# Offered beside `auth.<token>`, it asks for the control frames; the server selects it in the
# 101 exactly when the connection gets them, so a client can tell it was understood.
CONTROL_SUBPROTOCOL = "civicrealtime.control.v1"

# `protocol.control_frames`: who gets the unsolicited control frames.
ControlFramesMode = Literal["opt-in", "always", "never"]


@attrs.frozen(kw_only=True, slots=True)
class Negotiated:
    """What the upgrade settled: control frames or not, and the subprotocol to select."""

    control_frames: bool
    subprotocol: str | None


def negotiate(mode: ControlFramesMode, offered: Sequence[str]) -> Negotiated:
    """Decide control frames for one connection from the subprotocols its client offered."""
    asked = CONTROL_SUBPROTOCOL in offered
    control = mode == "always" or (mode == "opt-in" and asked)
    if control and asked:
        return Negotiated(control_frames=True, subprotocol=CONTROL_SUBPROTOCOL)
    # Browsers fail the handshake when they offered subprotocols and none is selected, so
    # the first other entry is echoed, as the original server did (`auth.<token>`). The
    # control entry is never selected for a connection that will not get the frames; a
    # client that offered nothing else then gets no subprotocol.
    others = [entry for entry in offered if entry != CONTROL_SUBPROTOCOL]
    return Negotiated(control_frames=control, subprotocol=others[0] if others else None)


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
