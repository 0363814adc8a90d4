"""Updates a room holds that wait for changes it never received ("pending" in yrs).

An update whose structs build on a clock the document has not seen (or that deletes items
it has not seen) is kept by yrs until the missing part arrives, outside the document:
`get_state()` does not show it and `get_update()` leaves it out. Unaccounted, one client
grew a room by 540 MiB in 12 s with such updates, past every size limit, and the memory
outlived the room. This module keeps the room's own list of them (raw bytes, who sent
them, when) so that the room can charge them to budgets, report them, and drop them.

Dropping is a rebuild: `get_update()` omits pending structs, so a fresh document fed the
current state (plus the pending updates to keep) has everything but the dropped ones.

`PendingBudget` is the room's policy for them, a part of the room and not an actor: its
watch loop is a task in the room's nursery, the rest is called from the room's task.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import attrs
import pycrdt
import trio

from ..config import RoomsConfig
from ..memory import trim_memory
from ..protocol import closecodes as closes
from ..protocol.document import YDocument
from ..protocol.errors import MalformedMessage
from ..protocol.updates import InvalidUpdate, decode_state_vector, guarded
from ..protocol.varint import Reader
from ..stats import Stats
from .fanout import send_error
from .hooks import RoomHooks
from .member import Member
from .snapshots import Snapshots

log = logging.getLogger("civicrealtime.room")

# While updates are pending, how often the room looks for resolved and expired ones.
PENDING_CHECK_SECONDS = 1.0
# A room that held more than this (document or pending) gives the freed heap back to the
# OS when it leaves memory: glibc keeps freed pages, and RSS stayed up after the room.
TRIM_AFTER_BYTES = 1024 * 1024
# Held updates by count, besides bytes: every update the room applies costs a pass over the
# held ones (`YDocument` merges their split points, `settle` asks pycrdt about each). Small
# held updates within the byte budgets (40 frames/s for 30 s, from a few connections) made
# each ordinary keystroke cost about 30 ms of the event loop, for every room. Honest clients
# send in order: a few held at a time, briefly (an out-of-order relay, a sync mid-flight).
MAX_HELD_PER_CONNECTION = 64
MAX_HELD_PER_ROOM = 256


@attrs.frozen
class Held:
    update: bytes
    owner: int | None  # the member's conn_id; None: loaded from the store, or another node
    since: float  # trio.current_time() when it arrived


def waits(update: bytes, state_vector: bytes) -> bool:
    """Whether applying `update` left part of it waiting in a document at `state_vector`.

    Call it after applying: structs beyond the document's clocks, or deletions of items
    past them, are exactly what yrs could not integrate. An update pycrdt cannot diff
    counts as not waiting (it was refused when applied, so it is not held either).
    """
    try:
        rest = guarded(lambda: pycrdt.get_update(update, state_vector), "update")
    except InvalidUpdate:
        return False  # pycrdt refused it, so the document does not hold it either
    try:
        reader = Reader(rest)
        if reader.read_var_uint() != 0:
            return True
        known = decode_state_vector(state_vector)
        for _ in range(reader.read_var_uint()):
            client = reader.read_var_uint()
            seen = known.get(client, 0)
            for _ in range(reader.read_var_uint()):
                clock = reader.read_var_uint()
                if clock + reader.read_var_uint() > seen:
                    return True
    except MalformedMessage:
        return False  # yrs wrote it: cannot happen, and then nothing is held
    return False


class PendingUpdates:
    """The held updates of one room, with their byte totals per owner."""

    def __init__(self) -> None:
        self.held: list[Held] = []
        self.total = 0
        self._by_owner: dict[int | None, int] = {}
        self._count_by_owner: dict[int | None, int] = {}

    def __bool__(self) -> bool:
        return bool(self.held)

    def add(self, held: Held) -> None:
        self.held.append(held)
        self.total += len(held.update)
        self._by_owner[held.owner] = self._by_owner.get(held.owner, 0) + len(held.update)
        self._count_by_owner[held.owner] = self._count_by_owner.get(held.owner, 0) + 1

    def of(self, owner: int | None) -> int:
        """Bytes held for one owner."""
        return self._by_owner.get(owner, 0)

    def count_of(self, owner: int | None) -> int:
        """Updates held for one owner."""
        return self._count_by_owner.get(owner, 0)

    def settle(self, state_vector: bytes) -> list[Held]:
        """Forget the updates the document has integrated since; return them."""
        done = [held for held in self.held if not waits(held.update, state_vector)]
        self.remove(done)
        return done

    def remove(self, gone: Iterable[Held]) -> None:
        gone_ids = {id(held) for held in gone}
        if not gone_ids:
            return
        kept = [held for held in self.held if id(held) not in gone_ids]
        self.held = []
        self.total = 0
        self._by_owner = {}
        self._count_by_owner = {}
        for held in kept:
            self.add(held)

    def older_than(self, cutoff: float) -> list[Held]:
        return [held for held in self.held if held.since < cutoff]

    def clear(self) -> None:
        self.remove(list(self.held))


class PendingBudget:
    """A room's held updates: charged to budgets, settled, dropped past a budget or timeout."""

    def __init__(
        self,
        *,
        key: str,
        config: RoomsConfig,
        document: YDocument,
        applied: list[bytes],
        hooks: RoomHooks,
        snapshots: Snapshots,
        stats: Stats,
        size: Callable[[], int],
    ) -> None:
        self._key = key
        self._config = config
        self._document = document
        # The room's list of what each transaction changed: a rebuild's is not a change.
        self._applied = applied
        self._hooks = hooks
        self._snapshots = snapshots
        self._stats = stats
        # The room's estimate of its document's encoded size.
        self._size = size
        self.pending = PendingUpdates()
        self._added = trio.Event()
        self._peak_bytes = 0

    async def release(self) -> None:
        """The room is gone: free its document now, and the heap it used.

        The Room object can outlive its actor (handles, members' references), so the big
        document is swapped for an empty one here rather than left to the collector.
        """
        held = self.peak_bytes
        self.pending.clear()
        self._document.reset()
        self._applied.clear()
        if held > TRIM_AFTER_BYTES:
            await trio.to_thread.run_sync(trim_memory)

    @property
    def peak_bytes(self) -> int:
        """The most the room held (document and pending) since memory was last trimmed."""
        return max(self._peak_bytes, self._size() + self.pending.total)

    def waiting(self, update: bytes, *, grown: int) -> bool:
        """Whether part of `update`, just applied, waits (its changes took `grown` bytes)."""
        if not self.pending and (len(update) <= 2 or self._document.integrated):
            # An empty update, or one the document saw integrate whole from the clocks it
            # knows: no state vector to encode and decode (as long as the room's clients).
            return False
        state_vector = self._document.doc.get_state()
        if self.pending and grown > len(update):
            # More came out than went in: held updates were integrated just now.
            self.pending.settle(state_vector)
        return waits(update, state_vector)

    def hold(self, member: Member | None, update: bytes) -> bool:
        """Charge an update that waits inside the document; False when it was dropped.

        Past the connection's or the room's budget, the sender's held updates are dropped
        (a rebuild of the document) and the sender is closed with 4029: a y-websocket
        client reconnects and syncs, which sends what was missing, if it has it.
        """
        owner = member.conn_id if member is not None else None
        self.pending.add(Held(update, owner, trio.current_time()))
        self._peak_bytes = max(self._peak_bytes, self._size() + self.pending.total)
        self._added.set()
        if self._over_budget(member) is None:
            return True
        # Maybe some are resolved by now; only what still waits is held against the budget.
        self.pending.settle(self._document.doc.get_state())
        why = self._over_budget(member)
        if why is None:
            return True
        self._drop([held for held in self.pending.held if held.owner == owner], why=why)
        if member is not None:
            self._stats.pending_closes += 1
            send_error(member, closes.PENDING_LIMIT.reason_code, closes.PENDING_LIMIT.text)
            member.outbound.close(closes.PENDING_LIMIT, flush=True)
        return False

    def _over_budget(self, member: Member | None) -> str | None:
        """The budget the held updates exceed, the member's first; None: within both."""
        limits = self._config
        if member is not None and (
            self.pending.of(member.conn_id) > limits.max_pending_bytes_per_connection
            or self.pending.count_of(member.conn_id) > MAX_HELD_PER_CONNECTION
        ):
            return "connection_budget"
        if (
            self.pending.total > limits.max_pending_bytes
            or len(self.pending.held) > MAX_HELD_PER_ROOM
        ):
            return "room_budget"
        return None

    def hold_stored(self, stored: list[bytes]) -> None:
        """After a load: stored updates that still wait are held (and bounded) like others."""
        if not stored:
            return
        state_vector = self._document.doc.get_state()
        for update in stored:
            if waits(update, state_vector):
                self.pending.add(Held(update, None, trio.current_time()))
        if self.pending:
            self._added.set()
            log.info("room.pending_loaded room=%s bytes=%d", self._key, self.pending.total)
        if self.pending.total > self._config.max_pending_bytes:
            self._drop(list(self.pending.held), why="load_budget")

    def _drop(self, dropped: list[Held], *, why: str) -> None:
        """Forget held updates: rebuild the document from its state plus those kept.

        `get_update()` leaves pending structs out, so the rebuild holds everything that
        was integrated and nothing that was dropped. The raw bytes may already be in the
        store's log (see `Room._apply`): the hooks forget them, or a reload would hold
        them again.
        """
        if not dropped:
            return
        self.pending.remove(dropped)
        held_now = list(self.pending.held)
        refused = self._document.rebuild(held.update for held in held_now)
        self._applied.clear()
        self.pending.clear()
        for held in held_now:
            if held.update in refused:
                # yrs took it once; should it refuse it now, it goes with the others.
                dropped.append(held)
            else:
                self.pending.add(held)
        # Not kept in the store either: never written if still buffered, and removed from
        # the log by the next snapshot (which a retiring room then takes, too).
        self._hooks.discard(self._key, [held.update for held in dropped])
        self._snapshots.changed(trigger=False)
        size = sum(len(held.update) for held in dropped)
        self._stats.pending_dropped_updates += len(dropped)
        self._stats.pending_dropped_bytes += size
        self._stats.last_pending_drop_at = trio.current_time()
        log.warning(
            "room.pending_dropped room=%s why=%s updates=%d bytes=%d still_held=%d",
            self._key,
            why,
            len(dropped),
            size,
            self.pending.total,
        )

    async def watch(self) -> None:
        """While updates are held: forget resolved ones, drop those past `pending_timeout`."""
        timeout = self._config.pending_timeout
        while True:
            await self._added.wait()
            self._added = trio.Event()
            while self.pending:
                await trio.sleep(min(PENDING_CHECK_SECONDS, timeout))
                self.pending.settle(self._document.doc.get_state())
                expired = self.pending.older_than(trio.current_time() - timeout)
                if expired:
                    self._drop(expired, why="timeout")
            if self._peak_bytes - self._size() > TRIM_AFTER_BYTES:
                # Nothing held any more (resolved, expired, or dropped over a budget): the
                # memory it took goes back to the OS, not only to the allocator.
                self._peak_bytes = self._size()
                await trio.to_thread.run_sync(trim_memory)
