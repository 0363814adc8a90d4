"""How a room reaches its members: one encoding queued to each, errors, closing them all.

Every delivery is a push into a member's outbox (rooms.member.Outbox) and never waits: a
full queue closes that member (1013, SLOW_CONSUMER) instead (transport/outbound.py). The
room's parts (presence, held updates) deliver through here, in the room's task, never from
another task.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..protocol import closecodes as closes
from ..protocol import control as control_frames
from ..protocol.wire import WireFrame
from ..stats import Stats
from .member import Member

# Why a room closes its members: rows of the close table (protocol/closecodes.py), each
# giving the error frame the members get and the close frame that follows it.
CloseRequestReason = closes.Close
SHUTDOWN = closes.SERVER_SHUTTING_DOWN
EVICTED = closes.ROOM_EVICTED
CLOSED_BY_ADMIN = closes.ROOM_CLOSED
CRASHED = closes.UNKNOWN_ERROR


def send_error(member: Member, code: str, message: str) -> None:
    """An error control frame, to a member that gets them (a stock client could not parse it)."""
    if member.control_frames:
        member.outbound.push(control_frames.error_frame(code, message))


class Fanout:
    """The room's members as its parts reach them; the room owns the member dict itself."""

    __slots__ = ("_stats", "members")

    def __init__(self, members: Mapping[int, Member], stats: Stats) -> None:
        self.members = members
        self._stats = stats

    def broadcast(self, frame: bytes | WireFrame, exclude: Member | None = None) -> None:
        """One encoding, the same object queued for every member but `exclude`."""
        delivered = 0
        for member in list(self.members.values()):
            if member is not exclude and member.outbound.push(frame):
                delivered += 1
        self._stats.fanout_deliveries += delivered

    def close_all(self, reason: CloseRequestReason) -> None:
        """Tell every member why, then close each after what is already queued for it."""
        for member in list(self.members.values()):
            send_error(member, reason.reason_code, reason.text)
            member.outbound.close(reason, flush=True)
