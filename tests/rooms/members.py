"""Members for room unit tests, built and read in one place, without a network.

A room reaches a member only through its outbound side: these helpers build a member, take
what the room queued for it, and say how the room asked it to close. Should a member's
outbound side change shape, this module is the one to adapt.
"""

from __future__ import annotations

import json
import math
from typing import Any

import attrs
import trio

from civicrealtime.auth import Identity
from civicrealtime.protocol import messages
from civicrealtime.protocol.awareness import (
    AwarenessEntry,
    decode_awareness_update,
    encode_awareness_update,
)
from civicrealtime.protocol.wire import WireFrame
from civicrealtime.rooms import Member, Outbound

Frame = bytes | str | WireFrame


def make_member(
    conn_id: int,
    *,
    user: str | None = None,
    control_frames: bool = False,
    can_edit: bool = True,
    capacity: int = 1024,
    max_bytes: float = math.inf,
    last_seen: float = 0.0,
) -> Member:
    """A member whose outbound queue nobody writes to a socket: the test reads it."""
    return Member(
        conn_id=conn_id,
        client_id=f"client_{conn_id}",
        identity=Identity(user_id=user if user is not None else f"user{conn_id}"),
        outbound=Outbound(capacity, max_bytes=max_bytes),
        peer="127.0.0.1",
        can_edit=can_edit,
        control_frames=control_frames,
        last_seen=last_seen,
    )


async def drain(member: Member) -> list[Frame]:
    """Everything queued for the member since the last drain, as the room queued it.

    Never waits for a frame: it takes only what is queued (a close request ends it).
    """
    frames: list[Frame] = []
    while member.outbound.pending:
        batch, closing = await member.outbound.next_batch(1 << 30)
        frames.extend(batch)
        if closing:
            break
    return frames


def close_of(member: Member) -> tuple[int, str] | None:
    """How the room asked the member's connection to close (code, reason), if it did."""
    request = member.outbound.close_request
    return None if request is None else (request.code, request.reason)


async def wait_closed(member: Member) -> None:
    """Return once the room closed the member at once (as its connection would be woken)."""
    with trio.CancelScope() as scope:
        member.outbound.bind(scope)
        await trio.sleep_forever()


@attrs.frozen
class Seen:
    """One outbound frame, decoded: its kind and what it carries."""

    kind: str  # step1, step2, update, awareness, permission_denied, ack, error
    payload: Any = None  # bytes (sync), entries (awareness), the JSON object (control)


def describe(frame: Frame) -> Seen:
    if isinstance(frame, WireFrame):
        frame = frame.payload
    if isinstance(frame, str):
        control = json.loads(frame)
        if control.get("event") == "connection.ack":
            return Seen("ack", control)
        return Seen(control.get("event", control.get("type")), control)
    match messages.decode(frame):
        case messages.SyncStep1(state_vector=sv):
            return Seen("step1", sv)
        case messages.SyncStep2(update=update):
            return Seen("step2", update)
        case messages.SyncUpdate(update=update):
            return Seen("update", update)
        case messages.AwarenessMessage(payload=payload):
            return Seen("awareness", tuple(decode_awareness_update(payload)))
        case messages.PermissionDenied(reason=reason):
            return Seen("permission_denied", reason)
    raise AssertionError(f"unexpected frame {frame!r}")


async def received(member: Member) -> list[Seen]:
    """What the member was sent since the last look, decoded."""
    return [describe(frame) for frame in await drain(member)]


def kinds(seen: list[Seen]) -> list[str]:
    return [s.kind for s in seen]


def awareness_frame(client_id: int, clock: int, state: dict[str, Any] | None) -> bytes:
    """A client's awareness frame (a state, or None for its removal)."""
    entry = AwarenessEntry(
        client_id=client_id, clock=clock, state="null" if state is None else json.dumps(state)
    )
    return messages.encode_awareness(encode_awareness_update([entry]))
