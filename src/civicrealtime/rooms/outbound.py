"""One connection's outbound queue: the room pushes without waiting, the writer drains.

The queue is bounded by count and by bytes, not by the channel: the channel itself is
unbounded so that a close request always fits behind the frames already queued. A push into
a full queue (`capacity` frames, or `max_bytes` bytes already waiting) closes the
connection with 1013 (try again later) instead of dropping the frame: the client reconnects
and resyncs, so nothing is silently lost and the room never waits. The byte bound is
checked before the frame is added, so one frame of any size (a large document's step 2 on
join) still fits in a queue that holds less; a slow reader pins at most `max_bytes` plus one
frame. Broadcast frames are shared by every member's queue, so this counts what each
member keeps alive, not extra copies.
"""

from __future__ import annotations

import math
import os
from typing import Any

import attrs
import trio

from ..protocol import CloseCode, close_reason
from ..protocol.wire import WireFrame, WireRest

Outgoing = bytes | str | WireFrame


@attrs.frozen(kw_only=True, slots=True)
class CloseRequest:
    code: int
    reason: str


_FLUSH_THEN_CLOSE = object()


class Outbound:
    __slots__ = (
        "_abort",
        "_bytes",
        "_capacity",
        "_direct",
        "_flushing",
        "_max_bytes",
        "_pending",
        "_receive",
        "_send",
        "close_request",
    )

    def __init__(self, capacity: int, max_bytes: float = math.inf) -> None:
        self._send, self._receive = trio.open_memory_channel[object](math.inf)
        self._capacity = capacity
        self._max_bytes = max_bytes
        self._pending = 0
        self._bytes = 0
        self.close_request: CloseRequest | None = None
        # Set by the connection: cancels its tasks so that the socket is closed now.
        self._abort: trio.CancelScope | None = None
        self._flushing = False
        # While the connection serves: (ws, trio socket, stream lock, stats). A push into
        # an empty queue then writes at once (see push).
        self._direct: tuple[Any, Any, Any, Any] | None = None

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
        if self.close_request is not None and self._abort is not None and not self._flushing:
            scope.cancel()

    def attach(self, ws: Any, stats: Any) -> None:
        """The connection serves: pushes may write directly (trio-websocket internals, as
        Connection._write already uses; plain TCP only, TLS keeps the writer's path)."""
        if isinstance(ws._stream, trio.SocketStream):
            self._direct = (ws, ws._stream.socket, ws._stream_lock, stats)

    def detach(self) -> None:
        self._direct = None

    def push(self, frame: Outgoing) -> bool:
        """Queue a frame; False if the connection is closing (or was just closed by this)."""
        if self.close_request is not None:
            return False
        if self._pending >= self._capacity or self._bytes >= self._max_bytes:
            self.close(
                CloseCode.TRY_AGAIN_LATER,
                close_reason("SLOW_CONSUMER"),
                flush=False,
            )
            return False
        direct = self._direct
        if direct is not None and not self._pending and isinstance(frame, WireFrame):
            # Nothing queued and nobody writing: one non-blocking write now, no task
            # switch. The room still never waits: what the socket does not take is queued.
            ws, sock, lock, stats = direct
            fd = sock.fileno()
            if fd >= 0 and not lock.locked() and ws.closed is None:
                wire = frame.wire
                try:
                    sent = os.write(fd, wire)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    sent = -1
                if sent == len(wire):
                    stats.bytes_sent += len(frame)
                    payload = frame.payload
                    stats.messages_sent[
                        "sync_update" if payload[:2] == b"\x00\x02" else "awareness"
                    ] += 1
                    return True
                if sent > 0:
                    frame = WireRest(frame.payload, wire[sent:])
        self._pending += 1
        self._bytes += len(frame)
        self._send.send_nowait(frame)
        return True

    def close(self, code: int, reason: str, *, flush: bool) -> None:
        """Ask the connection to close: after the queued frames, or at once."""
        if self.close_request is not None:
            return
        self.close_request = CloseRequest(code=code, reason=reason)
        if flush:
            self._flushing = True
            self._send.send_nowait(_FLUSH_THEN_CLOSE)
        elif self._abort is not None:
            self._abort.cancel()

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
