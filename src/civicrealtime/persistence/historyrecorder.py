"""`HistoryRecorder`: buffers attributed updates, writes them, and closes versions.

Rooms reach it through `PersistedRooms.received` (never waiting). Its task flushes the
buffer every `flush_s` in one `append_entries` call, and closes the version of every
room that has been quiet for `version_idle` seconds, or that left memory. At shutdown it
flushes and closes every open version, shielded, within `shutdown_timeout`.

A version's state is the previous version's state plus the version's entries, merged in
a thread. A room that had content before it had any history (a store upgraded from
schema 1, or history switched on later) first gets a "baseline" version holding what was
loaded, attributed to `import`, so that every version rebuilds the whole document.

Failures never stop editing: the entries stay buffered and the next tick retries
(`healthy` and `last_error` say what went wrong).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import attrs
import pycrdt
import trio
from pycrdt import Doc

from ..protocol.updates import apply_update, guarded
from ..rooms.origin import IMPORT_ORIGIN, Origin
from .errors import StoreError, StoreTimeout
from .history import (
    CHECKPOINT_UPDATES,
    Author,
    BlockChange,
    Entry,
    HistoryStore,
    Version,
    VersionReason,
    client_ids,
    count_authors,
    rebuild_version,
)
from .rebuild import merged_state, rebuild
from .rows import now_ms

log = logging.getLogger("civicrealtime.history")

DAY_MS = 86_400_000
# What one buffered entry costs besides its update's bytes (the Entry, its Origin, its
# client ids), counted against `max_buffer_bytes`: counting the data alone let a stream of
# tiny updates (an empty one is 2 bytes) hold millions of entries during an outage.
ENTRY_OVERHEAD = 256

# The blocks a version changed, from the state before it and its entries (run in a
# thread; records rooms: history_blame.changed_blocks). Injected so that persistence
# needs no knowledge of room types.
Analyse = Callable[[str, bytes | None, list[Entry]], list[BlockChange]]


class HistoryRecorder:
    def __init__(
        self,
        store: HistoryStore,
        *,
        node: str,
        version_idle: float = 120.0,
        retention_days: float | None = None,
        flush_s: float = 0.1,
        op_timeout: float = 30.0,
        shutdown_timeout: float = 5.0,
        clock: Callable[[], int] = now_ms,
        analyse: Analyse | None = None,
        max_buffer_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.store = store
        self.node = node
        self._idle = version_idle
        self._retention_ms = None if retention_days is None else int(retention_days * DAY_MS)
        self._flush_s = flush_s
        self._op_timeout = op_timeout
        self._shutdown_timeout = shutdown_timeout
        self._clock = clock
        self._buffer: list[Entry] = []
        self._buffered_bytes = 0
        self._max_buffer = max_buffer_bytes
        self.entries_shed = 0
        self._active: dict[str, float] = {}  # room -> trio time of its last update
        self._closing: set[str] = set()  # rooms that left memory: close at the next tick
        self._baselines: dict[str, list[bytes]] = {}
        self._analyse = analyse
        # The last version's state and the last checkpoint's seq, per room in memory.
        self._states: dict[str, tuple[int, bytes]] = {}
        self._since: dict[str, int] = {}
        self._lock = trio.Lock()  # one version close (or flush) at a time
        self._last_prune = -float("inf")
        self.healthy = True
        self.last_error: str | None = None
        self.entries_written = 0
        self.versions_closed = 0

    # -- what rooms call (never waits) -----------------------------------------------------

    def received(self, room_id: str, update: bytes, origin: Origin) -> None:
        self._buffer.append(
            Entry(
                room_id=room_id,
                seq=0,
                at_ms=self._clock(),
                origin=origin,
                node=self.node,
                client_ids=client_ids(update),
                data=update,
            )
        )
        self._buffered_bytes += len(update) + ENTRY_OVERHEAD
        if self._buffered_bytes > self._max_buffer:
            self._shed()
        self._active[room_id] = trio.current_time()
        self._closing.discard(room_id)

    def _shed(self) -> None:
        """Past the memory bound (the store has failed for long): drop the oldest entries.

        Their content is safe (the document store holds it, and the room's next load
        records it as an `import` entry); their authors are lost, which the ERROR says.
        """
        dropped = 0
        while dropped < len(self._buffer) and self._buffered_bytes > self._max_buffer * 3 // 4:
            self._buffered_bytes -= len(self._buffer[dropped].data) + ENTRY_OVERHEAD
            dropped += 1
        # One slice, not a pop(0) per entry: quadratic, in the room's task, over a buffer
        # of many small entries.
        del self._buffer[:dropped]
        self.entries_shed += dropped
        log.error(
            "history.overflow shed_entries=%d buffered_bytes=%d max=%d error=%s: their "
            "content is in the document store, their authors are lost",
            dropped,
            self._buffered_bytes,
            self._max_buffer,
            self.last_error,
        )

    def loaded(self, room_id: str, updates: Sequence[bytes]) -> None:
        """The updates a room was rebuilt from: its baseline, should it have no version."""
        if updates:
            self._baselines[room_id] = list(updates)

    def forget(self, room_id: str) -> None:
        """The room left memory: its open version closes at the next tick."""
        if room_id in self._active:
            self._closing.add(room_id)

    # -- the task --------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Tick every `flush_s` until cancelled; then flush and close every open version.

        Store failures are logged and retried at the next tick; only a bug ends it.
        """
        task_status.started()
        try:
            while True:
                await trio.sleep(self._flush_s)
                await self.tick()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(self._shutdown_timeout):
                await self._close_all()

    async def tick(self) -> None:
        """Baselines, then the buffer, then the versions due; failures are kept for later."""
        now = trio.current_time()
        due = [room for room, last in self._active.items() if now - last >= self._idle]
        try:
            async with self._lock:
                await self._write_baselines()
                await self._flush()
                closing = set(self._closing)
                rooms = sorted(set(due) | closing)
                if rooms:
                    await self._close_many(
                        rooms, lambda room: "evicted" if room in closing else "idle"
                    )
                await self._maybe_prune(now)
        except StoreError as exc:
            self._failed(str(exc))
            return
        if not self.healthy:
            log.info("history.recovered after=%r", self.last_error)
        self.healthy = True

    async def close_version(self, room_id: str, reason: VersionReason) -> Version | None:
        """Flush, then close the room's open version now (None: nothing since the last one).

        Raises `StoreError` (then nothing of the version is written).
        """
        async with self._lock:
            await self._write_baselines(only=room_id)
            await self._flush()
            return await self._close(room_id, reason)

    async def _close_all(self) -> None:
        try:
            async with self._lock:
                await self._write_baselines()
                await self._flush()
                if self._active:
                    await self._close_many(sorted(self._active), lambda _: "shutdown")
        except StoreError as exc:
            log.error(  # noqa: TRY400 - the store's message says it all; no bug to trace
                "history.unwritten entries=%d open_versions=%d error=%s",
                len(self._buffer),
                len(self._active),
                exc,
            )

    # -- in the lock -----------------------------------------------------------------------

    async def _write_baselines(self, only: str | None = None) -> None:
        for room_id in list(self._baselines):
            if only is not None and room_id != only:
                continue
            updates = self._baselines[room_id]
            with self._deadline("baseline"):
                versions = await self.store.versions(room_id)
                if versions:
                    await self._reconcile(room_id, versions, updates)
                else:
                    state = await trio.to_thread.run_sync(merged_state, updates)
                    last = await self.store.last_seq(room_id)
                    at = self._clock()
                    await self.store.add_version(
                        Version(
                            room_id=room_id,
                            number=1,
                            started_ms=at,
                            ended_ms=at,
                            first_seq=last + 1,
                            last_seq=last,
                            reason="baseline",
                            authors=(Author(author=IMPORT_ORIGIN.author, name=None, changes=0),),
                        ),
                        state,
                    )
            del self._baselines[room_id]

    async def _reconcile(self, room_id: str, versions: list[Version], loaded: list[bytes]) -> None:
        """Record, as an `import` entry, what the room loaded that history never saw.

        Content can reach the document store around the rooms (`snapshots import`), or
        miss the history (entries shed during a long outage, a crash between the two
        writers). Without this, versions would no longer rebuild today's document.
        """
        base, _ = await rebuild_version(self.store, versions, versions[-1].number)
        later = await self.store.entries(room_id, after_seq=versions[-1].last_seq)
        buffered = [e.data for e in self._buffer if e.room_id == room_id]
        known = [base, *(e.data for e in later), *buffered]
        missing = await trio.to_thread.run_sync(_missing, known, loaded)
        if missing is None:
            return
        log.warning(
            "history.unrecorded_content room=%s bytes=%d: recorded as an import",
            room_id,
            len(missing),
        )
        self._buffer.insert(
            0,
            Entry(
                room_id=room_id,
                seq=0,
                at_ms=self._clock(),
                origin=IMPORT_ORIGIN,
                node=self.node,
                client_ids=client_ids(missing),
                data=missing,
            ),
        )
        self._buffered_bytes += len(missing) + ENTRY_OVERHEAD
        self._active[room_id] = trio.current_time()

    async def _flush(self) -> None:
        if not self._buffer:
            return
        batch = list(self._buffer)
        with self._deadline(f"append of {len(batch)} entries"):
            await self.store.append_entries(batch)
        # Only now, and only these: entries that arrived during the write stay buffered
        # (unless shedding dropped some meanwhile: then only what is left of the batch).
        written = {id(entry) for entry in batch}
        self._buffer[:] = [entry for entry in self._buffer if id(entry) not in written]
        self._buffered_bytes = sum(len(entry.data) + ENTRY_OVERHEAD for entry in self._buffer)
        self.entries_written += len(batch)

    async def _close(self, room_id: str, reason: VersionReason) -> Version | None:
        (version,) = await self._close_many([room_id], lambda _: reason)
        return version

    async def _close_many(
        self, rooms: list[str], reason: Callable[[str], VersionReason]
    ) -> list[Version | None]:
        """Close the open version of each room; the versions are written in one call (one
        transaction, one fsync, however many rooms left memory at once)."""
        prepared: list[_Prepared | None] = []
        for room_id in rooms:
            with self._deadline(f"closing a version of {room_id!r}"):
                prepared.append(await self._prepare(room_id, reason(room_id)))
        ready = [item for item in prepared if item is not None]
        with self._deadline(f"writing {len(ready)} versions"):
            stored = await self.store.add_versions(
                [(p.version, p.state if p.checkpoint else b"", p.changes) for p in ready]
            )
        written = dict(zip((id(p) for p in ready), stored, strict=True))
        results: list[Version | None] = []
        for room_id, item in zip(rooms, prepared, strict=True):
            if item is not None and not written[id(item)]:
                # Another node closed this number first; what it left open closes at a
                # later tick, built on the version it wrote.
                self._states.pop(room_id, None)
                self._since.pop(room_id, None)
                log.info("history.version_taken room=%s version=%d", room_id, item.version.number)
                results.append(None)
                continue
            if item is not None:
                self._closed(item)
            self._settle(room_id)
            results.append(item.version if item is not None else None)
        return results

    async def _prepare(self, room_id: str, reason: VersionReason) -> _Prepared | None:
        versions = await self.store.versions(room_id)
        previous = versions[-1] if versions else None
        after = previous.last_seq if previous is not None else 0
        entries = await self.store.entries(room_id, after_seq=after)
        if not entries:
            return None
        base, since = await self._base(room_id, versions)
        updates = [*base, *(entry.data for entry in entries)]
        state = await trio.to_thread.run_sync(merged_state, updates)
        version = Version(
            room_id=room_id,
            number=previous.number + 1 if previous is not None else 1,
            started_ms=entries[0].at_ms,
            ended_ms=entries[-1].at_ms,
            first_seq=entries[0].seq,
            last_seq=entries[-1].seq,
            reason=reason,
            authors=count_authors(entries),
        )
        changes: list[BlockChange] = []
        if self._analyse is not None:
            changes = await trio.to_thread.run_sync(
                self._analyse, room_id, base[0] if base else None, entries
            )
        checkpoint = (
            previous is None
            or reason == "restore"
            or version.last_seq - since >= CHECKPOINT_UPDATES
        )
        return _Prepared(
            version=version,
            state=state,
            changes=changes,
            checkpoint=checkpoint,
            updates=len(entries),
        )

    def _closed(self, item: _Prepared) -> None:
        version = item.version
        # Kept for the next version of a room in memory (dropped when it leaves).
        self._states[version.room_id] = (version.number, item.state)
        if item.checkpoint:
            self._since[version.room_id] = version.last_seq
        self.versions_closed += 1
        log.info(
            "history.version room=%s version=%d updates=%d reason=%s checkpoint=%s",
            version.room_id,
            version.number,
            item.updates,
            version.reason,
            item.checkpoint,
        )

    def _settle(self, room_id: str) -> None:
        """Closed (or nothing to close): no open version until the room's next update."""
        if not any(entry.room_id == room_id for entry in self._buffer):
            self._active.pop(room_id, None)
            if room_id in self._closing:
                self._states.pop(room_id, None)
                self._since.pop(room_id, None)
        self._closing.discard(room_id)

    async def _base(self, room_id: str, versions: list[Version]) -> tuple[list[bytes], int]:
        """The state the next version builds on ([] before the first) and the last seq of
        the checkpoint it is rebuilt from (0: none yet)."""
        if not versions:
            return [], 0
        previous = versions[-1]
        cached = self._states.get(room_id)
        if cached is not None and cached[0] == previous.number and room_id in self._since:
            return [cached[1]], self._since[room_id]
        state, checkpoint = await rebuild_version(self.store, versions, previous.number)
        self._since[room_id] = checkpoint.last_seq
        return [state], checkpoint.last_seq

    async def _maybe_prune(self, now: float) -> None:
        if self._retention_ms is None or now - self._last_prune < 3600:
            return
        self._last_prune = now
        with self._deadline("pruning"):
            dropped = await self.store.prune(self._clock() - self._retention_ms)
        if dropped:
            log.info("history.pruned versions=%d", dropped)

    def _deadline(self, what: str) -> AbstractContextManager[None]:
        return _deadline(self._op_timeout, what)

    def _failed(self, message: str) -> None:
        if self.healthy:
            log.error("history.degraded %s", message)
        else:
            log.warning("history.retry_failed %s", message)
        self.healthy = False
        self.last_error = message


def _missing(known: list[bytes], loaded: list[bytes]) -> bytes | None:
    """The update that brings `known` to `loaded`, or None when it would change nothing."""
    history = rebuild(known)
    document = rebuild(loaded)
    if not history.state or history.state == document.state:
        return None
    doc: Doc[Any] = Doc()
    apply_update(doc, history.state)
    before = doc.get_update()
    diff = guarded(lambda: pycrdt.get_update(document.state, doc.get_state()), "update")
    apply_update(doc, diff)
    return diff if doc.get_update() != before else None


@attrs.frozen
class _Prepared:
    """A version computed and ready to write."""

    version: Version
    state: bytes
    changes: list[BlockChange]
    checkpoint: bool
    updates: int


@contextmanager
def _deadline(seconds: float, what: str) -> Iterator[None]:
    """`trio.fail_after` whose timeout becomes a `StoreTimeout` naming the operation."""
    try:
        with trio.fail_after(seconds):
            yield
    except trio.TooSlowError:
        raise StoreTimeout(f"history: {what} took over {seconds:g} s") from None
