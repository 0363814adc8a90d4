"""The room manager: owns the nursery of room actors and the registry of live rooms.

Getting or starting a room is atomic: the registry entry is created with no await in
between, so concurrent first joiners of one room share one actor and wait for the same
`ready` event (pycrdt-websocket holds a lock here and hangs the second joiner). A room
that is still retiring (persisting after eviction) makes its successor wait, so a new
actor never loads state that the old one has not finished writing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import attrs
import trio

from ..config import RealtimeConfig
from ..protocol import CloseCode
from ..stats import Stats
from .fanout import CLOSED_BY_ADMIN, CRASHED, EVICTED, SHUTDOWN, CloseRequestReason
from .hooks import MemoryOnly, RoomHooks, StateDamaged
from .messages import RoomMessage
from .relay import NoRelay, RoomRelay
from .room import Room
from .types import RoomTypeRegistry

log = logging.getLogger("civicrealtime.rooms")


class RoomUnavailable(Exception):
    """The room cannot take this connection; `close_code` and `code` say why."""

    def __init__(self, code: str, message: str, close_code: int) -> None:
        super().__init__(message)
        self.code = code
        self.close_code = close_code


@attrs.define(kw_only=True, eq=False)
class RoomHandle:
    """The manager's view of one room: how to reach it, and whether it can be evicted."""

    key: str
    room_type: str
    mailbox: trio.MemorySendChannel[RoomMessage]
    room: Room
    ready: trio.Event = attrs.Factory(trio.Event)
    stopped: trio.Event = attrs.Factory(trio.Event)
    failed: bool = False
    # Why the room refused to load its damaged state (StateDamaged), if it did.
    damage: str | None = None
    # Connections that acquired this room and have not yet been delivered to its mailbox.
    pending_joins: int = 0
    last_used: float = 0.0

    @property
    def members(self) -> int:
        return len(self.room.members)

    @property
    def evictable(self) -> bool:
        return (
            self.pending_joins == 0
            and not self.room.members
            and self.ready.is_set()
            and not self.room.holds_unwritten_updates
        )


@attrs.frozen(kw_only=True, slots=True)
class RoomStats:
    live: int
    empty: int
    crashed: int
    connections: int
    damaged: int = 0
    pending_bytes: int = 0  # updates held for changes never received (rooms/pending.py)


