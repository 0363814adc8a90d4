"""How a room reaches its members: one encoding queued to each, errors, closing them all.

Every delivery is a push into a member's bounded outbound queue and never waits: a full
queue closes that member (1013) instead (rooms/outbound.py). The room's parts (presence,
held updates) deliver through here, in the room's task, never from another task.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..protocol import CloseCode, close_reason
from ..protocol import control as control_frames
from ..protocol.wire import WireFrame
from ..stats import Stats
from .member import Member


class CloseRequestReason:
    """Why a room closes its members: the error frame and the close frame they get."""

    __slots__ = ("close_code", "close_reason", "error_code", "message")

    def __init__(self, *, close_code: int, error_code: str, message: str) -> None:
        self.close_code = close_code
        self.error_code = error_code
        self.message = message
        self.close_reason = close_reason(error_code)


SHUTDOWN = CloseRequestReason(
    close_code=CloseCode.SHUTTING_DOWN,
    error_code="SERVER_SHUTTING_DOWN",
    message="server restarting",
)
EVICTED = CloseRequestReason(
    close_code=CloseCode.TRY_AGAIN_LATER, error_code="ROOM_EVICTED", message="room evicted"
)
CLOSED_BY_ADMIN = CloseRequestReason(
    close_code=CloseCode.SHUTTING_DOWN,
    error_code="ROOM_CLOSED",
    message="room closed; reconnecting",
)
CRASHED = CloseRequestReason(
    close_code=CloseCode.ROOM_FAILED, error_code="UNKNOWN_ERROR", message="room failed; reconnect"
)


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
            send_error(member, reason.error_code, reason.message)
            member.outbound.close(reason.close_code, reason.close_reason, flush=True)
