"""Room types: the part of a room's behaviour that depends on what it edits.

A new room type is a new `RoomType` registered with the server, never a change to the
server core. `records` is built in.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from .hooks import MemoryOnly, RoomHooks


@attrs.frozen(kw_only=True)
class RoomType:
    name: str
    hooks: RoomHooks = attrs.field(factory=MemoryOnly)
    # Permissions to join (and read) and to change the document; `<name>:view` and
    # `<name>:edit` unless the type says otherwise.
    view_permission: str = attrs.field(
        default=attrs.Factory(lambda self: f"{self.name}:view", takes_self=True)
    )
    edit_permission: str = attrs.field(
        default=attrs.Factory(lambda self: f"{self.name}:edit", takes_self=True)
    )


class RoomTypeRegistry:
    def __init__(self, types: Iterable[RoomType] = ()) -> None:
        self._types: dict[str, RoomType] = {}
        for room_type in types:
            self.register(room_type)

    def register(self, room_type: RoomType) -> None:
        if room_type.name in self._types:
            raise ValueError(f"room type {room_type.name!r} is already registered")
        self._types[room_type.name] = room_type

    def get(self, name: str) -> RoomType:
        return self._types[name]

    def names(self) -> frozenset[str]:
        return frozenset(self._types)


def default_room_types() -> RoomTypeRegistry:
    return RoomTypeRegistry([RoomType(name="records")])
