"""When a room writes its full state: after `max_updates` changes, every `interval`, on an
operator's request, and once more before it leaves memory; with a backoff while it fails.

`Snapshots` is a part of the room, not an actor: its loop (`run`) is a task in the room's
own nursery, and everything else is called from the room's task.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import trio

from ..config import SnapshotsConfig
from ..protocol.document import YDocument
from ..stats import Stats
from .hooks import RoomHooks, SnapshotFailed
from .relay import RoomRelay
from .types import RoomType

log = logging.getLogger("civicrealtime.room")

# Seconds between snapshot attempts of a room whose snapshots keep failing, at most.
SNAPSHOT_RETRY_MAX = 30.0


class Snapshots:
    """One room's snapshot bookkeeping: changes since the last one, and its trigger."""

    def __init__(
        self,
        *,
        key: str,
        room_id: str,
        config: SnapshotsConfig,
        hooks: RoomHooks,
        relay: RoomRelay,
        room_type: RoomType,
        document: YDocument,
        stats: Stats,
        on_written: Callable[[int], None],
    ) -> None:
        self._key = key
        self._room_id = room_id
        self._config = config
        self._hooks = hooks
        self._relay = relay
        self._type = room_type
        self._document = document
        self._stats = stats
        # Told the size of each snapshot written: the document's exact encoded size then.
        self._on_written = on_written
        # Changes received since the last snapshot, and what wakes the snapshotter early.
        self.owed = 0
        self._wanted = trio.Event()
        self.taken = 0
        self._failures = 0  # in a row

    @property
    def enabled(self) -> bool:
        return self._hooks.persistent and self._config.enabled

    def changed(self, count: int = 1, *, trigger: bool = True) -> None:
        """`count` changes the next snapshot must cover; past `max_updates`, take it soon.

        Without `trigger` the changes wait for the next interval (or the next change).
        """
        self.owed += count
        if trigger and self.owed >= self._config.max_updates:
            self._wanted.set()

    async def run(self) -> None:
        """Snapshot every `snapshots.interval` seconds when changed, or after `max_updates`."""
        interval = self._config.interval
        while True:
            with trio.move_on_after(interval if interval > 0 else math.inf):
                await self._wanted.wait()
            if self.owed:
                await self.take(why="trigger")
            if self._failures:
                # A failing store (full disk) is not retried at every update past
                # max_updates: each try costs a full-state write and a log line.
                await trio.sleep(min(SNAPSHOT_RETRY_MAX, 2 ** (self._failures - 1)))

    async def answer(self, reply: trio.MemorySendChannel[bool]) -> None:
        """An operator's request: take one now, and say whether it was written."""
        before = self.taken
        await self.take(why="admin")
        with reply:
            reply.send_nowait(self.taken > before)

    async def last(self) -> None:
        """Before the room leaves memory: what no snapshot covers yet, or the store holds
        unflushed, is written now."""
        if self.enabled and (self.owed or self._hooks.unflushed(self._key)):
            await self.take(why="retire")

    async def take(self, *, why: str) -> None:
        # State and mark are captured together, with no checkpoint in between: the
        # snapshot then covers exactly the updates received so far.
        if not self._relay.snapshot_allowed(self._key):
            # Another node holds this room's snapshot lease; its log has our updates. The
            # trigger is re-armed, or the snapshotter would spin on a set event.
            self._wanted = trio.Event()
            return
        state = self._document.doc.get_update()
        mark = self._hooks.mark(self._key)
        taken = self.owed
        self.owed = 0
        self._wanted = trio.Event()
        started = time.perf_counter()
        try:
            await self._hooks.snapshot(self._key, state, received=mark)
        except SnapshotFailed as exc:
            self.owed += taken
            self._failures += 1
            if self._failures == 1:
                # Later failures of the streak are in the store's summary lines.
                log.warning("snapshot.failed room=%s why=%s error=%s", self._key, why, exc)
            return
        if self._failures:
            log.info("snapshot.recovered room=%s failures=%d", self._key, self._failures)
            self._failures = 0
        self.taken += 1
        self._on_written(len(state))
        self._relay.snapshot_written(self._key)
        log.info(
            "snapshot.written room=%s why=%s bytes=%d updates=%d ms=%.1f",
            self._key,
            why,
            len(state),
            taken,
            (time.perf_counter() - started) * 1000,
        )
        try:
            await self._type.on_snapshot(self._room_id, self._document.doc)
        except Exception:
            # A draft that cannot be written never breaks editing or the binary snapshot.
            log.exception("room_type.on_snapshot_failed room=%s", self._key)
            self._stats.on_snapshot_failures += 1
