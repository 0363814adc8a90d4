"""`StoreWriter`: the service rooms hand their updates to, and the one task that writes them.

Rooms call `received` for every update they apply (raw, as the client sent it: an update
whose dependencies are missing stays pending inside pycrdt and is absent from
`get_update()`, so only the raw bytes keep it). It never waits. The flusher task takes
everything buffered, all rooms together, every `flush_ms`, and appends it in one
`store.append` call: one transaction (one fsync) per flush, whatever the number of rooms.

When writes fail, editing goes on: the batch stays buffered, the flusher retries with
exponential backoff (`retry_initial` doubling up to `retry_max`), `healthy` turns False
and `last_error` says why. Memory is bounded by `max_pending_bytes`: past it, the largest
room's buffered updates are shed (one ERROR line per episode). Nothing is lost by that as
long as the room stays in memory: its document holds every shed update, its next
successful snapshot stores them, and `unflushed()` stays above zero until then, which
keeps the room from being evicted. (What shedding can lose: updates that were still
pending inside the document, and everything, if the process dies before the store
recovers, which is true of everything buffered anyway.)

Snapshots are written by `snapshot`, called by the room with its full state. Coverage is
tracked by receipt numbers: the state holds every update `received` before the call, so
the snapshot covers every log record those updates were written as, and buffered ones are
dropped (they are in the state) rather than flushed first. What is durable, in receipts, is
told back to the rooms by `durability` (durability.py).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import deque
from collections.abc import Sequence

import trio

from .durability import Buffered, Durability
from .errors import RoomDamaged, StoreError, StoreTimeout
from .store import Loaded, Store
from .writerstats import StoreWriterStats

log = logging.getLogger("civicrealtime.persistence")

MiB = 1024 * 1024
# (receipt, seq) pairs remembered per room to map a snapshot's coverage to log seqs.
# Older pairs fall off; coverage then errs on the safe side (a longer log).
HISTORY = 4096
# While the store keeps failing, one summary line per this many seconds, not one per try.
FAILURE_LOG_INTERVAL = 60.0


class StoreWriter:
    """Owns the buffered updates and the flusher; never touches a room's document."""

    def __init__(
        self,
        store: Store,
        *,
        flush_ms: int = 100,
        max_pending_bytes: int = 64 * MiB,
        compress_over: int | None = None,
        retry_initial: float = 0.1,
        retry_max: float = 10.0,
        shutdown_timeout: float = 5.0,
        op_timeout: float = 30.0,
    ) -> None:
        if flush_ms <= 0 or max_pending_bytes <= 0 or retry_initial <= 0 or op_timeout <= 0:
            raise ValueError("flush_ms, max_pending_bytes, retry_initial, op_timeout must be > 0")
        self.store = store
        self._flush_s = flush_ms / 1000
        self._max_pending = max_pending_bytes
        self._compress_over = compress_over
        self._retry_initial = retry_initial
        self._retry_max = max(retry_max, retry_initial)
        self._shutdown_timeout = shutdown_timeout
        self._op_timeout = op_timeout

        self._buffers: dict[str, deque[Buffered]] = {}
        self._receipts: dict[str, int] = {}  # last receipt number handed out, per room
        self._pending_bytes = 0
        self._logged: dict[str, deque[tuple[int, int]]] = {}  # (receipt, seq), durable
        self._floor: dict[str, int] = {}  # a log seq the room's document is known to hold
        self._shed_upto: dict[str, int] = {}  # highest receipt shed, per room
        self._shed_counts: dict[str, int] = {}
        self._overflowing = False
        # sha256 of logged updates a room dropped, removed from the log by its next snapshot.
        self._discards: dict[str, set[bytes]] = {}
        # Rooms that left memory while a flush of theirs was in flight: forgotten after it.
        self._gone: set[str] = set()
        self.durability = Durability(self._buffers, self._receipts)

        self.healthy = True
        self.last_error: str | None = None
        self._log_writes = 0
        self._updates_written = 0
        self._snapshot_writes = 0
        self._failures = 0
        self._log_failures = 0
        self._snapshot_failures = 0
        self._log_seconds = 0.0
        self._snapshot_seconds = 0.0
        self._corrupt_rows = 0
        self._shed_total = 0
        self._last_flush_ms: float | None = None
        # The current outage: when it began, its failures, and those not yet logged.
        self._failing_since: float | None = None
        self._episode_failures = 0
        self._unlogged_failures = 0
        self._last_failure_line = 0.0
        self.failure_log_interval = FAILURE_LOG_INTERVAL

    # -- the flusher -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Flush every `flush_ms` until cancelled, then flush what is left.

        Failures do not end it: they are retried with backoff. On cancellation (shutdown) it
        makes a last flush, shielded, for at most `shutdown_timeout` seconds (retrying with
        backoff within that time), then logs each room and byte count it could not write.
        Only a bug (an exception other than `StoreError`) ends it early.
        """
        task_status.started()
        try:
            failures_in_row = 0
            tick = trio.current_time() + self._flush_s
            while True:
                if failures_in_row:
                    delay = self._retry_initial * 2 ** min(failures_in_row - 1, 30)
                    await trio.sleep(min(self._retry_max, delay))
                else:
                    await trio.sleep_until(tick)  # from the last flush's start, not its end
                tick = trio.current_time() + self._flush_s
                failures_in_row = 0 if await self._flush() else failures_in_row + 1
                self.durability.announce(failing=not self.healthy)
        finally:
            with trio.CancelScope(shield=True):
                await self._final_flush()

    async def _final_flush(self) -> None:
        delay = self._retry_initial
        with trio.move_on_after(self._shutdown_timeout):
            while self._pending_updates():
                if await self._flush():
                    continue
                await trio.sleep(delay)
                delay = min(self._retry_max, delay * 2)
        left = self._pending_updates()
        if not left and not self._shed_counts:
            log.info("persistence.final_flush ok")
            return
        for room_id in sorted(set(self._buffers) | set(self._shed_counts)):
            buffered = self._buffers.get(room_id, ())
            count = len(buffered) + self._shed_counts.get(room_id, 0)
            if count:
                log.error(
                    "persistence.unwritten room=%s updates=%d bytes=%d shed=%d error=%s",
                    room_id,
                    count,
                    sum(len(item.data) for item in buffered),
                    self._shed_counts.get(room_id, 0),
                    self.last_error,
                )

    async def _flush(self) -> bool:
        """Append everything buffered in one call. True on success or when idle."""
        batch: list[tuple[str, int, bytes]] = []
        upto: dict[str, int] = {}
        for room_id, buffered in self._buffers.items():
            if buffered:
                batch.extend((room_id, item.receipt, item.data) for item in buffered)
                upto[room_id] = buffered[-1].receipt
        if not batch:
            return True
        started = time.perf_counter()
        try:
            with trio.fail_after(self._op_timeout):
                seqs = await self.store.append([(room_id, data) for room_id, _, data in batch])
        except trio.TooSlowError:
            self._log_failures += 1
            self._failed(f"append of {len(batch)} updates timed out after {self._op_timeout:g} s")
            return False
        except StoreError as exc:
            self._log_failures += 1
            self._failed(f"append of {len(batch)} updates failed: {exc}")
            return False
        elapsed = time.perf_counter() - started
        self._last_flush_ms = elapsed * 1000
        self._log_seconds += elapsed
        self._log_writes += 1
        self._updates_written += len(batch)
        for (room_id, receipt, _), seq in zip(batch, seqs, strict=True):
            self._logged.setdefault(room_id, deque(maxlen=HISTORY)).append((receipt, seq))
        for room_id, last in upto.items():
            # Pop by receipt: a snapshot or shedding may have removed some meanwhile.
            self._drop_buffered(room_id, last)
            if room_id in self._gone:
                self.forget(room_id)
        self._succeeded()
        return True

    # -- what rooms call ---------------------------------------------------------------------

    def received(self, room_id: str, update: bytes) -> None:
        """Buffer one raw update for the next flush. Never waits, never raises."""
        receipt = self._receipts.get(room_id, 0) + 1
        self._receipts[room_id] = receipt
        self._buffers.setdefault(room_id, deque()).append(Buffered(receipt, update))
        self._pending_bytes += len(update)
        if self._pending_bytes > self._max_pending:
            self._shed()

    def discard(self, room_id: str, updates: Sequence[bytes]) -> None:
        """The room dropped these received updates (pending, never resolved): forget them.

        Still buffered: taken out of the buffer, never written. Already in the log: the
        room's next successful snapshot deletes them instead of carrying them forward (a
        snapshot keeps every log record its state does not contain, and these are exactly
        such records), so a restart does not load them again.
        """
        digests = {hashlib.sha256(update).digest() for update in updates}
        buffered = self._buffers.get(room_id)
        if buffered:
            kept = deque(
                item for item in buffered if hashlib.sha256(item.data).digest() not in digests
            )
            self._pending_bytes -= sum(len(item.data) for item in buffered) - sum(
                len(item.data) for item in kept
            )
            self._buffers[room_id] = kept
        self._discards.setdefault(room_id, set()).update(digests)

    def mark(self, room_id: str) -> int:
        """The room's receipt count now; see `snapshot(received=...)`."""
        return self._receipts.get(room_id, 0)

    def unflushed(self, room_id: str) -> int:
        """Updates of the room not yet durable (buffered, or shed and awaiting a snapshot)."""
        return len(self._buffers.get(room_id, ())) + self._shed_counts.get(room_id, 0)

    async def load(self, room_id: str) -> Sequence[bytes]:
        """The updates that rebuild the room, to apply in order into a fresh document.

        The newest verified snapshot's state, then the log after it, then whatever is still
        buffered for the room (a room restarting after a crash). Corrupt rows are logged as
        warnings, counted, and skipped (the store keeps them). Raises `StoreError` when the
        store cannot be read (also on `op_timeout`): the room must then refuse its clients
        rather than serve an empty document. Cancellation interrupts the read.
        """
        self._gone.discard(room_id)  # back in memory: its bookkeeping is live again
        try:
            with trio.fail_after(self._op_timeout):
                loaded = await self.store.load(room_id)
        except trio.TooSlowError:
            raise StoreTimeout(
                f"{self.store.description}: loading room {room_id!r} took over "
                f"{self._op_timeout:g} s"
            ) from None
        self._report(loaded)
        if loaded.damaged:
            # Never served blank, and so never snapshotted over the damaged rows.
            raise RoomDamaged(f"{self.store.description}: {loaded.damage()}")
        self._floor[room_id] = max(self._floor.get(room_id, 0), loaded.covered_seq)
        buffered = [item.data for item in self._buffers.get(room_id, ())]
        return [*loaded.updates(), *buffered]

    async def snapshot(
        self,
        room_id: str,
        state: bytes,
        carry: Sequence[bytes] = (),
        *,
        received: int | None = None,
    ) -> None:
        """Store the room's full state, covering every update `received` before this call.

        `state` must hold every update passed to `received()` for the room before this
        call: capture it and call with no checkpoint in between (`await p.snapshot(key,
        doc.get_update())`). If the call starts later (a background task), pass
        `received=p.mark(key)` taken when the state was captured. `carry`: raw updates the
        room knows are pending in its document; buffered updates the state does not
        contain are carried as well, automatically.

        Raises `StoreError` on failure (also after `op_timeout`); the updates are still in
        the log or the buffer, so nothing is lost and the room retries on its next
        trigger. Cancellation interrupts the write, which may or may not have committed.
        """
        mark = self.mark(room_id) if received is None else received
        covers = self._floor.get(room_id, 0)
        for receipt, seq in self._logged.get(room_id, ()):
            if receipt <= mark:
                covers = max(covers, seq)
        # Buffered updates are not dropped here: they still go to the log, so that if this
        # snapshot is ever found corrupt, the previous one plus the log rebuilds the room.
        compress = self._compress_over is not None and len(state) > self._compress_over
        discards = self._discards.get(room_id, set())
        taken = frozenset(discards)
        started = time.perf_counter()
        try:
            with trio.fail_after(self._op_timeout):
                await self.store.write_snapshot(
                    room_id,
                    state,
                    covers_seq=covers,
                    carry=list(carry),
                    compress=compress,
                    discard=taken,
                )
        except trio.TooSlowError:
            message = f"snapshot of room {room_id!r} timed out after {self._op_timeout:g} s"
            self._snapshot_failures += 1
            self._failed(message)
            raise StoreTimeout(f"{self.store.description}: {message}") from None
        except StoreError as exc:
            self._snapshot_failures += 1
            self._failed(f"snapshot of room {room_id!r} failed: {exc}")
            raise
        self._snapshot_seconds += time.perf_counter() - started
        self._snapshot_writes += 1
        discards -= taken
        if not discards:
            self._discards.pop(room_id, None)
        self._floor[room_id] = max(self._floor.get(room_id, 0), covers)
        if self._shed_upto.get(room_id, 0) <= mark:
            self._shed_upto.pop(room_id, None)
            self._shed_counts.pop(room_id, None)
            self.durability.snapshot_holds_shed(room_id)
        history = self._logged.get(room_id)
        while history and history[0][0] <= mark:
            history.popleft()
        self._succeeded()

    def must_stay(self, room_id: str) -> bool:
        """Whether evicting the room now could lose updates or refuse its next joiner.

        Updates shed from memory live only in the room's document until its next
        snapshot; and while the store fails, a room that left memory could not be loaded
        again. Otherwise buffered updates are safe: the buffer outlives the room.
        """
        if self._shed_counts.get(room_id, 0):
            return True
        return not self.healthy and self.unflushed(room_id) > 0

    def forget(self, room_id: str) -> None:
        """The room left memory: drop its bookkeeping (not its unwritten updates, whose
        flush, in flight or retried, forgets the rest)."""
        self._logged.pop(room_id, None)
        self._floor.pop(room_id, None)
        # Its discard digests stay: the next snapshot, after a reload, still needs them.
        self._gone.add(room_id)
        if not self.unflushed(room_id):
            self._gone.discard(room_id)
            self._buffers.pop(room_id, None)
            self._receipts.pop(room_id, None)

    def statistics(self) -> StoreWriterStats:
        return StoreWriterStats(
            log_writes=self._log_writes,
            updates_written=self._updates_written,
            snapshot_writes=self._snapshot_writes,
            failures=self._failures,
            failing_seconds=self.failing_seconds,
            log_failures=self._log_failures,
            snapshot_failures=self._snapshot_failures,
            log_seconds=self._log_seconds,
            snapshot_seconds=self._snapshot_seconds,
            corrupt_rows=self._corrupt_rows,
            shed_updates=self._shed_total,
            pending_updates=self._pending_updates(),
            pending_bytes=self._pending_bytes,
            last_flush_ms=self._last_flush_ms,
            healthy=self.healthy,
            last_error=self.last_error,
        )

    # -- bookkeeping -------------------------------------------------------------------------

    def _pending_updates(self) -> int:
        return sum(len(buffered) for buffered in self._buffers.values())

    def _drop_buffered(self, room_id: str, upto: int) -> None:
        buffered = self._buffers.get(room_id)
        while buffered and buffered[0].receipt <= upto:
            self._pending_bytes -= len(buffered.popleft().data)

    def _shed(self) -> None:
        """Over the memory bound: drop the largest rooms' buffers (their documents hold them)."""
        target = self._max_pending * 3 // 4
        sizes = {
            room_id: sum(len(item.data) for item in buffered)
            for room_id, buffered in self._buffers.items()
            if buffered
        }
        for room_id in sorted(sizes, key=sizes.__getitem__, reverse=True):
            if self._pending_bytes <= target:
                break
            buffered = self._buffers[room_id]
            count = len(buffered)
            self._shed_upto[room_id] = buffered[-1].receipt
            self.durability.shed(room_id, buffered[0])
            self._shed_counts[room_id] = self._shed_counts.get(room_id, 0) + count
            self._shed_total += count
            self._pending_bytes -= sizes[room_id]
            buffered.clear()
            message = (
                "persistence.overflow pending_bytes=%d max_pending_bytes=%d room=%s "
                "shed_updates=%d shed_bytes=%d: the store is failing (%s); the room keeps "
                "these updates in its document and is not evicted until a snapshot stores them"
            )
            args = (
                self._pending_bytes + sizes[room_id],
                self._max_pending,
                room_id,
                count,
                sizes[room_id],
                self.last_error,
            )
            if not self._overflowing:
                self._overflowing = True
                log.error(message, *args)
            else:
                log.warning(message, *args)

    @property
    def failing_seconds(self) -> float:
        """How long the store has been failing, 0 while it works."""
        if self._failing_since is None:
            return 0.0
        return trio.current_time() - self._failing_since

    def _failed(self, message: str) -> None:
        """One failed write. Logged at once when it starts an outage, then summarised.

        A full disk fails every flush and every snapshot attempt: one line each buried the
        log (about two per update). The first failure is an ERROR at once; later ones are
        counted and logged as one WARNING per `failure_log_interval`, and the recovery
        line says how many there were in all.
        """
        self._failures += 1
        now = trio.current_time()
        if self.healthy:
            self._failing_since = now
            self._episode_failures = 1
            self._unlogged_failures = 0
            self._last_failure_line = now
            log.error("persistence.degraded %s", message)
        else:
            self._episode_failures += 1
            self._unlogged_failures += 1
            if now - self._last_failure_line >= self.failure_log_interval:
                log.warning(
                    "persistence.still_failing failures=%d in the last %.0f s "
                    "(%d since %.0f s ago) last_error=%s",
                    self._unlogged_failures,
                    now - self._last_failure_line,
                    self._episode_failures,
                    now - (self._failing_since or now),
                    message,
                )
                self._unlogged_failures = 0
                self._last_failure_line = now
        self.healthy = False
        self.last_error = message

    def _succeeded(self) -> None:
        if not self.healthy:
            log.info(
                "persistence.recovered failures=%d over %.1f s last_error=%s",
                self._episode_failures,
                self.failing_seconds,
                self.last_error,
            )
            self._failing_since = None
            self._episode_failures = self._unlogged_failures = 0
        self.healthy = True
        if self._overflowing and self._pending_bytes <= self._max_pending // 2:
            self._overflowing = False

    def _report(self, loaded: Loaded) -> None:
        for problem in loaded.problems:
            self._corrupt_rows += 1
            log.warning("persistence.corrupt_row store=%s %s", self.store.description, problem)
        if loaded.snapshot is not None and not loaded.snapshot.integrity_hash:
            log.info(
                "persistence.unverified_snapshot room=%s id=%s (a CivicPress row without hash)",
                loaded.room_id,
                loaded.snapshot.id,
            )
