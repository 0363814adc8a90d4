"""The room's awareness (presence) states, without I/O.

An awareness update is a var-uint count, then for each entry a var-uint client id, a
var-uint clock and a var-string holding JSON (``null`` means the client left). The clock
rule is y-protocols': an entry wins when its clock is newer, or when it has the same clock
and removes a state we still hold.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import NoReturn

import attrs

from .errors import MalformedMessage
from .varint import Reader, encode_var_string, encode_var_uint

_NULL = "null"


@attrs.frozen(kw_only=True, slots=True)
class AwarenessEntry:
    client_id: int
    clock: int
    state: str  # JSON text; "null" for a removal


@attrs.frozen(kw_only=True, slots=True)
class AwarenessChange:
    """What one update did: client ids whose state was set, and ids whose state was removed.

    ``outranked`` holds ids whose state arrived no newer than the removal we hold for them:
    a client that comes back (after a network blip, or on another node) with the clock it
    had before the server removed it. y-protocols ignores such a state; the fix is to tell
    that client about the removal, which makes it raise its clock and announce itself again
    (`AwarenessStates.removals`).
    """

    updated: frozenset[int]
    removed: frozenset[int]
    outranked: frozenset[int] = frozenset()

    @property
    def changed(self) -> bool:
        return bool(self.updated or self.removed)


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def decode_awareness_update(payload: bytes) -> list[AwarenessEntry]:
    """Decode and validate an awareness update (each state must be JSON)."""
    reader = Reader(payload)
    count = reader.read_var_uint()
    # Each entry takes at least 3 bytes; a larger count is a lie, not a big update.
    if count * 3 > reader.remaining:
        raise MalformedMessage(f"awareness update claims {count} entries in {len(payload)} bytes")
    entries = []
    for _ in range(count):
        client_id = reader.read_var_uint()
        clock = reader.read_var_uint()
        state = reader.read_var_string()
        try:
            # JSON as JavaScript's `JSON.parse` reads it: no NaN or Infinity, which peers
            # could not parse, and deep nesting is refused rather than crashing the reader.
            value = json.loads(state, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            raise MalformedMessage("awareness state is not JSON") from exc
        if value is None:
            # y-protocols removes on `JSON.parse(state) === null`, whatever the whitespace.
            state = _NULL
        entries.append(AwarenessEntry(client_id=client_id, clock=clock, state=state))
    return entries


def encode_awareness_update(entries: Iterable[AwarenessEntry]) -> bytes:
    items = list(entries)
    out = bytearray(encode_var_uint(len(items)))
    for entry in items:
        out += encode_var_uint(entry.client_id)
        out += encode_var_uint(entry.clock)
        out += encode_var_string(entry.state)
    return bytes(out)


class AwarenessStates:
    """All awareness states of one room, with the clock of every client id ever seen."""

    __slots__ = ("_clocks", "_nudged", "_seq", "_stamps", "_states")

    def __init__(self) -> None:
        self._states: dict[int, str] = {}
        # Clocks outlive states: a late duplicate of an old update must stay ignored.
        self._clocks: dict[int, int] = {}
        # When each clock last moved, in changes applied (see `unchanged_since_removal`).
        self._stamps: dict[int, int] = {}
        self._seq = 0
        # The clock each client was last nudged at: never twice at the same clock.
        self._nudged: dict[int, int] = {}

    def _set_clock(self, client_id: int, clock: int) -> None:
        self._clocks[client_id] = clock
        self._seq += 1
        self._stamps[client_id] = self._seq

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, client_id: object) -> bool:
        return client_id in self._states

    def states(self) -> dict[int, str]:
        return dict(self._states)

    def apply(self, entries: Iterable[AwarenessEntry]) -> AwarenessChange:
        updated: set[int] = set()
        removed: set[int] = set()
        outranked: set[int] = set()
        for entry in entries:
            # An unknown client counts as clock 0, as in y-protocols: a first state at
            # clock 0 is ignored there, so we must not relay or count it either.
            current = self._clocks.get(entry.client_id, 0)
            is_removal = entry.state == _NULL
            if entry.clock > current or (
                entry.clock == current and is_removal and entry.client_id in self._states
            ):
                self._set_clock(entry.client_id, entry.clock)
                if is_removal:
                    self._nudged.pop(entry.client_id, None)
                    if self._states.pop(entry.client_id, None) is not None:
                        removed.add(entry.client_id)
                        updated.discard(entry.client_id)
                else:
                    self._states[entry.client_id] = entry.state
                    updated.add(entry.client_id)
                    removed.discard(entry.client_id)
                    outranked.discard(entry.client_id)
            elif (
                not is_removal
                and entry.client_id not in self._states
                and entry.client_id in self._clocks
            ):
                outranked.add(entry.client_id)
        return AwarenessChange(
            updated=frozenset(updated), removed=frozenset(removed), outranked=frozenset(outranked)
        )

    def removals(self, client_ids: Iterable[int]) -> bytes | None:
        """The removals we hold for these clients (their last clock, state null), if any.

        Sent to a client whose state came back outranked: its y-protocols code answers a
        removal of itself by raising its clock past it and re-sending its state.
        """
        entries = [
            AwarenessEntry(client_id=cid, clock=self._clocks[cid], state=_NULL)
            for cid in client_ids
            if cid not in self._states and cid in self._clocks
        ]
        return encode_awareness_update(entries) if entries else None

    def unchanged_since_removal(self, client_ids: Iterable[int]) -> set[int]:
        """Clients whose state has not changed since one of these clients was removed.

        A y-websocket client that loses its connection drops the states of the others but
        keeps their clocks, so when it comes back it ignores those states at the same clock
        (yjs/y-websocket#122): the others must each raise their clock once (`nudge`).
        A state that changed since then has a newer clock already and needs nothing.
        """
        since = max(
            (
                self._stamps[cid]
                for cid in client_ids
                if cid not in self._states and cid in self._stamps
            ),
            default=None,
        )
        if since is None:
            return set()
        return {cid for cid in self._states if self._stamps[cid] < since}

    def nudge(self, client_id: int) -> bytes | None:
        """Its own removal at its current clock, for a client that holds a state.

        Sent to that client only: y-protocols answers a removal of itself by raising its
        clock and re-sending its state, which then outranks what returning clients hold.
        """
        clock = self._clocks.get(client_id)
        if client_id not in self._states or clock is None or self._nudged.get(client_id) == clock:
            return None
        self._nudged[client_id] = clock
        entry = AwarenessEntry(client_id=client_id, clock=clock, state=_NULL)
        return encode_awareness_update([entry])

    def remove(self, client_ids: Iterable[int]) -> bytes | None:
        """Drop these clients' states; return the update that tells the others, if any."""
        entries = []
        for client_id in client_ids:
            if self._states.pop(client_id, None) is None:
                continue
            self._nudged.pop(client_id, None)
            clock = self._clocks.get(client_id, 0) + 1
            self._set_clock(client_id, clock)
            entries.append(AwarenessEntry(client_id=client_id, clock=clock, state=_NULL))
        return encode_awareness_update(entries) if entries else None

    def encode_all(self) -> bytes | None:
        """The update that carries every known state, or None when there is none."""
        if not self._states:
            return None
        return encode_awareness_update(
            AwarenessEntry(client_id=cid, clock=self._clocks[cid], state=state)
            for cid, state in self._states.items()
        )

    def forget_clocks(self, keep: Iterable[int] = ()) -> None:
        """Drop clocks of clients without a state (bounded memory in long-lived rooms)."""
        keep_set = set(keep) | set(self._states)
        self._clocks = {cid: clock for cid, clock in self._clocks.items() if cid in keep_set}
        self._stamps = {cid: stamp for cid, stamp in self._stamps.items() if cid in keep_set}
        self._nudged = {cid: clock for cid, clock in self._nudged.items() if cid in self._states}
