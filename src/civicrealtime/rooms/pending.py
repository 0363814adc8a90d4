"""Updates a room holds that wait for changes it never received ("pending" in yrs).

An update whose structs build on a clock the document has not seen (or that deletes items
it has not seen) is kept by yrs until the missing part arrives, outside the document:
`get_state()` does not show it and `get_update()` leaves it out. Unaccounted, one client
grew a room by 540 MiB in 12 s with such updates, past every size limit, and the memory
outlived the room. This module keeps the room's own list of them (raw bytes, who sent
them, when) so that the room can charge them to budgets, report them, and drop them.

Dropping is a rebuild: `get_update()` omits pending structs, so a fresh document fed the
current state (plus the pending updates to keep) has everything but the dropped ones.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs
import pycrdt

from ..protocol.errors import MalformedMessage
from ..protocol.updates import InvalidUpdate, decode_state_vector, guarded
from ..protocol.varint import Reader


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

    def __bool__(self) -> bool:
        return bool(self.held)

    def add(self, held: Held) -> None:
        self.held.append(held)
        self.total += len(held.update)
        self._by_owner[held.owner] = self._by_owner.get(held.owner, 0) + len(held.update)

    def of(self, owner: int | None) -> int:
        """Bytes held for one owner."""
        return self._by_owner.get(owner, 0)

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
        for held in kept:
            self.add(held)

    def older_than(self, cutoff: float) -> list[Held]:
        return [held for held in self.held if held.since < cutoff]

    def clear(self) -> None:
        self.remove(list(self.held))
