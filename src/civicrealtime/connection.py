"""One client connection after it joined its room: a reader, a writer and a keepalive.

- The reader always drains the socket, so pings and closes keep flowing, decodes each frame
  with the sans-IO session and forwards it to the room's mailbox (its only way to the room).
  Pings and malformed frames are answered right here, without bothering the room.
- The writer owns every send, each under `connection.send_timeout`.
- The keepalive pings every `connection_cleanup.check_interval`; a pong counts as a sign of
  life, and the room's sweep closes members silent for `stale_threshold`.
- When the token expires, a deadline in the connection's own nursery ends the session.
Message rate: a token bucket per connection. A flood is slowed down first (the reader stops
reading, so TCP pushes back and nothing is lost), warned once with a `notice` frame, and
closed with 4013 only when it keeps flooding for `rate_limiting.flood_close_after` seconds.
Pings are free up to their own bucket (`rate_limiting.pings_per_second`), so a client is
never slowed down for staying alive; each ping beyond it is paced like any other frame.
Any of the three ending ends the connection; the room is told exactly once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from .config import RealtimeConfig
from .limits import TokenBucket
from .protocol import (
    AwarenessReceived,
    CloseCode,
    Event,
    FrameDecoder,
    Ignored,
    InvalidMessage,
    PingReceived,
    QueryAwarenessReceived,
    SyncStep1Received,
    UpdateReceived,
    close_reason,
)
from .protocol import control as control_frames
from .protocol.awareness import AwarenessLimits
from .protocol.wire import WireFrame, wire_bytes
from .rooms import FromClient, Leave, Member, RoomHandle
from .stats import Stats

# Bytes one write may gather from a member's queue.
WRITE_BATCH_BYTES = 64 * 1024

log = logging.getLogger("civicrealtime.connection")


class Connection:
    def __init__(
        self,
        *,
        ws: WebSocketConnection,
        member: Member,
        handle: RoomHandle,
        config: RealtimeConfig,
        stats: Stats,
    ) -> None:
        self._ws = ws
        self._stats = stats
        self.member = member
        self._handle = handle
        self.room_type = handle.room_type
        self._config = config
        presence = config.awareness
        self._session = FrameDecoder(
            awareness_limits=AwarenessLimits.for_room(
                max_states=presence.max_room_states,
                max_state_bytes=presence.max_state_bytes,
                max_bytes=presence.max_room_bytes,
            )
        )
        self._invalid_reported = 0
        limits = config.rate_limiting
        now = trio.current_time()
        self._bucket = TokenBucket(limits.messages_per_second, limits.burst, now)
        self._free_pings = TokenBucket(limits.pings_per_second, limits.ping_burst, now)
        self._flooding_since: float | None = None
        self._flood_warned = False
        self.throttled = 0  # frames that had to wait for the bucket

    async def serve(self) -> None:
        """Run until the peer leaves, the room closes us, or we are cancelled.

        Returns normally in every case but cancellation of the caller; the caller closes
        the socket with `member.outbound.close_request` (or 1000).
        """
        outbound = self.member.outbound
        with trio.CancelScope() as scope:
            outbound.bind(scope)
            outbound.attach(self._ws, self._stats)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._run_then_cancel, self._writer, nursery)
                    nursery.start_soon(self._run_then_cancel, self._reader, nursery)
                    if self._config.connection_cleanup.enabled:
                        nursery.start_soon(self._keepalive)
                    if self.member.identity.expires_at is not None:
                        nursery.start_soon(self._expire, self.member.identity.expires_at)
            finally:
                outbound.detach()

    def end_session(self, code: str, reason: str) -> None:
        """Close with 4001 (revocation, token expiry); a `session.revoked` frame first to a
        connection that gets control frames (the close reason carries the same)."""
        outbound = self.member.outbound
        if self.member.control_frames:
            outbound.push(control_frames.session_revoked_frame(reason))
        outbound.close(CloseCode.AUTH_FAILED, close_reason(code, reason=reason), flush=True)

    async def _expire(self, expires_at: float) -> None:
        await trio.sleep(max(0.0, expires_at - time.time()))
        log.info(
            "auth.token_expired conn=%s user=%s", self.member.conn_id, self.member.identity.user_id
        )
        self.end_session("TOKEN_EXPIRED", "token expired")

    async def leave_room(self) -> None:
        """Tell the room we are gone; shielded, so a cancelled connection still leaves."""
        # A broken mailbox means the room is gone, and its members with it.
        with (
            trio.CancelScope(shield=True),
            trio.move_on_after(self._config.shutdown_timeout),
            contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
        ):
            await self._handle.mailbox.send(Leave(member=self.member))

    @staticmethod
    async def _run_then_cancel(task: object, nursery: trio.Nursery) -> None:
        assert callable(task)
        await task()
        nursery.cancel_scope.cancel()

    async def _reader(self) -> None:
        ws, member, outbound = self._ws, self.member, self.member.outbound
        mailbox = self._handle.mailbox
        control = member.control_frames
        while True:
            try:
                frame = await ws.get_message()
            except ConnectionClosed:
                return
            member.last_seen = trio.current_time()
            event = self._session.receive(frame)
            stats = self._stats
            stats.bytes_received += len(frame)
            stats.messages_received[_received_label(event)] += 1
            if isinstance(event, PingReceived):
                # Pings are how clients stay alive: free up to a sane rate, so keeping alive
                # is never slowed down; a flood of them is paced like any other frame.
                if not self._free_pings.try_take(member.last_seen):
                    await self._pace(control)
                outbound.push(control_frames.pong_frame(int(time.time() * 1000)))
                continue
            await self._pace(control)
            if isinstance(event, InvalidMessage):
                if event.refused is not None:
                    stats.awareness_refused[event.refused] += 1
                self._report_invalid(event.reason, control)
            elif isinstance(event, Ignored):
                log.debug("message.ignored conn=%s what=%s", member.conn_id, event.what)
            else:
                try:
                    await mailbox.send(FromClient(member=member, event=event))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return  # the room stopped; it has closed (or is closing) us

    async def _pace(self, control: bool) -> None:
        """Spend a token; when there is none, stop reading until there is (backpressure)."""
        now = trio.current_time()
        delay = self._bucket.take(now)
        if delay <= 0:
            self._flooding_since = None
            return
        self.throttled += 1
        self._stats.rate_limit_slowdowns += 1
        if self._flooding_since is None:
            self._flooding_since = now
        if not self._flood_warned:
            self._flood_warned = True
            log.info(
                "rate.slowed conn=%s user=%s", self.member.conn_id, self.member.identity.user_id
            )
            if control:
                self.member.outbound.push(
                    control_frames.notice_frame("warning", "Rate limit approaching")
                )
        if now - self._flooding_since >= self._config.rate_limiting.flood_close_after:
            self._stats.rate_limit_closes += 1
            log.info(
                "rate.closed conn=%s user=%s", self.member.conn_id, self.member.identity.user_id
            )
            self.member.outbound.close(
                CloseCode.TOO_MANY_EDITS, close_reason("RATE_LIMIT_EXCEEDED"), flush=True
            )
            await trio.sleep_forever()  # the writer flushes, then the nursery is cancelled
        await trio.sleep(delay)

    def _report_invalid(self, reason: str, control: bool) -> None:
        self._invalid_reported += 1
        log.info(
            "message.invalid room=%s conn=%s detail=%s",
            self._handle.key,
            self.member.conn_id,
            reason,
        )
        if control:
            self.member.outbound.push(
                control_frames.error_frame("INVALID_MESSAGE", "message rejected: " + reason)
            )

    async def _writer(self) -> None:
        outbound = self.member.outbound
        timeout = self._config.connection.send_timeout
        while True:
            batch, closing = await outbound.next_batch(WRITE_BATCH_BYTES)
            if batch:
                # Broadcast frames arrive framed once for the whole room (WireFrame).
                data = b"".join(wire_bytes(message) for message in batch)
                sent = self._write_now(data)
                if sent < 0:
                    return
                data = data[sent:]
                with trio.move_on_after(timeout) as scope:
                    if data and not await self._write(data):
                        return
                if scope.cancelled_caught:
                    log.info("connection.send_timeout conn=%s", self.member.conn_id)
                    outbound.close(
                        CloseCode.TRY_AGAIN_LATER, close_reason("SEND_TIMEOUT"), flush=False
                    )
                    return
                stats = self._stats
                for message in batch:
                    stats.bytes_sent += len(message)
                    stats.messages_sent[_sent_label(message)] += 1
            if closing:
                return  # a close was requested after the queued frames

    def _write_now(self, data: bytes) -> int:
        """Bytes written at once without waiting (0 if someone else is writing); -1: closed."""
        ws = self._ws
        if ws.closed is not None:
            return -1
        stream = ws._stream
        if ws._stream_lock.locked() or not isinstance(stream, trio.SocketStream):
            return 0  # someone is writing; or TLS, which needs the awaited path
        fd = stream.socket.fileno()
        if fd < 0:
            return -1
        try:
            return os.write(fd, data)
        except BlockingIOError:
            return 0
        except OSError:
            return -1

    async def _write(self, data: bytes) -> bool:
        """Write pre-framed messages to the socket; False once the connection is closing.

        trio-websocket offers only `send_message`, which frames each message through wsproto
        on every connection and costs one system call per message (the profile in
        docs/benchmarks.md). This writes whole frames under the connection's own stream
        lock instead, which is what `send_message` itself does after framing. Server frames
        need no mask and we negotiate no extension, so they are valid on every connection.
        Pinned to trio-websocket 0.12.2; tests/protocol/test_wire.py checks the internals it uses.
        """
        ws = self._ws
        if ws.closed is not None:
            return False
        async with ws._stream_lock:
            if ws.closed is not None:  # a close frame went out while we waited
                return False
            try:
                await ws._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return False
        return True

    async def _keepalive(self) -> None:
        interval = self._config.connection_cleanup.check_interval
        while True:
            await trio.sleep(interval)
            with trio.move_on_after(interval):
                try:
                    await self._ws.ping()
                except ConnectionClosed:
                    return
                self.member.last_seen = trio.current_time()


_SENT_SYNC = {0: "sync_step1", 1: "sync_step2", 2: "sync_update"}
_SENT_KIND = {1: "awareness", 2: "auth", 3: "query_awareness"}


def _sent_label(frame: bytes | str | WireFrame) -> str:
    """The metric label of an outbound frame, read from its first bytes."""
    if isinstance(frame, WireFrame):
        frame = frame.payload
    if isinstance(frame, str):
        return "control"
    if frame[:1] == b"\x00" and len(frame) > 1:
        return _SENT_SYNC.get(frame[1], "sync")
    return _SENT_KIND.get(frame[0], "other") if frame else "other"


def _received_label(event: Event) -> str:
    match event:
        case UpdateReceived(is_step2=True):
            return "sync_step2"
        case UpdateReceived():
            return "sync_update"
        case SyncStep1Received():
            return "sync_step1"
        case AwarenessReceived():
            return "awareness"
        case QueryAwarenessReceived():
            return "query_awareness"
        case PingReceived():
            return "ping"
        case InvalidMessage():
            return "invalid"
    return "control"
