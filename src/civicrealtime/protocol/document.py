"""A server document that splits characters the way Yjs does: the one way updates go in.

yrs, given a split at a UTF-16 offset between the two halves of a surrogate pair, keeps
the whole character on the left and leaves an empty right part whose length no longer
matches its clocks (y-crdt/y-crdt#399, see docs/upstream/yrs-surrogate-split.md). Yjs,
the editors' implementation, replaces each lone half with U+FFFD (`ContentString.splice`).
Left alone, the server would then hold `😀` where its editors hold `\\uFFFD\\uFFFD`, serve
a state that Yjs decodes as other text, and eventually one that Yjs refuses.

`YDocument.apply` contains it. Every update's split points are read from its bytes
(`ystructs`): after each origin, at each right origin, at both ends of each deleted range.
The document keeps an index of the clocks that hold the low half of a pair in a string
item. When a split point lands on one, that character is rewritten as two U+FFFD before
yrs sees the split: in the incoming update if the item is there, in the pending updates,
and in the document itself, rebuilt from its rewritten state. The rewrite keeps the UTF-16
length, so clocks do not move; yrs then splits between two BMP characters, like Yjs.

Only this module feeds updates into a server's pycrdt `Doc`: rooms (clients, other nodes,
hydration), compaction and the CLIs, so that a log replayed after a restart ends where the
live room was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from pycrdt import Doc, TransactionEvent

from .errors import MalformedMessage
from .updates import InvalidUpdate, decode_state_vector, guarded, precheck_update
from .varint import encode_var_string
from .ystructs import StringItem, UpdateLayout, read_layout, utf16_length

log = logging.getLogger("civicrealtime.document")

_REPLACEMENT_PAIR = "\ufffd\ufffd"

Point = tuple[int, int]


class YDocument:
    """A pycrdt `Doc` fed only through `apply`, which contains surrogate-pair splits.

    `doc` may be replaced by a new `Doc` when a split is contained: read it at the time of
    use, never keep it. `on_change` receives each transaction's update (the changes
    actually integrated), as a `Doc.observe` callback would, across replacements.
    """

    def __init__(
        self,
        *,
        label: str = "",
        on_change: Callable[[bytes], None] | None = None,
    ) -> None:
        self.label = label
        self._on_change = on_change
        self._doc: Doc[Any] = Doc()
        self._subscription = self._observe(self._doc)
        # {client: clocks holding the low half of a pair}: a superset, checked against the
        # real state before any rewrite (deleted items are not removed from it).
        self._pairs: dict[int, set[int]] = {}
        # Updates whose structs or deletions wait for missing dependencies, with their
        # layouts: yrs keeps them out of `get_update()`, so a rebuild re-applies them.
        self._pending: list[tuple[bytes, UpdateLayout]] = []
        # A lower bound of the document's state vector (states only grow): an update that
        # surely integrates against it needs no `get_state()`, a transaction in pycrdt.
        self._known: dict[int, int] = {}
        # The last `apply` left nothing waiting, judged without asking yrs (False: unknown).
        self.integrated = False
        self.splits_contained = 0

    @property
    def doc(self) -> Doc[Any]:
        return self._doc

    @property
    def waiting(self) -> int:
        """How many applied updates still wait, whole or in part, for their dependencies."""
        return len(self._pending)

    def close(self) -> None:
        """Drop the observer: pycrdt holds it from Rust, a cycle the GC cannot see."""
        if self._subscription is not None:
            self._doc.unobserve(self._subscription)
            self._subscription = None

    def apply(self, update: bytes) -> int:
        """Apply a peer's update; return how many split characters were contained.

        Raises `InvalidUpdate` and leaves the document unchanged when pycrdt rejects it, or
        when its structs cannot be read (so neither can its split points).
        """
        self.integrated = False
        precheck_update(update)
        try:
            layout = read_layout(update)
        except MalformedMessage as exc:
            # Refused, not applied as is: the reader follows every update Yjs 13 and yrs
            # encode, so this one is hand-made, and its split points are unknown. yrs takes
            # some of them (a var-uint padded to 10 bytes, an unknown content ref), and
            # applied raw they split a surrogate pair the yrs way: the server's text then
            # differs from its editors' (tests/protocol/test_document.py).
            raise InvalidUpdate(f"update layout: {exc}") from exc
        beyond = _beyond_clock_limit(layout)
        if beyond is not None:
            client, clock = beyond
            raise InvalidUpdate(
                f"clock {clock} of client {client} is past what yrs can hold (2^32): "
                "it would wrap, and the server would hold other text than its editors"
            )
        return self._apply_contained(update, layout)

    def reindex(self) -> None:
        """Learn the pairs of the whole state, after a write that bypassed `apply` (a seed)."""
        try:
            self._pairs = _pairs_of(read_layout(self._doc.get_update()).strings)
        except MalformedMessage:
            log.exception("text.state_unreadable doc=%s", self.label)
            return
        for _, pending_layout in self._pending:
            _add_pairs(self._pairs, _pairs_of(pending_layout.strings))

    def rebuild(self, waiting: Iterable[bytes]) -> list[bytes]:
        """Start again from the integrated state, then apply `waiting`; return those refused.

        Every other update that waits for missing dependencies is forgotten: `get_update()`
        leaves them out (the room's budget for held updates drops them this way). The
        observer sees the re-applied updates, not the state.
        """
        state = self._doc.get_update()
        client_id = self._doc.client_id
        self.close()
        self._doc = Doc(client_id=client_id)
        self._pending = []
        self._known = {}
        self._apply_raw(self._doc, state)
        self.reindex()
        self._subscription = self._observe(self._doc)
        refused = []
        for update in waiting:
            try:
                self.apply(update)
            except InvalidUpdate:
                refused.append(update)
        return refused

    def reset(self) -> None:
        """Empty, without an observer: the room is gone and its memory goes with this."""
        self.close()
        self._doc = Doc()
        self._pending = []
        self._pairs = {}
        self._known = {}

    # -- containment -----------------------------------------------------------------------

    def _apply_contained(self, update: bytes, layout: UpdateLayout) -> int:
        incoming = _pairs_of(layout.strings)
        points = set(layout.split_points)
        for _, pending_layout in self._pending:
            points |= pending_layout.split_points
            _add_pairs(incoming, _pairs_of(pending_layout.strings))
        bad = (
            {
                (client, clock)
                for client, clock in points
                if clock in self._pairs.get(client, ()) or clock in incoming.get(client, ())
            }
            if self._pairs or incoming
            else set()
        )
        if not bad:
            self._apply_raw(self._doc, update)
            _add_pairs(self._pairs, incoming)
            self._track_pending(update, layout)
            return 0
        contained: set[Point] = set()
        update, layout = _rewrite(update, layout, bad, contained)
        pending = [_rewrite(raw, lay, bad, contained) for raw, lay in self._pending]
        original = self._doc.get_update()
        try:
            original_layout = read_layout(original)
        except MalformedMessage:
            # yrs encoded something this reader cannot follow: nothing to rewrite there.
            # Never expected; said loudly, and the update still goes in.
            log.exception("text.state_unreadable doc=%s", self.label)
            original_layout = UpdateLayout(
                strings=(), split_points=frozenset(), reach={}, structs={}, needs={}, has_skip=False
            )
        state, state_layout = _rewrite(original, original_layout, bad, contained)
        doc = self._doc
        if state is not original or any(
            new is not old for (new, _), (old, _) in zip(pending, self._pending, strict=True)
        ):
            # The document (or a pending update inside it) holds a rewritten character:
            # rebuild it. The new Doc gets its observer only after the rebuild, which
            # changes nothing a peer does not already have.
            doc = Doc(client_id=self._doc.client_id)
            self._apply_raw(doc, state)
            for raw, _ in pending:
                self._apply_raw(doc, raw)
        replaced = doc is not self._doc
        subscription = self._observe(doc) if replaced else None
        try:
            self._apply_raw(doc, update)
        except InvalidUpdate:
            if subscription is not None:
                doc.unobserve(subscription)
            raise
        if replaced:
            self.close()
            self._doc, self._subscription = doc, subscription
            self._pending = pending
        self._pairs = _pairs_of(state_layout.strings)
        for _, pending_layout in self._pending:
            _add_pairs(self._pairs, _pairs_of(pending_layout.strings))
        _add_pairs(self._pairs, _pairs_of(layout.strings))
        self._track_pending(update, layout)
        self.splits_contained += len(contained)
        for client, clock in sorted(contained):
            # Per character, for whoever investigates; the room logs each event as a warning.
            log.info("text.split_contained doc=%s client=%d clock=%d", self.label, client, clock)
        return len(contained)

    def _track_pending(self, update: bytes, layout: UpdateLayout) -> None:
        """Keep `update` if part of it waits; drop the pending ones now integrated."""
        if not self._pending and _surely_integrated(layout, self._known):
            self.integrated = True
            return
        self.integrated = False
        state = decode_state_vector(self._doc.get_state())
        self._known = state
        self._pending = [(raw, lay) for raw, lay in self._pending if not _integrated(lay, state)]
        if not _integrated(layout, state):
            self._pending.append((update, layout))

    def _apply_raw(self, doc: Doc[Any], update: bytes) -> None:
        guarded(lambda: doc.apply_update(update), "update")

    def _observe(self, doc: Doc[Any]) -> Any:
        if self._on_change is None:
            return None
        on_change = self._on_change

        def changed(event: TransactionEvent) -> None:
            on_change(event.update)

        return doc.observe(changed)


# yrs keeps clocks in 32 bits: a struct, a deletion or a reference past 2^32 wraps to a
# small clock there, while Yjs (53-bit clocks) keeps it. No honest client gets near it.
CLOCK_LIMIT = 1 << 32


def _beyond_clock_limit(layout: UpdateLayout) -> tuple[int, int] | None:
    """(client, clock) of the first clock in the update past `CLOCK_LIMIT`, if any."""
    for ends in (layout.reach, layout.needs):
        for client, clock in ends.items():
            if clock > CLOCK_LIMIT:
                return client, clock
    return None


def _surely_integrated(layout: UpdateLayout, known: dict[int, int]) -> bool:
    """Whether nothing in `layout`'s update can wait, judged from `known` alone.

    Sufficient, not necessary: each client's structs start within the known state, and
    every id they reference and every range they delete is known or carried. When true,
    `known` is advanced past the update's structs.
    """
    if layout.has_skip:
        return False
    structs = layout.structs
    for client, (first, _) in structs.items():
        if first > known.get(client, 0):
            return False

    def reached(client: int) -> int:
        span = structs.get(client)
        return max(known.get(client, 0), span[1] if span is not None else 0)

    if any(clock > reached(client) for client, clock in layout.needs.items()):
        return False
    if any(clock > reached(client) for client, clock in layout.reach.items()):
        return False
    for client, (_, past) in structs.items():
        if past > known.get(client, 0):
            known[client] = past
    return True


def _integrated(layout: UpdateLayout, state: dict[int, int]) -> bool:
    return all(state.get(client, 0) >= clock for client, clock in layout.reach.items())


def _pairs_of(strings: Iterable[StringItem]) -> dict[int, set[int]]:
    pairs: dict[int, set[int]] = {}
    for item in strings:
        clocks = item.pair_clocks()
        if clocks:
            pairs.setdefault(item.client, set()).update(clocks)
    return pairs


def _add_pairs(into: dict[int, set[int]], more: dict[int, set[int]]) -> None:
    for client, clocks in more.items():
        into.setdefault(client, set()).update(clocks)


def _rewrite(
    update: bytes, layout: UpdateLayout, bad: set[Point], contained: set[Point]
) -> tuple[bytes, UpdateLayout]:
    """`update` with each pair split by a point of `bad` written as two U+FFFD.

    The points rewritten are added to `contained`. Returns the update unchanged (same
    object) when none of its string items holds such a pair.
    """
    edits: list[tuple[StringItem, str]] = []
    for item in layout.strings:
        hits = [clock for clock in item.pair_clocks() if (item.client, clock) in bad]
        if not hits:
            continue
        contained.update((item.client, clock) for clock in hits)
        edits.append((item, _replace_pairs(item, set(hits))))
    if not edits:
        return update, layout
    out = bytearray(update)
    for item, text in sorted(edits, key=lambda edit: edit[0].start, reverse=True):
        out[item.start : item.end] = encode_var_string(text)
    rewritten = bytes(out)
    return rewritten, read_layout(rewritten)


def _replace_pairs(item: StringItem, low_clocks: set[int]) -> str:
    parts: list[str] = []
    clock = item.clock
    for char in item.text:
        if ord(char) > 0xFFFF:
            parts.append(_REPLACEMENT_PAIR if clock + 1 in low_clocks else char)
            clock += 2
        else:
            parts.append(char)
            clock += 1
    text = "".join(parts)
    assert utf16_length(text) == utf16_length(item.text)  # clocks must not move
    return text
