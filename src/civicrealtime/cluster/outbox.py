"""The publish buffer: what this node still has to write to Redis, in order, bounded.

Rooms hand it entries without waiting (`push`); the publisher task takes batches from the
front (`take`), and gives a batch back when Redis refused it (`give_back`), so order is
kept and nothing is lost while Redis is unreachable, up to `limit` bytes. Past the limit:

1. presence entries (awareness, queries) are dropped: clients repeat their presence every
   15 s, and a node that reconnects asks for it again;
2. each room's waiting updates are merged into one (a Yjs merge loses nothing);
3. if that is still too much, the largest rooms' updates are dropped, with an ERROR line.
   Their origin's store has them (every update is logged there too), and once Redis is
   back a `reload` entry makes the other nodes reload those rooms from the store.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable

import attrs
import pycrdt

from .entries import DATA, KIND, RELOAD, UPDATE

log = logging.getLogger("civicrealtime.cluster")

# Fixed cost counted per entry besides its data (field names, node id, stream key).
ENTRY_OVERHEAD = 64


@attrs.define(eq=False)
class Outgoing:
    stream: bytes
    fields: dict[bytes, bytes]
    room: str | None = None  # None: not a room's entry (revocations)
    maxlen: int = 10000  # the stream is trimmed to about this many entries
    expire_ms: int | None = None  # the stream expires this long after its last entry

    @property
    def kind(self) -> bytes:
        return self.fields.get(KIND, b"")

    @property
    def size(self) -> int:
        return ENTRY_OVERHEAD + sum(len(v) for v in self.fields.values())


class PublishBuffer:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._queue: deque[Outgoing] = deque()
        self._bytes = 0
        self._in_flight = 0  # bytes taken by the publisher and not yet confirmed
        # Rooms whose updates were dropped: the others must reload them from the store.
        self.dropped_rooms: set[str] = set()
        self.dropped_updates = 0
        self._overflowing = False

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def bytes(self) -> int:
        return self._bytes + self._in_flight

    def push(self, item: Outgoing) -> None:
        self._queue.append(item)
        self._bytes += item.size
        if self.bytes > self.limit:
            self._compact()
        elif self._overflowing and self.bytes <= self.limit // 2:
            self._overflowing = False

    def take(self, count: int) -> list[Outgoing]:
        batch: list[Outgoing] = []
        while self._queue and len(batch) < count:
            item = self._queue.popleft()
            self._bytes -= item.size
            self._in_flight += item.size
            batch.append(item)
        return batch

    def give_back(self, batch: Iterable[Outgoing]) -> None:
        """The batch was not (surely) published: it goes first again, in its order."""
        items = list(batch)
        for item in reversed(items):
            self._queue.appendleft(item)
            self._in_flight -= item.size
            self._bytes += item.size
        if self.bytes > self.limit:
            self._compact()

    def done(self, batch: Iterable[Outgoing]) -> None:
        for item in batch:
            self._in_flight -= item.size

    # -- overflow ------------------------------------------------------------------------------

    def _compact(self) -> None:
        before, count = self.bytes, len(self._queue)
        kept = [item for item in self._queue if item.room is None or item.kind in (UPDATE, RELOAD)]
        self._replace(kept)
        if self.bytes > self.limit:
            self._replace(_merged(self._queue))
        if not self._overflowing:
            self._overflowing = True
            log.error(
                "cluster.publish_overflow bytes=%d limit=%d entries=%d -> bytes=%d entries=%d: "
                "Redis is not taking our entries; presence dropped, updates merged per room",
                before,
                self.limit,
                count,
                self.bytes,
                len(self._queue),
            )
        if self.bytes > self.limit:
            self._drop_largest_rooms()

    def _drop_largest_rooms(self) -> None:
        sizes: dict[str, int] = {}
        for item in self._queue:
            if item.room is not None and item.kind == UPDATE:
                sizes[item.room] = sizes.get(item.room, 0) + item.size
        target = self.limit * 3 // 4
        victims: set[str] = set()
        freed = 0
        for room in sorted(sizes, key=sizes.__getitem__, reverse=True):
            if self.bytes - freed <= target:
                break
            victims.add(room)
            freed += sizes[room]
        dropped = [i for i in self._queue if i.room in victims and i.kind == UPDATE]
        self._replace([i for i in self._queue if not (i.room in victims and i.kind == UPDATE)])
        self.dropped_updates += len(dropped)
        self.dropped_rooms |= victims
        for room in sorted(victims):
            log.error(
                "cluster.publish_dropped room=%s bytes=%d: over cluster.publish_buffer_bytes=%d "
                "while Redis is unreachable; the store has these updates, and the other nodes "
                "reload the room from it once Redis is back",
                room,
                sizes[room],
                self.limit,
            )

    def _replace(self, items: Iterable[Outgoing]) -> None:
        self._queue = deque(items)
        self._bytes = sum(item.size for item in self._queue)


def _merged(items: Iterable[Outgoing]) -> list[Outgoing]:
    """One update per room (at the place of its last one); other entries untouched."""
    items = list(items)
    by_room: dict[str, list[Outgoing]] = {}
    for item in items:
        if item.room is not None and item.kind == UPDATE:
            by_room.setdefault(item.room, []).append(item)
    last = {id(group[-1]): group for group in by_room.values()}
    out: list[Outgoing] = []
    for item in items:
        if item.room is None or item.kind != UPDATE:
            out.append(item)
            continue
        group = last.get(id(item))
        if group is None:
            continue  # merged into the room's last entry
        if len(group) == 1:
            out.append(item)
            continue
        try:
            merged = pycrdt.merge_updates(*(g.fields[DATA] for g in group))
        except Exception:  # noqa: BLE001 - a malformed update: keep the room's entries as they are
            out.extend(group)
            continue
        out.append(attrs.evolve(item, fields={**item.fields, DATA: merged}))
    return out
