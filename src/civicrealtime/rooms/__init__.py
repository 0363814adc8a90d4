"""Rooms: one actor per room, supervised by the manager."""

from .hooks import MemoryOnly, RoomHooks
from .manager import RoomHandle, RoomManager, RoomStats, RoomUnavailable
from .member import Member, Outbox, Outgoing
from .messages import FromClient, FromClientBatch, Join, Leave, RoomMessage
from .room import Room
from .types import RoomType, RoomTypeRegistry

__all__ = [
    "FromClient",
    "FromClientBatch",
    "Join",
    "Leave",
    "Member",
    "MemoryOnly",
    "Outbox",
    "Outgoing",
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
