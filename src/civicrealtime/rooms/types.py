"""Room types: the part of a room's behaviour that depends on what it edits.

A new room type is a new `RoomType` registered with the server, never a change to the
server core (`docs/room-types.md`): a deployment names it under `room_types` in its
configuration (built by `plugins.py`), embedding code may register it itself. A type
declares:

- its permissions (`<name>:view` to join, `<name>:edit` to change the document);
- whether a room id must name something that exists (`exists`, refused with 4004);
- how to seed a room that has no stored state (`seed`);
- what to do after each snapshot of a changed room (`on_snapshot`, e.g. write a draft);
- optionally its own `hooks` instead of the daemon's persistence (tests use this).

`records` is built in (records/handler.py); the service registers it before the
configured types.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pycrdt import Doc

from .hooks import RoomHooks


class RoomType:
    def __init__(
        self,
        name: str,
        *,
        hooks: RoomHooks | None = None,
        view_permission: str | None = None,
        edit_permission: str | None = None,
    ) -> None:
        self.name = name
        self.hooks = hooks
        self.view_permission = view_permission or f"{name}:view"
        self.edit_permission = edit_permission or f"{name}:edit"

    async def start(self) -> None:
        """Called once before the server listens (index a data directory, ...)."""

    async def exists(self, room_id: str) -> bool:
        """Whether the room id names something that exists; False refuses with 4004."""
        return True

    async def seed(self, room_id: str, doc: Doc[Any]) -> None:
        """Fill the document of a room that has no stored state (it is empty)."""

    async def on_snapshot(self, room_id: str, doc: Doc[Any]) -> None:
        """After a snapshot of a changed room; failures are logged, editing carries on."""

    def describe(self, room_id: str) -> dict[str, Any]:
        """Extra facts for the admin API."""
        return {}


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

    def __iter__(self) -> Any:
        return iter(list(self._types.values()))
