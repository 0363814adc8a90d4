"""One connection's outbox (rooms.Outbox): the room pushes without waiting; the transport
writes.

Bounds. The queue is bounded by count and by bytes, not by the channel: the channel itself
is unbounded so that a close request always fits behind the frames already queued. A push
into a full queue (`capacity` frames, or `max_bytes` bytes already waiting) closes the
connection with 1013 (SLOW_CONSUMER) instead of dropping the frame: the client reconnects
and resyncs, so nothing is silently lost and the room never waits. The byte bound is
checked before the frame is added, so one frame of any size (a large document's step 2 on
join) still fits in a queue that holds less; a slow reader pins at most `max_bytes` plus one
frame. Broadcast frames are shared by every member's queue, so this counts what each
member keeps alive, not extra copies.

Coalescing. While the connection serves and nothing waits for its writer, pushed frames
are held, and the outbox is marked for the run's flusher (a trio instrument). The flusher
runs as soon as the task that pushed yields (for a room: after its mailbox drain), and
writes everything that step produced for this member in one non-blocking `write`: the
room makes no system call, and under load the calls per delivery fall (docs/benchmarks.md).
What the socket does not take goes to the writer task, which waits for the socket under
`connection.send_timeout`.
"""

from __future__ import annotations

import logging
import math

import trio
import trio.lowlevel

from ..protocol.closecodes import SLOW_CONSUMER, TRANSPORT_FAILED, Close, CloseRequest
from ..protocol.wire import WireFrame, WireRest, wire_bytes
from ..rooms.member import Outgoing
from ..stats import Stats
from .websocket import ServerWebSocket

log = logging.getLogger("civicrealtime.transport")

_FLUSH_THEN_CLOSE = object()


class Outbound:
    __slots__ = (
        "_abort",
        "_bytes",
        "_capacity",
        "_flusher",
        "_flushing",
        "_held",
        "_in_channel",
        "_max_bytes",
        "_pending",
        "_receive",
        "_send",
        "_socket",
        "_stats",
        "close_request",
    )

    def __init__(self, capacity: int, max_bytes: float = math.inf) -> None:
        self._send, self._receive = trio.open_memory_channel[object](math.inf)
        self._capacity = capacity
        self._max_bytes = max_bytes
        self._pending = 0  # held + in the channel
        self._in_channel = 0
        self._bytes = 0
        self.close_request: CloseRequest | None = None
        # Set by the connection: cancels its tasks so that the socket is closed now.
        self._abort: trio.CancelScope | None = None
        self._flushing = False
        # While the connection serves: its socket. Pushes are then held for the flusher
        # (`_held`) while the channel is empty.
        self._socket: ServerWebSocket | None = None
        self._stats: Stats | None = None
        self._held: list[Outgoing] = []
        self._flusher: _Flusher | None = None

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def pending_bytes(self) -> int:
        return self._bytes

    @property
    def aborted(self) -> bool:
        """Closed without writing what was queued: a frame may have been cut off."""
        return self.close_request is not None and not self._flushing

    @property
    def closing(self) -> bool:
        return self.close_request is not None

    def bind(self, scope: trio.CancelScope) -> None:
        self._abort = scope
        if self.close_request is not None and not self._flushing:
            scope.cancel()

    def attach(self, socket: ServerWebSocket, stats: Stats) -> None:
        """The connection serves: from now on, pushes are coalesced and written directly."""
        self._socket = socket
        self._stats = stats
        self._flusher = _flusher()

    def detach(self) -> None:
        self._socket = None
        self._flusher = None
        self._release_held()

    def push(self, frame: Outgoing) -> bool:
        """Queue a frame; False if the connection is closing (or was just closed by this)."""
        if self.close_request is not None:
            return False
        if self._pending >= self._capacity or self._bytes >= self._max_bytes:
            self.close(SLOW_CONSUMER, flush=False)
            return False
        self._pending += 1
        self._bytes += len(frame)
        flusher = self._flusher
        if flusher is not None and not self._in_channel:
            # Nobody waits to write: hold it for this drain's one write.
            if not self._held:
                flusher.marked.append(self)
            self._held.append(frame)
            return True
        self._in_channel += 1
        self._send.send_nowait(frame)
        return True

    def flush(self) -> None:
        """Write what was held in one non-blocking write; queue the rest for the writer."""
        held = self._held
        if not held:
            return
        self._held = []
        socket = self._socket
        if socket is None or self.close_request is not None:
            # Closing: a flushing close already moved held frames to the channel; an
            # aborting one drops them.
            self._forget(held)
            return
        if len(held) == 1 and isinstance(held[0], WireFrame):
            # The common case at low load (one broadcast per drain): no lists, no join.
            frame = held[0]
            wire = frame.wire
            sent = socket.write_now(wire)
            if sent == len(wire):
                self._pending -= 1
                self._bytes -= len(frame)
                stats = self._stats
                if stats is not None:
                    stats.bytes_sent += len(frame)
                    stats.messages_sent[sent_label(frame)] += 1
                return
            if sent < 0:
                self._forget(held)
                return
            self._queue_unsent(held, [wire], sent)
            return
        wires = [wire_bytes(frame) for frame in held]
        data = wires[0] if len(wires) == 1 else b"".join(wires)
        sent = socket.write_now(data)
        if sent < 0:
            # Closed under us: the reader sees it and ends the connection.
            self._forget(held)
            return
        self._queue_unsent(held, wires, sent)

    def _queue_unsent(self, held: list[Outgoing], wires: list[bytes], sent: int) -> None:
        """Count the frames the write took (`sent` bytes of `wires`); queue the rest, in
        order, for the writer."""
        stats = self._stats
        for frame, wire in zip(held, wires, strict=True):
            if sent >= len(wire):
                sent -= len(wire)
                self._pending -= 1
                self._bytes -= len(frame)
                if stats is not None:
                    stats.bytes_sent += len(frame)
                    stats.messages_sent[sent_label(frame)] += 1
                continue
            queued: Outgoing = frame
            if sent:
                # Cut mid-frame: the writer sends its tail, counted as the whole message.
                payload = frame.payload if isinstance(frame, WireFrame) else _payload(frame)
                queued = WireRest(payload, wire[sent:])
                self._bytes += len(queued) - len(frame)
                sent = 0
            self._in_channel += 1
            self._send.send_nowait(queued)

    def close(self, close: Close | CloseRequest, *, flush: bool) -> None:
        """Ask the connection to close: after the queued frames, or at once."""
        if self.close_request is not None:
            if not flush and self._flushing:
                # At once overrides after-the-frames (the writer's send timeout while it
                # flushes, a stale connection): the write may have been cut mid-frame, so
                # the socket must be cut too, never closed with a frame after that one.
                self._flushing = False
                self._forget(self._held)
                self._held = []
                if self._abort is not None:
                    self._abort.cancel()
            return
        self.close_request = close if isinstance(close, CloseRequest) else close.request()
        if flush:
            self._flushing = True
            self._release_held()
            self._send.send_nowait(_FLUSH_THEN_CLOSE)
        else:
            self._forget(self._held)
            self._held = []
            if self._abort is not None:
                self._abort.cancel()

    def _release_held(self) -> None:
        """Held frames go to the writer, in order, ahead of anything queued later."""
        held, self._held = self._held, []
        for frame in held:
            self._in_channel += 1
            self._send.send_nowait(frame)

    def _forget(self, frames: list[Outgoing]) -> None:
        for frame in frames:
            self._pending -= 1
            self._bytes -= len(frame)

    async def next_batch(self, max_bytes: int) -> tuple[list[Outgoing], bool]:
        """Wait for a frame, then take every frame already queued, up to `max_bytes`.

        Returns the frames and whether the connection must close after writing them. One
        write per batch instead of one per frame: under load a member's writer catches up
        with a single system call.
        """
        item = await self._receive.receive()
        batch: list[Outgoing] = []
        size = 0
        while True:
            if item is _FLUSH_THEN_CLOSE:
                return batch, True
            self._pending -= 1
            self._in_channel -= 1
            assert isinstance(item, bytes | str | WireFrame)
            self._bytes -= len(item)
            batch.append(item)
            size += len(item)
            if size >= max_bytes:
                return batch, False
            try:
                item = self._receive.receive_nowait()
            except trio.WouldBlock:
                return batch, False


