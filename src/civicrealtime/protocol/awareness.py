"""The room's awareness (presence) states, without I/O.

An awareness update is a var-uint count, then for each entry a var-uint client id, a
var-uint clock and a var-string holding JSON (``null`` means the client left). The clock
rule is y-protocols': an entry wins when its clock is newer, or when it has the same clock
and removes a state we still hold.

Clocks stop at the top of lib0's range (2**53 - 1). JavaScript cannot count past 2**53
(2**53 + 1 == 2**53), so a y-protocols client there is stuck anyway; the room's own
removal then keeps the clock instead of raising it, which is the removal y-protocols'
reference server always sends and which every peer holding the state accepts.

Every member may be hostile, so decoding takes limits (`AwarenessLimits`): the entry count
and the update's size are checked before any entry is read, each state's size before it
is parsed. An honest frame can still hold every state of the room (y-websocket clients
echo each update they apply, the join frame included), so the limits follow the room's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import NoReturn

import attrs

from .errors import MalformedMessage
from .varint import MAX_SAFE_INTEGER, Reader, encode_var_string, encode_var_uint

_NULL = "null"
# Bytes an entry may take besides its state: client id and clock (8 bytes each at most,
# lib0's safe range) and the state's length prefix (4 bytes up to 256 MiB).
ENTRY_OVERHEAD = 20


def removal_clock(clock: int) -> int:
    """The clock of a removal the server sends for a state held at `clock`.

    One more, as y-protocols does for its own state; at the top of the range the same
    clock, which peers accept for a state they hold (and which never overflows a var-uint).
    """
    return min(clock + 1, MAX_SAFE_INTEGER)


@attrs.frozen(kw_only=True, slots=True)
class AwarenessLimits:
    """What one awareness update may hold; beyond it, it is refused before being decoded."""

    max_entries: int
    max_state_bytes: int
    max_update_bytes: int

    @classmethod
    def for_room(cls, *, max_states: int, max_state_bytes: int, max_bytes: int) -> AwarenessLimits:
        """Room-sized: an honest update (an echo of the join frame) holds the whole room."""
        return cls(
            max_entries=max_states,
            max_state_bytes=max_state_bytes,
            max_update_bytes=max_bytes + max_states * ENTRY_OVERHEAD + 16,
        )


class AwarenessRefused(MalformedMessage):
    """A well-formed update over a configured limit; `label` names the limit (metrics)."""

    def __init__(self, label: str, detail: str) -> None:
        super().__init__(detail)
        self.label = label


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

    ``refused`` holds ids whose newer state did not fit in the room's bounds (`apply`).
    """

    updated: frozenset[int]
    removed: frozenset[int]
    outranked: frozenset[int] = frozenset()
    refused: frozenset[int] = frozenset()

    @property
    def changed(self) -> bool:
        return bool(self.updated or self.removed)


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def decode_awareness_update(
    payload: bytes, limits: AwarenessLimits | None = None
) -> list[AwarenessEntry]:
    """Decode and validate an awareness update (each state must be JSON).

    With `limits`, an update over them raises `AwarenessRefused`, after O(1) work for its
    size and count, and before parsing the state that is too large.
    """
    if limits is not None and len(payload) > limits.max_update_bytes:
        raise AwarenessRefused(
            "update_too_large",
            f"awareness update of {len(payload)} bytes (limit {limits.max_update_bytes})",
        )
    reader = Reader(payload)
    count = reader.read_var_uint()
    # Each entry takes at least 3 bytes; a larger count is a lie, not a big update.
    if count * 3 > reader.remaining:
        raise MalformedMessage(f"awareness update claims {count} entries in {len(payload)} bytes")
    if limits is not None and count > limits.max_entries:
        raise AwarenessRefused(
            "too_many_entries",
            f"awareness update of {count} entries (limit {limits.max_entries})",
        )
    max_state = limits.max_state_bytes if limits is not None else None
    entries = []
    for _ in range(count):
        client_id = reader.read_var_uint()
        clock = reader.read_var_uint()
        raw = reader.read_var_bytes()
        if max_state is not None and len(raw) > max_state:
            raise AwarenessRefused(
                "state_too_large",
                f"awareness state of {len(raw)} bytes (limit {max_state})",
            )
        try:
            state = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedMessage("string is not valid UTF-8") from exc
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


def _size(state: str) -> int:
    return len(state.encode("utf-8")) + ENTRY_OVERHEAD


