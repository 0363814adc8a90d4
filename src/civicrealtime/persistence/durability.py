"""What of each room's updates is durable, told back to the rooms (docs/saved.md).

The writer (writer.py) numbers every update a room hands it, in order (a receipt). This
is its bookkeeping of durability in those terms: `durable(room)` is the highest receipt up
to which every update of the room is durable (in a committed log append, or in a snapshot
that holds it). After each flusher tick the writer calls `announce`: the rooms that
`watch` are told of a higher one, or that the store started or stopped failing, from the
trio task, never from the store's thread. A notifier that cannot take it now (a full
mailbox) is told again at the next tick. The flusher ticks every `flush_ms` from the start of
the previous flush, not from its end: an update waits at most `flush_ms` plus one append
before it is durable (and acknowledged as saved), not `flush_ms` plus two.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import attrs
import trio

# Told a room's durable receipt and whether the store is failing, when either changed;
# returns False when it could not take it now.
DurableNotifier = Callable[[int, bool], bool]


@attrs.define
class Buffered:
    """An update the writer holds until its append commits."""

    receipt: int
    data: bytes
    at: float = attrs.field(factory=trio.current_time)  # arrival: the age of unsaved changes


class Durability:
    """Reads the writer's buffers and receipts (its own dicts, shared, never changed here)."""

    def __init__(
        self, buffers: Mapping[str, Sequence[Buffered]], receipts: Mapping[str, int]
    ) -> None:
        self._buffers = buffers
        self._receipts = receipts
        # The first receipt shed per room (not durable until a snapshot holds it) and its
        # arrival; who is told of progress, and what they were last told.
        self._shed_from: dict[str, tuple[int, float]] = {}
        self._watchers: dict[str, DurableNotifier] = {}
        self._told: dict[str, tuple[int, bool]] = {}

    def durable(self, room_id: str) -> int:
        """The highest receipt up to which every update of the room is durable.

        Receipts are handed out in order, and an update leaves the buffer only when the
        append holding it committed. A snapshot does not count for buffered updates: one
        still pending in the document is not in the snapshot's state, only in the log to
        come. Shed updates are durable once a snapshot holds them; the first one shed
        bounds the answer until then, so the answer never runs ahead.
        """
        buffered = self._buffers.get(room_id)
        upto = buffered[0].receipt - 1 if buffered else self._receipts.get(room_id, 0)
        shed = self._shed_from.get(room_id)
        if shed is not None:
            upto = min(upto, shed[0] - 1)
        return upto

    def shed(self, room_id: str, first: Buffered) -> None:
        """The room's buffered updates from `first` on were shed (its document holds them)."""
        self._shed_from.setdefault(room_id, (first.receipt, first.at))

    def snapshot_holds_shed(self, room_id: str) -> None:
        """A snapshot stored every update the room had shed."""
        self._shed_from.pop(room_id, None)

    def watch(self, room_id: str, notify: DurableNotifier) -> None:
        """Tell `notify` the room's durable receipt when it grows, and when the store starts
        or stops failing (one room, one watcher)."""
        self._watchers[room_id] = notify
        self._told[room_id] = (self.durable(room_id), False)

    def unwatch(self, room_id: str, notify: DurableNotifier) -> None:
        # A successor room of the same key may have replaced the watcher already. Equality,
        # not identity: each access to a bound method makes a new object.
        if self._watchers.get(room_id) == notify:
            del self._watchers[room_id]
            self._told.pop(room_id, None)

    def announce(self, *, failing: bool) -> None:
        """Tell each watching room whose durable receipt grew, or whose store started or
        stopped failing; retried while refused."""
        for room_id, notify in list(self._watchers.items()):
            durable = self.durable(room_id)
            told, told_failing = self._told.get(room_id, (0, False))
            changed = durable > told or failing != told_failing
            if changed and notify(durable, failing):
                self._told[room_id] = (durable, failing)

    def oldest_unsaved_seconds(self) -> float:
        """Age of the oldest received update not durable yet (0 when there is none)."""
        oldest: float | None = None
        for buffered in self._buffers.values():
            if buffered and (oldest is None or buffered[0].at < oldest):
                oldest = buffered[0].at
        for _, at in self._shed_from.values():
            if oldest is None or at < oldest:
                oldest = at
        return 0.0 if oldest is None else trio.current_time() - oldest