class RoomManager:
    """The registry of live rooms and the nursery they run in: the rooms' supervisor.

    It owns the key -> room mapping (getting or starting a room with no await in between),
    the room limit and eviction (grace period, LRU at `max_rooms`, an operator's close,
    shutdown), and each room's isolation boundary: a room that raises is logged, its
    members closed with 4500, its key freed, and no other room is touched.

    It must never change a live room's document, awareness or members itself (it reaches a
    room through its mailbox, or asks it to stop; it closes the members only of a room whose
    task has ended), never let one room's failure escape its supervisor, and never start a
    room for a key whose previous actor is still retiring.
    """

    def __init__(
        self,
        config: RealtimeConfig,
        room_types: RoomTypeRegistry,
        stats: Stats | None = None,
        hooks: RoomHooks | None = None,
        relay: RoomRelay | None = None,
    ) -> None:
        self.relay: RoomRelay = relay if relay is not None else NoRelay()
        # The daemon's persistence; a room type may bring its own hooks instead.
        self.hooks: RoomHooks = hooks if hooks is not None else MemoryOnly()
        self._config = config
        self._stats = stats if stats is not None else Stats()
        self._types = room_types
        self._rooms: dict[str, RoomHandle] = {}
        self._retiring: dict[str, trio.Event] = {}
        self._nursery: trio.Nursery | None = None
        self.crashes = 0
        # Rooms whose stored state is damaged (key: why), until one loads again.
        self.damaged: dict[str, str] = {}

    def __iter__(self) -> Iterator[RoomHandle]:
        return iter(list(self._rooms.values()))

    def get(self, key: str) -> RoomHandle | None:
        return self._rooms.get(key)

    def statistics(self) -> RoomStats:
        rooms = list(self._rooms.values())
        return RoomStats(
            live=len(rooms),
            empty=sum(1 for h in rooms if not h.room.members),
            crashed=self.crashes,
            connections=sum(h.members for h in rooms),
            damaged=len(self.damaged),
            pending_bytes=sum(h.room.pending.total for h in rooms),
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the rooms' nursery until cancelled. Cancelling it cancels every room."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    # -- acquiring ---------------------------------------------------------------------------

    async def acquire(self, key: str, room_type: str) -> RoomHandle:
        """Get or start the room and wait until it is ready to take a `Join`.

        The caller then owns one pending join: it must either deliver a `Join` to the
        mailbox or call `release_pending`. Raises `RoomUnavailable` at the room limit or
        when the room failed to start.
        """
        handle = self._rooms.get(key)
        if handle is None:
            handle = self._start(key, room_type)
        handle.pending_joins += 1
        handle.last_used = trio.current_time()
        try:
            await handle.ready.wait()
        except BaseException:
            handle.pending_joins -= 1
            raise
        if handle.damage is not None:
            handle.pending_joins -= 1
            raise RoomUnavailable(
                "ROOM_DAMAGED",
                "the room's stored state is damaged; an operator must repair it",
                CloseCode.ROOM_FAILED,
            )
        if handle.failed or handle.room.stopping_reason is not None:
            handle.pending_joins -= 1
            raise RoomUnavailable("ROOM_UNAVAILABLE", "room failed to load", CloseCode.ROOM_FAILED)
        return handle

    @staticmethod
    def release_pending(handle: RoomHandle) -> None:
        handle.pending_joins -= 1

    def _start(self, key: str, room_type: str) -> RoomHandle:
        if self._nursery is None:
            raise RoomUnavailable("SERVER_SHUTTING_DOWN", "not serving", CloseCode.SHUTTING_DOWN)
        self._make_space()
        send, receive = trio.open_memory_channel[RoomMessage](self._config.rooms.mailbox_size)
        handler = self._types.get(room_type)
        room = Room(
            key=key,
            config=self._config,
            hooks=handler.hooks if handler.hooks is not None else self.hooks,
            room_type=handler,
            relay=self.relay,
            mailbox_sender=send,
            mailbox=receive,
            on_empty=self._on_room_empty,
            on_join=self._on_room_join,
            stats=self._stats,
        )
        handle = RoomHandle(key=key, room_type=room_type, mailbox=send, room=room)
        self._rooms[key] = handle
        # start_soon plus the ready event, not nursery.start from the joiner: the first
        # joiner may be cancelled while the room loads, and the room must outlive it.
        self._nursery.start_soon(self._supervise, handle, self._retiring.get(key))
        return handle

    def _make_space(self) -> None:
        """At `max_rooms`, evict the least recently used empty room, or refuse."""
        if len(self._rooms) < self._config.rooms.max_rooms:
            return
        candidates = [h for h in self._rooms.values() if h.evictable]
        if not candidates:
            raise RoomUnavailable(
                "ROOM_LIMIT_EXCEEDED",
                f"all {self._config.rooms.max_rooms} rooms are in use",
                CloseCode.LIMIT_EXCEEDED,
            )
        victim = min(candidates, key=lambda h: h.last_used)
        log.info("room.evicting room=%s why=max_rooms", victim.key)
        self._retire(victim)

    # -- retiring ----------------------------------------------------------------------------

    def _on_room_empty(self, room: Room) -> None:
        handle = self._rooms.get(room.key)
        if handle is not None and handle.room is room and handle.evictable:
            log.info("room.evicting room=%s why=grace_period_over", room.key)
            self._retire(handle)

    def _on_room_join(self, room: Room) -> None:
        """A `Join` reached the room: the joiner's pending join is now a membership."""
        handle = self._rooms.get(room.key)
        if handle is not None and handle.room is room:
            handle.pending_joins -= 1
            handle.last_used = trio.current_time()

    def _retire(self, handle: RoomHandle, why: CloseRequestReason = EVICTED) -> None:
        """The one eviction path: unregister now, stop the actor, let it persist."""
        if self._rooms.get(handle.key) is handle:
            del self._rooms[handle.key]
            self._retiring[handle.key] = handle.stopped
        handle.room.stop(why)

    async def _supervise(self, handle: RoomHandle, predecessor: trio.Event | None) -> None:
        """The isolation boundary of one room: its failure ends here, logged."""
        room = handle.room
        try:
            if predecessor is not None:
                await predecessor.wait()
            await room.run(task_status=_ReadyStatus(handle, self.damaged))
            log.info("room.evicted room=%s", handle.key)
        except StateDamaged as exc:
            # Not a crash: the room refuses to serve (and so to snapshot) what is left of
            # its state. Every joiner retries the load, so a repair is picked up at once.
            handle.failed = True
            handle.damage = str(exc)
            if self.damaged.get(handle.key) != handle.damage:
                log.error("room.damaged room=%s %s", handle.key, handle.damage)  # noqa: TRY400
            self.damaged[handle.key] = handle.damage
        except Exception:
            self.crashes += 1
            self._stats.room_crashes += 1
            self._stats.last_room_crash_at = trio.current_time()
            handle.failed = True
            log.exception("room.crashed room=%s", handle.key)
            room.abort_members(CRASHED)
        finally:
            handle.failed = handle.failed or not handle.ready.is_set()
            handle.ready.set()  # wake joiners; they see `failed` and are refused
            if self._rooms.get(handle.key) is handle:
                del self._rooms[handle.key]
            if self._retiring.get(handle.key) is handle.stopped:
                del self._retiring[handle.key]
            await handle.mailbox.aclose()
            handle.stopped.set()

    def close(self, key: str) -> bool:
        """An operator closes a room: its members reconnect to a fresh one (eviction path)."""
        handle = self._rooms.get(key)
        if handle is None:
            return False
        log.info("room.evicting room=%s why=closed_by_admin", key)
        self._retire(handle, CLOSED_BY_ADMIN)
        return True

    # -- shutdown ----------------------------------------------------------------------------

    async def shutdown(self, deadline: float) -> None:
        """Close every member with 4503 and stop every room; wait for them until `deadline`."""
        self.refuse_new_rooms()
        handles = list(self._rooms.values())
        for handle in handles:
            self._retire_for_shutdown(handle)
        with trio.move_on_at(deadline):
            for handle in handles:
                await handle.stopped.wait()
            for event in list(self._retiring.values()):
                await event.wait()

    def _retire_for_shutdown(self, handle: RoomHandle) -> None:
        self._retire(handle, SHUTDOWN)

    def refuse_new_rooms(self) -> None:
        self._nursery = None


class _ReadyStatus:
    """A task_status that marks the handle ready; the room calls `started()` after loading."""

    def __init__(self, handle: RoomHandle, damaged: dict[str, str]) -> None:
        self._handle = handle
        self._damaged = damaged

    def started(self, value: None = None) -> None:
        if self._damaged.pop(self._handle.key, None) is not None:
            log.info("room.repaired room=%s", self._handle.key)
        self._handle.ready.set()