class AwarenessStates:
    """All awareness states of one room, with the clock of every client id ever seen.

    Bounded: `max_states` states of at most `max_bytes` in all (each counted as its UTF-8
    size plus `ENTRY_OVERHEAD`), and the clocks of at most `max_departed` clients without
    a state (the oldest are forgotten first).
    """

    __slots__ = (
        "_bytes",
        "_clocks",
        "_everyone",
        "_max_bytes",
        "_max_departed",
        "_max_states",
        "_nudged",
        "_seq",
        "_stamps",
        "_states",
    )

    def __init__(
        self,
        *,
        max_states: int | None = None,
        max_bytes: int | None = None,
        max_departed: int = 4096,
    ) -> None:
        self._states: dict[int, str] = {}
        # Clocks outlive states: a late duplicate of an old update must stay ignored.
        self._clocks: dict[int, int] = {}
        # When each clock last moved, in changes applied (see `unchanged_since_removal`).
        self._stamps: dict[int, int] = {}
        self._seq = 0
        # The clock each client was last nudged at: never twice at the same clock.
        self._nudged: dict[int, int] = {}
        self._bytes = 0
        # `encode_all`'s answer until a state or a clock changes: every join and every
        # query asks for it, and it may hold a whole room's presence.
        self._everyone: bytes | None = None
        self._max_states = max_states
        self._max_bytes = max_bytes
        self._max_departed = max_departed

    def _set_clock(self, client_id: int, clock: int) -> None:
        self._everyone = None
        self._clocks[client_id] = clock
        self._seq += 1
        self._stamps[client_id] = self._seq

    def _set_state(self, client_id: int, state: str) -> None:
        self._everyone = None
        old = self._states.get(client_id)
        if old is not None:
            self._bytes -= _size(old)
        self._states[client_id] = state
        self._bytes += _size(state)

    def _drop_state(self, client_id: int) -> bool:
        old = self._states.pop(client_id, None)
        if old is None:
            return False
        self._everyone = None
        self._bytes -= _size(old)
        self._nudged.pop(client_id, None)
        return True

    def _fits(self, client_id: int, state: str) -> bool:
        old = self._states.get(client_id)
        if old is None and self._max_states is not None and len(self._states) >= self._max_states:
            return False
        if self._max_bytes is None:
            return True
        grown = self._bytes + _size(state) - (_size(old) if old is not None else 0)
        return grown <= self._max_bytes

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, client_id: object) -> bool:
        return client_id in self._states

    @property
    def nbytes(self) -> int:
        """The states' size as the bounds count it."""
        return self._bytes

    def clock_of(self, client_id: int) -> int:
        """The clock held for a client; 0 for one never seen, as in y-protocols."""
        return self._clocks.get(client_id, 0)

    def states(self) -> dict[int, str]:
        return dict(self._states)

    def apply(self, entries: Iterable[AwarenessEntry]) -> AwarenessChange:
        updated: set[int] = set()
        removed: set[int] = set()
        outranked: set[int] = set()
        refused: set[int] = set()
        for entry in entries:
            # An unknown client counts as clock 0, as in y-protocols: a first state at
            # clock 0 is ignored there, so we must not relay or count it either.
            current = self._clocks.get(entry.client_id, 0)
            is_removal = entry.state == _NULL
            if entry.clock > current or (
                entry.clock == current and is_removal and entry.client_id in self._states
            ):
                if is_removal:
                    self._set_clock(entry.client_id, entry.clock)
                    if self._drop_state(entry.client_id):
                        removed.add(entry.client_id)
                        updated.discard(entry.client_id)
                elif not self._fits(entry.client_id, entry.state):
                    # Neither the state nor its clock: the client's next update may fit.
                    refused.add(entry.client_id)
                else:
                    self._set_clock(entry.client_id, entry.clock)
                    self._set_state(entry.client_id, entry.state)
                    updated.add(entry.client_id)
                    removed.discard(entry.client_id)
                    outranked.discard(entry.client_id)
                    refused.discard(entry.client_id)
            elif (
                not is_removal
                and entry.client_id not in self._states
                and entry.client_id in self._clocks
            ):
                outranked.add(entry.client_id)
        if len(self._clocks) - len(self._states) > 2 * self._max_departed:
            self._forget_oldest_departed()
        return AwarenessChange(
            updated=frozenset(updated),
            removed=frozenset(removed),
            outranked=frozenset(outranked),
            refused=frozenset(refused),
        )

    def _forget_oldest_departed(self) -> None:
        """Keep the `max_departed` newest clocks of clients without a state.

        Run when twice that many piled up, so its cost is spread over as many changes.
        """
        departed = sorted(
            (cid for cid in self._clocks if cid not in self._states),
            key=self._stamps.__getitem__,
        )
        for cid in departed[: len(departed) - self._max_departed]:
            del self._clocks[cid]
            del self._stamps[cid]

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
            if not self._drop_state(client_id):
                continue
            clock = removal_clock(self._clocks.get(client_id, 0))
            self._set_clock(client_id, clock)
            entries.append(AwarenessEntry(client_id=client_id, clock=clock, state=_NULL))
        return encode_awareness_update(entries) if entries else None

    def encode_current(self, client_ids: Iterable[int]) -> bytes:
        """These clients' states as held now (null for a removed one), at their clocks."""
        return encode_awareness_update(
            AwarenessEntry(
                client_id=cid, clock=self._clocks.get(cid, 0), state=self._states.get(cid, _NULL)
            )
            for cid in client_ids
        )

    def encode_all(self) -> bytes | None:
        """The update that carries every known state, or None when there is none."""
        if not self._states:
            return None
        if self._everyone is None:
            self._everyone = encode_awareness_update(
                AwarenessEntry(client_id=cid, clock=self._clocks[cid], state=state)
                for cid, state in self._states.items()
            )
        return self._everyone

    def forget_clocks(self, keep: Iterable[int] = ()) -> None:
        """Drop clocks of clients without a state (bounded memory in long-lived rooms)."""
        keep_set = set(keep) | set(self._states)
        self._clocks = {cid: clock for cid, clock in self._clocks.items() if cid in keep_set}
        self._stamps = {cid: stamp for cid, stamp in self._stamps.items() if cid in keep_set}
        self._nudged = {cid: clock for cid, clock in self._nudged.items() if cid in self._states}
