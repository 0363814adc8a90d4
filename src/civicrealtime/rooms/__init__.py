"""Rooms: one actor per room, supervised by the manager."""

from .hooks import MemoryOnly, RoomHooks
from .manager import RoomHandle, RoomManager, RoomStats, RoomUnavailable
from .member import Member
from .messages import FromClient, Join, Leave, RoomMessage
from .outbound import CloseRequest, Outbound
from .room import Room
from .types import RoomType, RoomTypeRegistry

__all__ = [
    "CloseRequest",
    "FromClient",
    "Join",
    "Leave",
    "Member",
    "MemoryOnly",
    "Outbound",
    "Room",
    "RoomHandle",
    "RoomHooks",
    "RoomManager",
    "RoomMessage",
    "RoomStats",
    "RoomType",
    "RoomTypeRegistry",
    "RoomUnavailable",
]