def _payload(frame: bytes | str) -> bytes:
    return frame.encode("utf-8") if isinstance(frame, str) else frame


_SENT_SYNC = {0: "sync_step1", 1: "sync_step2", 2: "sync_update"}
_SENT_KIND = {1: "awareness", 2: "auth", 3: "query_awareness"}


def sent_label(frame: Outgoing) -> str:
    """The metric label of an outbound frame, read from its first bytes."""
    if isinstance(frame, WireFrame):
        frame = frame.payload
    if isinstance(frame, str):
        return "control"
    if frame[:1] == b"\x00" and len(frame) > 1:
        return _SENT_SYNC.get(frame[1], "sync")
    return _SENT_KIND.get(frame[0], "other") if frame else "other"


class _Flusher(trio.abc.Instrument):
    """Writes the outboxes marked during a task step, right after that step.

    A trio instrument rather than a task: the flush runs when the task that pushed (a room
    draining its mailbox, a reader answering a ping) yields, with no task switch of its
    own, so one drain is one write per member and the room itself makes no system call.
    """

    def __init__(self) -> None:
        # Outboxes holding frames since the last step; they append themselves.
        self.marked: list[Outbound] = []

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if not self.marked:
            return
        marked, self.marked = self.marked, []
        for outbound in marked:
            try:
                outbound.flush()
            except Exception:
                # The isolation boundary of one member's write: a bug here must not reach
                # trio (which would drop the instrument, and every later flush with it).
                log.exception("transport.flush_failed")
                outbound.close(TRANSPORT_FAILED, flush=False)


_FLUSHER: trio.lowlevel.RunVar[_Flusher] = trio.lowlevel.RunVar("civicrealtime_flusher")


def _flusher() -> _Flusher:
    try:
        return _FLUSHER.get()
    except LookupError:
        flusher = _Flusher()
        _FLUSHER.set(flusher)
        trio.lowlevel.add_instrument(flusher)
        return flusher


def start_flusher() -> None:
    """Install this run's flusher now (the server does, before it listens) rather than at
    the first push."""
    _flusher()
