"""One client connection after it joined its room: a reader, a writer and a keepalive.

- The reader always drains the socket, so pings and closes keep flowing. Each read's
  complete frames are decoded with the sans-IO decoder and reach the room's mailbox (its
  only way to the room) as one message: one task switch per read, not per frame. Pings
  and malformed frames are answered right here, without bothering the room.
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
import time

import trio

from ..config import RealtimeConfig
from ..limits import TokenBucket
from ..protocol import (
    AwarenessReceived,
    Event,
    FrameDecoder,
    Ignored,
    InvalidMessage,
    PingReceived,
    QueryAwarenessReceived,
    SyncStep1Received,
    UpdateReceived,
)
from ..protocol import closecodes as closes
from ..protocol import control as control_frames
from ..protocol.awareness import AwarenessLimits
from ..protocol.wire import WireFrame, wire_bytes
from ..rooms import FromClient, FromClientBatch, Leave, Member, RoomHandle
from ..stats import Stats
from .outbound import Outbound, sent_label
from .websocket import PeerClosed, ProtocolViolation, ServerWebSocket

# Bytes one write may gather from a member's queue.
WRITE_BATCH_BYTES = 64 * 1024

log = logging.getLogger("civicrealtime.connection")


class Connection:
    def __init__(
        self,
        *,
        ws: ServerWebSocket,
        member: Member,
        outbound: Outbound,
        handle: RoomHandle,
        config: RealtimeConfig,
        stats: Stats,
    ) -> None:
        self._ws = ws
        # The member's outbox, as the transport implements it (the room sees `Outbox`).
        self.outbound = outbound
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
        outbound = self.outbound
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
        outbound = self.outbound
        if self.member.control_frames:
            outbound.push(control_frames.session_revoked_frame(reason))
        outbound.close(closes.by_reason(code).request(reason=reason), flush=True)

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
        ws, member = self._ws, self.member
        control = member.control_frames
        while True:
            try:
                frames = await ws.receive()
            except PeerClosed:
                return
            except ProtocolViolation as exc:
                log.info("message.refused conn=%s detail=%s", member.conn_id, exc.detail)
                # After what is queued, as any close: the writer flushes, then ends us all.
                self.outbound.close(exc.close, flush=True)
                await trio.sleep_forever()
            if not frames:
                continue  # a partial frame, a ping or a pong
            member.last_seen = trio.current_time()
            if not await self._forward(frames, control):
                return

    async def _forward(self, frames: list[bytes | str], control: bool) -> bool:
        """Decode one read's frames and hand the room what it must see, in one message.

        Answers pings and refuses malformed frames here. The rate limit is spent frame by
        frame: when it runs out, what came before goes to the room, then reading waits.
        False once the room is gone.
        """
        member, outbound, stats = self.member, self.outbound, self._stats
        decoder, bucket = self._session, self._bucket
        events: list[Event] = []
        now = trio.current_time()
        for frame in frames:
            event = decoder.receive(frame)
            stats.bytes_received += len(frame)
            stats.messages_received[_received_label(event)] += 1
            # Pings are how clients stay alive: free up to a sane rate, so keeping alive is
            # never slowed down; a flood of them is paced like any other frame.
            ping = isinstance(event, PingReceived)
            if not (ping and self._free_pings.try_take(now)):
                delay = bucket.take(now)
                if delay > 0:
                    # Out of tokens: what came before goes to the room, then reading waits.
                    if not await self._hand_over(events):
                        return False
                    events = []
                    await self._throttle(now, delay, control)
                    now = trio.current_time()
                else:
                    self._flooding_since = None
            if ping:
                outbound.push(control_frames.pong_frame(int(time.time() * 1000)))
            elif isinstance(event, InvalidMessage):
                if event.refused is not None:
                    stats.awareness_refused[event.refused] += 1
                self._report_invalid(event.reason, control)
            elif isinstance(event, Ignored):
                log.debug("message.ignored conn=%s what=%s", member.conn_id, event.what)
            else:
                events.append(event)
        return await self._hand_over(events)

    async def _hand_over(self, events: list[Event]) -> bool:
        """The events to the room's mailbox in one message; False once the room is gone."""
        if not events:
            return True
        member = self.member
        message = (
            FromClient(member=member, event=events[0])
            if len(events) == 1
            else FromClientBatch(member=member, events=tuple(events))
        )
        try:
            await self._handle.mailbox.send(message)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False  # the room stopped; it has closed (or is closing) us
        return True

    async def _throttle(self, now: float, delay: float, control: bool) -> None:
        """Wait `delay` for the bucket; warn once; close with 4013 on a sustained flood."""
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
                self.outbound.push(control_frames.notice_frame("warning", "Rate limit approaching"))
        if now - self._flooding_since >= self._config.rate_limiting.flood_close_after:
            self._stats.rate_limit_closes += 1
            log.info(
                "rate.closed conn=%s user=%s", self.member.conn_id, self.member.identity.user_id
            )
            self.outbound.close(closes.RATE_LIMIT_EXCEEDED, flush=True)
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
            self.outbound.push(
                control_frames.error_frame("INVALID_MESSAGE", "message rejected: " + reason)
            )

    async def _writer(self) -> None:
        """Write what the flusher could not: whole batches, each under `send_timeout`."""
        outbound, socket = self.outbound, self._ws
        timeout = self._config.connection.send_timeout
        while True:
            batch, closing = await outbound.next_batch(WRITE_BATCH_BYTES)
            if batch:
                with trio.move_on_after(timeout) as scope:
                    if not await self._write(socket, batch):
                        return
                if scope.cancelled_caught:
                    log.info("connection.send_timeout conn=%s", self.member.conn_id)
                    outbound.close(closes.SEND_TIMEOUT, flush=False)
                    return
                stats = self._stats
                for message in batch:
                    stats.bytes_sent += len(message)
                    stats.messages_sent[sent_label(message)] += 1
            if closing:
                return  # a close was requested after the queued frames

    @staticmethod
    async def _write(socket: ServerWebSocket, batch: list[bytes | str | WireFrame]) -> bool:
        """One batch: a non-blocking write first, then wait for the socket to take the rest.
        False once the connection is closing."""
        # Broadcast frames arrive framed once for the whole room (WireFrame).
        data = b"".join(wire_bytes(message) for message in batch)
        sent = socket.write_now(data)
        if sent < 0:
            return False
        return sent == len(data) or await socket.write(data[sent:])

    async def _keepalive(self) -> None:
        interval = self._config.connection_cleanup.check_interval
        while True:
            await trio.sleep(interval)
            with trio.move_on_after(interval):
                if not await self._ws.ping():
                    return
                self.member.last_seen = trio.current_time()


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
