"""One store connection, used from one thread at a time, with calls that can be cancelled.

Every blocking call runs through `trio.to_thread.run_sync` with the worker's own
`CapacityLimiter(1)`, so the connection is never used by two threads at once. A plain
thread call ignores cancellation (a slow query was seen to hold its caller for 80 s), so
calls run with `abandon_on_cancel=True` and, on cancellation, the worker *interrupts* the
running statement (`sqlite3.Connection.interrupt`, a PostgreSQL cancel request). trio
releases the limiter only when the abandoned thread has really finished, so the next call
waits for the interrupted one to unwind; the connection is never shared.

An interrupt that lands between two statements of a call does nothing by itself; the call
therefore also checks `cancelled()` before each statement (and SQLite's progress handler
checks it while a statement runs).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import trio

from .errors import StoreError

T = TypeVar("T")

# How long a cancelled call may spend making sure its statement stopped.
INTERRUPT_DEADLINE = 5.0


class CallCancelled(StoreError):
    """Raised inside the worker thread when the call was cancelled; nobody waits for it."""


class _Call:
    __slots__ = ("cancelled", "finished", "running")

    def __init__(self) -> None:
        self.running = False
        self.cancelled = False
        self.finished = threading.Event()


class StoreWorker:
    """Runs a store's blocking calls one at a time in a worker thread.

    `interrupt` stops whatever statement the connection is running. When it may block
    (a network round trip), pass `interrupt_blocks=True` and it runs in its own thread,
    repeated until the call ends, within `INTERRUPT_DEADLINE`.
    """

    def __init__(
        self,
        name: str,
        *,
        interrupt: Callable[[], None] | None = None,
        interrupt_blocks: bool = False,
    ) -> None:
        self._name = name
        self._interrupt = interrupt
        self._interrupt_blocks = interrupt_blocks
        self._limiter = trio.CapacityLimiter(1)
        self._lock = threading.Lock()
        self._current: _Call | None = None

    async def call(self, fn: Callable[[], T]) -> T:
        """Run `fn()` in the worker thread and return its result or raise its exception.

        Cancellation: the caller gets `trio.Cancelled` at once; the running statement is
        interrupted and the thread unwinds in the background, holding the connection
        until it has. Whether a cancelled write was committed is unknown.
        """
        job = _Call()
        try:
            return await trio.to_thread.run_sync(
                self._run,
                job,
                fn,
                limiter=self._limiter,
                abandon_on_cancel=True,
                thread_name=f"{self._name} store call",
            )
        except trio.Cancelled:
            await self._stop(job)
            raise

    def cancelled(self) -> bool:
        """From inside a call: has the caller given up? Check it between statements."""
        job = self._current
        return job is not None and job.cancelled

    def check_cancelled(self) -> None:
        if self.cancelled():
            raise CallCancelled(f"{self._name}: call cancelled")

    def _run(self, job: _Call, fn: Callable[[], T]) -> T:
        with self._lock:
            if job.cancelled:
                raise CallCancelled(f"{self._name}: call cancelled before it started")
            job.running = True
            self._current = job
        try:
            return fn()
        finally:
            with self._lock:
                job.running = False
                self._current = None
            job.finished.set()

    async def _stop(self, job: _Call) -> None:
        with self._lock:
            job.cancelled = True
            running = job.running
            # Interrupting under the lock: the call cannot end and another begin meanwhile,
            # so the interrupt can only hit this call's statement.
            if running and self._interrupt is not None and not self._interrupt_blocks:
                self._interrupt()
        if running and self._interrupt is not None and self._interrupt_blocks:
            with trio.CancelScope(shield=True), trio.move_on_after(INTERRUPT_DEADLINE):
                await trio.to_thread.run_sync(
                    self._interrupt_until_finished, job, self._interrupt, abandon_on_cancel=True
                )

    def _interrupt_until_finished(self, job: _Call, interrupt: Callable[[], None]) -> None:
        # A cancel request can arrive just before the statement starts and be lost, so it
        # is repeated until the call ends. Bounded: this thread is abandoned at the
        # deadline and stops by itself after about the same time. Under the lock, so that
        # the request cannot reach the next call's statement.
        for _ in range(int(INTERRUPT_DEADLINE / 0.25)):
            with self._lock:
                if not job.running:
                    return
                interrupt()
            if job.finished.wait(0.25):
                return
