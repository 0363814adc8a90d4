"""The "saved" acknowledgement: which of a connection's updates are durable (docs/saved.md).

The persistence writer numbers every update a room hands it (a receipt, in order) and tells
the room, through its mailbox, the highest receipt up to which everything is durable. This
module is the room's side of it: for each opted-in connection, the update messages it sent
in order, each with the receipt that must be durable before it may be called saved, and the
Yjs clocks it carried. When the durable receipt grows, each connection whose oldest entries
it covers gets one frame. `SaveAcks` is plain bookkeeping (no trio, no sockets);
`Saving` is the room's part that wires it to the room's members, mailbox and hooks, called
from the room's task only, like the other parts (presence, pending, snapshots).

Why a count of messages besides the clocks: a deletion adds no struct, so clocks alone
cannot say it was saved. The client counts the update messages it sends on the connection
and compares with `updates`; `through` gives the clocks, per Yjs client id.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

import attrs
import trio

from ..protocol import InvalidUpdate, MalformedMessage
from ..protocol import control as control_frames
from ..protocol.document import YDocument
from ..protocol.updates import decode_state_vector
from ..protocol.ystructs import read_layout
from ..stats import Stats
from .member import Member
from .messages import RoomMessage
from .pending import PendingUpdates

# Entries remembered per connection. Past this (a store failing for long under steady
# typing), the newest entries are merged: the acknowledgement stays exact, only the latency
# observations of merged updates are rounded up to the oldest of them.
MAX_ENTRIES = 4096
# The receipt of an update that will never be saved (refused, too large, dropped): it blocks
# the acknowledgement of everything the connection sends after it, which is the truth.
NEVER = math.inf


@runtime_checkable
class DurabilitySource(Protocol):
    """Hooks that can say what is durable (persistence does; memory-only rooms do not)."""

    def mark(self, key: str) -> int: ...

    def durable(self, key: str) -> int: ...

    def watch(self, key: str, notify: Callable[[int, bool], bool]) -> None: ...

    def unwatch(self, key: str, notify: Callable[[int, bool], bool]) -> None: ...


@attrs.frozen(kw_only=True, slots=True)
class Durable(RoomMessage):
    """The persistence writer: every update of the room up to `receipt` is durable, and
    whether its store is failing now (nothing more becomes durable until it recovers)."""

    receipt: int
    failing: bool = False


@attrs.frozen(kw_only=True, slots=True)
class Ack:
    """One frame to send: the connection, its saved clocks and count, and what it covered."""

    conn_id: int
    through: dict[int, int]
    updates: int
    waited: tuple[float, ...]  # seconds from each covered update's arrival to now


@attrs.define(slots=True)
class _Entry:
    receipt: float  # a receipt, or NEVER
    clocks: dict[int, int]  # {client: clock past the last struct it carried}
    arrived: float
    count: int = 1  # update messages it stands for (more than one once merged)

    def absorb(self, newer: _Entry) -> None:
        self.receipt = max(self.receipt, newer.receipt)
        for client, clock in newer.clocks.items():
            self.clocks[client] = max(clock, self.clocks.get(client, 0))
        self.count += newer.count


@attrs.define(slots=True)
class _Connection:
    sent: int = 0  # update messages seen
    acked: int = 0  # of which saved (a prefix)
    entries: deque[_Entry] = attrs.Factory(deque)
    through: dict[int, int] = attrs.Factory(dict)
    told_failing: bool = False  # told of the store's failure in this outage


class SaveAcks:
    def __init__(self) -> None:
        self._connections: dict[int, _Connection] = {}

    def note(
        self,
        conn_id: int,
        update: bytes,
        *,
        before: int,
        after: int,
        state: bytes | None,
        now: float,
    ) -> None:
        """One update message of the connection, handled by the room.

        `before`/`after`: the room's receipt count around applying it. A new receipt means
        the update was handed to persistence: it is saved once that receipt is durable.
        No new receipt: either it changed nothing (everything it carries came earlier, in
        receipts up to `before`, or from the store), or it was refused. `state`, the
        document's state vector after it, tells which: an update whose structs the
        document does not hold was refused and is never saved. `state` None: the update
        was handed over and nothing waits in the document, so all of it was integrated
        (the common case, spared decoding a state vector as long as the room's clients).
        """
        conn = self._connections.setdefault(conn_id, _Connection())
        conn.sent += 1
        try:
            spans = read_layout(update).structs
            if state is None and after > before:
                self._add(conn, _Entry(after, {c: end for c, (_, end) in spans.items()}, now))
                return
            held = decode_state_vector(state) if state is not None else {}
        except (MalformedMessage, InvalidUpdate):
            self._add(conn, _Entry(NEVER, {}, now))
            return
        # Clocks are claimed only as far as the document holds them without a gap: a
        # struct pending on one never received is in the log, but not yet in the document.
        clocks = {client: min(end, held.get(client, 0)) for client, (_, end) in spans.items()}
        if after > before:
            receipt: float = after
        elif all(held.get(client, 0) >= end for client, (_, end) in spans.items()):
            receipt = before
        else:
            receipt = NEVER
        self._add(conn, _Entry(receipt, clocks, now))

    @staticmethod
    def _add(conn: _Connection, entry: _Entry) -> None:
        if len(conn.entries) >= MAX_ENTRIES:
            conn.entries[-1].absorb(entry)
        else:
            conn.entries.append(entry)

    def durable(self, receipt: int, now: float, *, only: int | None = None) -> list[Ack]:
        """The frames owed now that everything up to `receipt` is durable (or `only` one's)."""
        acks: list[Ack] = []
        for conn_id, conn in self._connections.items():
            if only is not None and conn_id != only:
                continue
            waited: list[float] = []
            while conn.entries and conn.entries[0].receipt <= receipt:
                entry = conn.entries.popleft()
                waited.extend([now - entry.arrived] * entry.count)
                for client, clock in entry.clocks.items():
                    if clock > conn.through.get(client, 0):
                        conn.through[client] = clock
            if waited:
                conn.acked += len(waited)
                acks.append(
                    Ack(
                        conn_id=conn_id,
                        through=dict(conn.through),
                        updates=conn.acked,
                        waited=tuple(waited),
                    )
                )
        return acks

    def failing(self, failing: bool) -> list[int]:
        """The store failed (or recovered): the connections to tell, once per outage, that
        their unsaved changes cannot be stored now."""
        told: list[int] = []
        for conn_id, conn in self._connections.items():
            if not failing:
                conn.told_failing = False
            elif conn.entries and not conn.told_failing:
                conn.told_failing = True
                told.append(conn_id)
        return told

    @property
    def waiting(self) -> bool:
        """Some connection has updates not acknowledged as saved yet."""
        return any(conn.entries for conn in self._connections.values())

    def unsaved(self, conn_id: int) -> int:
        conn = self._connections.get(conn_id)
        return sum(entry.count for entry in conn.entries) if conn is not None else 0

    def leave(self, conn_id: int) -> None:
        self._connections.pop(conn_id, None)


class SavingRoom(Protocol):
    """What `Saving` reads of its room (the room's task owns all of it)."""

    @property
    def key(self) -> str: ...

    @property
    def members(self) -> Mapping[int, Member]: ...

    @property
    def document(self) -> YDocument: ...

    @property
    def pending(self) -> PendingUpdates: ...


class Saving:
    """The room's part for the "saved" acknowledgement. Inert (updates are only applied)
    unless the hooks say what is durable (`DurabilitySource`) and the room has a mailbox
    sender for the writer to say it through; then it tracks opted-in connections only."""

    def __init__(
        self,
        *,
        room: SavingRoom,
        hooks: object,
        mailbox_sender: trio.MemorySendChannel[RoomMessage] | None,
        stats: Stats,
    ) -> None:
        self._room = room
        self._hooks = hooks if isinstance(hooks, DurabilitySource) else None
        self._mailbox_sender = mailbox_sender
        self._stats = stats
        self._acks = SaveAcks()
        self._store_failing = False

    def watch(self) -> None:
        if self._hooks is not None and self._mailbox_sender is not None:
            self._hooks.watch(self._room.key, self._notify)

    def unwatch(self) -> None:
        if self._hooks is not None and self._mailbox_sender is not None:
            self._hooks.unwatch(self._room.key, self._notify)

    def leave(self, conn_id: int) -> None:
        self._acks.leave(conn_id)

    def apply(self, member: Member, update: bytes, apply: Callable[[Member, bytes], None]) -> None:
        """Apply; for a member that asked for control frames, note which receipt must be
        durable before the update is saved."""
        hooks = self._hooks
        if hooks is None or self._mailbox_sender is None or not member.control_frames:
            apply(member, update)
            return
        before = hooks.mark(self._room.key)
        apply(member, update)
        after = hooks.mark(self._room.key)
        # Handed over with nothing waiting in the document: all of it was integrated, and
        # its clocks need no state vector (decoding one costs as much as the room's clients).
        integrated = after > before and not self._room.pending
        self._acks.note(
            member.conn_id,
            update,
            before=before,
            after=after,
            state=None if integrated else self._room.document.doc.get_state(),
            now=trio.current_time(),
        )
        if self._store_failing:
            self._tell_failing(True)
        if after == before:
            # Nothing new to write (a duplicate, the empty answer to our step 1): saved
            # already if what it repeats is, without waiting for a commit.
            self._send_saved(hooks.durable(self._room.key), only=member.conn_id)

    def durable(self, message: Durable) -> None:
        """The writer's word, through the mailbox: frames for what is saved now."""
        self._send_saved(message.receipt)
        self._store_failing = message.failing
        self._tell_failing(message.failing)

    def _send_saved(self, receipt: int, *, only: int | None = None) -> None:
        """Everything up to `receipt` is durable: one frame per connection it covers."""
        for ack in self._acks.durable(receipt, trio.current_time(), only=only):
            member = self._room.members.get(ack.conn_id)
            if member is None:
                continue
            member.outbound.push(control_frames.saved_frame(ack.through, ack.updates))
            self._stats.observe_save_ack(ack.waited)

    def _tell_failing(self, failing: bool) -> None:
        """While the store fails, each connection with unsaved changes is told once."""
        for conn_id in self._acks.failing(failing):
            member = self._room.members.get(conn_id)
            if member is not None:
                member.outbound.push(
                    control_frames.error_frame(
                        "STORE_FAILING", "the server cannot store changes right now"
                    )
                )

    def _notify(self, receipt: int, failing: bool) -> bool:
        """The writer's notifier: through the mailbox, never into the room directly.

        Nothing is posted when it would change nothing: no connection waits for an
        acknowledgement and the store's state is what the room knows. A room of stock
        clients (no control frames) is then never woken by its own commits.
        """
        assert self._mailbox_sender is not None
        if failing == self._store_failing and not self._acks.waiting:
            return True
        try:
            self._mailbox_sender.send_nowait(Durable(receipt=receipt, failing=failing))
        except trio.WouldBlock:
            return False  # told again at the writer's next tick
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return True  # the room is gone; nobody to tell
        return True
