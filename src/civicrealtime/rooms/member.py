"""A connection as its room sees it."""

from __future__ import annotations

import attrs

from ..auth import Identity
from .origin import Origin
from .outbound import Outbound


@attrs.define(kw_only=True, eq=False)
class Member:
    conn_id: int
    client_id: str  # the `clientId` of connection.ack
    identity: Identity
    outbound: Outbound
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
