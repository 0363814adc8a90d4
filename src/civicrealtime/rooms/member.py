"""A connection as its room sees it: an identity and an outbox to push frames into.

The room knows nothing of sockets, websockets or locks: `transport/` implements `Outbox`
(transport/outbound.py) and owns every byte between it and the TCP socket.
"""

from __future__ import annotations

from typing import Protocol

import attrs

from ..auth import Identity
from ..protocol.closecodes import Close, CloseRequest
from ..protocol.wire import WireFrame
from .origin import Origin

# What a room pushes: a binary message (framed once per broadcast when a WireFrame), or a
# JSON control frame (text).
Outgoing = bytes | str | WireFrame


class Outbox(Protocol):
    """Where a room pushes a member's frames. Never waits, never raises on a dead peer."""

    def push(self, frame: Outgoing) -> bool:
        """Queue (or write) a frame; False if the connection is closing or just closed by
        this push (its queue was full: SLOW_CONSUMER)."""
        ...

    def close(self, close: Close | CloseRequest, *, flush: bool) -> None:
        """Ask the transport to close: after the frames already pushed (`flush`), or at once.
        The first request wins."""
        ...

    @property
    def closing(self) -> bool: ...

    @property
    def close_request(self) -> CloseRequest | None: ...

    @property
    def pending(self) -> int:
        """Frames pushed and not yet written."""
        ...

    @property
    def pending_bytes(self) -> int: ...


@attrs.define(kw_only=True, eq=False)
class Member:
    conn_id: int
    client_id: str  # the `clientId` of connection.ack
    identity: Identity
    outbound: Outbox
    peer: str
    can_edit: bool = True
    # Whether this connection gets the unsolicited JSON control frames (ack, error, notice,
    # session.revoked): settled at the upgrade (protocol.control.negotiate). A stock
    # y-websocket client cannot parse them, so they are off unless it asked.
    control_frames: bool = False
    may_publish_awareness: bool = True
    # Set once the member was told it may not edit: one error frame, not one per keystroke.
    told_read_only: bool = False
    # trio.current_time() of the last frame or pong; written by the connection's tasks.
    last_seen: float = 0.0
    # Awareness client ids this connection owns (it published a state for each): only it
    # may change them, and their states are removed when it leaves. At most
    # `awareness.max_client_ids_per_connection`.
    awareness_ids: set[int] = attrs.Factory(set)
    # Set once the member was told an awareness change was refused: one error frame.
    told_awareness_refused: bool = False
    # Whether its first awareness frame has been seen: only that one can be a client coming
    # back after a blip (later outranked states are echoes of other clients' updates).
    awareness_seen: bool = False

    @property
    def origin(self) -> Origin:
        """Who the history attributes this member's updates to (never the token itself)."""
        return Origin(sub=self.identity.user_id, name=self.identity.name, conn_id=self.conn_id)
