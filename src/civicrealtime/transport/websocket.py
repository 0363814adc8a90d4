"""One server-side WebSocket: wsproto's state machine over a trio stream, read by its owner.

Why not trio-websocket (docs/architecture.md, "The WebSocket layer"): its reader task
parses every frame and hands each message through a channel to whoever awaits
`get_message`, so each incoming frame cost three task switches before a room saw it, and
its public API frames and sends one message per system call. Here the connection's own
reader task calls `receive`, which reads once and returns every complete message of that
read; the caller hands them to the room together. wsproto, which trio-websocket is built
on, still does the HTTP upgrade (through h11), the frame parsing, unmasking, UTF-8 checks
of text and the close handshake.

Writing: frames built once per broadcast (protocol/wire.py) go to the socket as bytes. Our
server frames need no mask and no extension is ever negotiated, so those bytes are valid
on every connection. `write_now` never waits (one `os.write` on the descriptor, used by
the outbox's flusher); `write` waits under the stream lock, which also orders our control
frames (pong, ping, close) between whole frames.

Ending: `receive` raises `PeerClosed` once the peer closed (its close frame answered, or
TCP ended) and `ProtocolViolation` for a frame the protocol forbids or a message over the
size limit; the server then closes with that row of the close table.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from ..protocol import closecodes
from ..protocol.closecodes import Close, CloseCode
from ..protocol.wire import wire_bytes

log = logging.getLogger("civicrealtime.transport")

# Bytes asked of the socket per read: several frames of a busy client arrive in one read,
# and the whole read reaches the room as one mailbox message. The buffer lives only for
# the read, so idle connections hold none of it.
RECEIVE_BYTES = 16 * 1024

# The codes wsproto closes with when a frame breaks RFC 6455, as rows of our table.
_VIOLATIONS: dict[int, Close] = {
    CloseCode.PROTOCOL_ERROR: closecodes.PROTOCOL_ERROR,
    CloseCode.INVALID_PAYLOAD: closecodes.INVALID_PAYLOAD,
    CloseCode.MESSAGE_TOO_BIG: closecodes.MESSAGE_TOO_BIG,
}


class PeerClosed(Exception):
    """The peer ended the connection: its close frame (answered), or TCP closed or reset."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


class ProtocolViolation(Exception):
    """The peer broke the protocol; the connection must close with `close`."""

    def __init__(self, close: Close, detail: str) -> None:
        super().__init__(detail)
        self.close = close
        self.detail = detail


class ServerWebSocket:
    """The server side of one WebSocket connection on a trio stream.

    Used by one reader task (`handshake`, then `receive` until it raises) and any number of
    writers (`write_now`, `write`, `send_message`, `ping`); `aclose` ends it once the reader
    is gone.
    """

    __slots__ = (
        "_closed_here",
        "_end",
        "_fd",
        "_full_read",
        "_lock",
        "_max_message_size",
        "_parts",
        "_pings",
        "_size",
        "_stream",
        "_ws",
        "closed",
        "remote",
    )

    def __init__(self, stream: trio.abc.Stream, *, max_message_size: int) -> None:
        self._stream = stream
        self._ws = WSConnection(ConnectionType.SERVER)
        self._lock = trio.StrictFIFOLock()
        self._max_message_size = max_message_size
        # The parts of a fragmented message, and their size so far.
        self._parts: list[bytes | bytearray | str] = []
        self._size = 0
        # Raised by the next `receive`, once the messages before it were returned.
        self._end: PeerClosed | ProtocolViolation | None = None
        self._pings: list[trio.Event] = []
        # (code, reason) once a close frame went either way or TCP ended: no more writes.
        self.closed: tuple[int, str] | None = None
        # Plain TCP: its descriptor, for reads and direct writes without trio's wrappers (a
        # TLS or test stream has none and goes through the stream). -1 once closed here:
        # a closed descriptor's number may already belong to another connection.
        sock = stream.socket if isinstance(stream, trio.SocketStream) else None
        self._fd = sock.fileno() if sock is not None else -1
        self._full_read = False  # the last read filled its buffer: more is likely waiting
        self._closed_here = False
        self.remote = _peer(sock)

    # -- the opening handshake ---------------------------------------------------------------

    async def handshake(self) -> Request | None:
        """Read the upgrade request. None if the peer left or sent something else (then
        answered 400 or 426, as wsproto advises, and closed)."""
        while True:
            data = await self._read()
            if not data:
                await self._close_stream()
                return None
            try:
                self._ws.receive_data(data)
            except RemoteProtocolError as exc:
                log.debug("websocket.bad_upgrade detail=%s", exc)
                if isinstance(exc.event_hint, RejectConnection):
                    await self._send_all_quietly(self._ws.send(exc.event_hint))
                await self._close_stream()
                return None
            for event in self._ws.events():
                if isinstance(event, Request):
                    return event

    async def accept(self, subprotocol: str | None) -> bool:
        """Answer 101; False if the peer is already gone."""
        accept = AcceptConnection(subprotocol=subprotocol)
        return await self._send_all_quietly(self._ws.send(accept))

    async def reject(self, status: int, body: bytes) -> None:
        """Answer the upgrade with an HTTP error and its plain-text body, then close."""
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode("ascii")),
        ]
        data = self._ws.send(RejectConnection(status_code=status, headers=headers, has_body=True))
        data += self._ws.send(RejectData(data=body))
        await self._send_all_quietly(data)
        self.closed = (status, "rejected")
        await self._close_stream()

    # -- reading -----------------------------------------------------------------------------

    async def receive(self) -> list[bytes | str]:
        """Read once; every message that read completed, in order (perhaps none).

        Pings are answered and pongs noted here. Raises `PeerClosed` or
        `ProtocolViolation` once the messages before the end were returned.
        """
        if self._end is not None:
            raise self._end
        data = await self._read()
        if not data:
            self._ended(PeerClosed(CloseCode.ABNORMAL, "connection lost"))
            raise self._end_now()
        ws = self._ws
        ws.receive_data(data)
        messages: list[bytes | str] = []
        replies: list[bytes] = []
        for event in ws.events():
            kind = type(event)
            if kind is BytesMessage or kind is TextMessage:
                assert isinstance(event, BytesMessage | TextMessage)
                message = self._message(event)
                if message is not None:
                    messages.append(message)
                elif self._end is not None:
                    break
            elif kind is Ping:
                assert isinstance(event, Ping)
                replies.append(ws.send(event.response()))
            elif kind is Pong:
                self._ponged()
            elif kind is CloseConnection:
                assert isinstance(event, CloseConnection)
                await self._peer_closing(event)
                break
        if replies and self.closed is None:
            await self.write(b"".join(replies))
        if messages:
            return messages
        if self._end is not None:
            raise self._end_now()
        return messages

    def _message(self, event: BytesMessage | TextMessage) -> bytes | str | None:
        """A whole message, or None while parts are missing (or past the size limit)."""
        data = event.data
        self._size += len(data)
        if self._size > self._max_message_size:
            limit = self._max_message_size
            self._parts.clear()
            self._ended(
                ProtocolViolation(
                    closecodes.MESSAGE_TOO_BIG, f"a message over {limit} bytes (the limit)"
                )
            )
            return None
        if not event.message_finished:
            self._parts.append(data)
            return None
        self._size = 0
        if self._parts:
            parts, self._parts = self._parts, []
            parts.append(data)
            if isinstance(event, TextMessage):
                return "".join(part for part in parts if isinstance(part, str))
            return b"".join(bytes(part) for part in parts if not isinstance(part, str))
        return bytes(data) if isinstance(data, bytearray) else data

    async def _peer_closing(self, event: CloseConnection) -> None:
        if self._ws.state is ConnectionState.REMOTE_CLOSING:
            # The peer's close frame: answer it and end TCP (RFC 6455 7.1.1: the server
            # closes TCP first).
            if self.closed is None:
                self.closed = (event.code, event.reason or "")
                await self._send_all_quietly(self._ws.send(event.response()))
            self._ended(PeerClosed(event.code, event.reason or ""))
            await self._close_stream()
            return
        # wsproto's parser refused a frame (it reports that as a close event while the
        # connection is still open): we close, with the matching row.
        close = _VIOLATIONS.get(event.code, closecodes.PROTOCOL_ERROR)
        self._ended(ProtocolViolation(close, event.reason or close.text))

    def _ended(self, end: PeerClosed | ProtocolViolation) -> None:
        if self._end is None:
            self._end = end
        if isinstance(end, PeerClosed) and self.closed is None:
            self.closed = (end.code, end.reason)
        self._ponged()  # a waiting ping learns the connection is gone

    def _end_now(self) -> PeerClosed | ProtocolViolation:
        assert self._end is not None
        return self._end

    async def _read(self) -> bytes:
        """Up to RECEIVE_BYTES; b"" once the connection ended (or was closed here).

        On a socket, wait for it to be readable first, then read: trio's `receive_some`
        tries first and waits on failure, which for a client typing costs one failed system
        call per message. After a read that filled the buffer, read at once instead.
        """
        fd = self._fd
        try:
            if fd < 0:
                if self._closed_here:
                    return b""
                return bytes(await self._stream.receive_some(RECEIVE_BYTES))
            if self._full_read:
                await trio.lowlevel.checkpoint()
            else:
                await trio.lowlevel.wait_readable(fd)
            while True:
                if self._fd < 0:
                    return b""  # closed while we waited
                try:
                    data = os.read(fd, RECEIVE_BYTES)
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(fd)
                    continue
                self._full_read = len(data) == RECEIVE_BYTES
                return data
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return b""

    # -- writing -----------------------------------------------------------------------------

    def write_now(self, data: bytes) -> int:
        """Bytes of `data` written without waiting: 0 if another write is under way (or the
        socket buffer is full); -1 once the connection is closing or broken."""
        if self.closed is not None:
            return -1
        fd = self._fd
        if fd < 0 or self._lock.locked():
            return 0
        try:
            return os.write(fd, data)
        except BlockingIOError:
            return 0
        except OSError:
            return -1

    async def write(self, data: bytes) -> bool:
        """Write whole frames under the stream lock; False once the connection is closing."""
        if self.closed is not None:
            return False
        async with self._lock:
            if self.closed is not None:  # a close frame went out while we waited
                return False
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._ended(PeerClosed(CloseCode.ABNORMAL, "connection lost"))
                return False
        return True

    async def send_message(self, message: bytes | str) -> bool:
        """One message, framed here; False once the connection is closing."""
        return await self.write(wire_bytes(message))

    async def ping(self) -> bool:
        """Ping and wait for a pong (any pong: each is a sign of life). False once closed."""
        if self.closed is not None:
            return False
        waiter = trio.Event()
        self._pings.append(waiter)
        if not await self.write(self._ws.send(Ping(payload=os.urandom(4)))):
            return False
        await waiter.wait()
        return self.closed is None

    def _ponged(self) -> None:
        pings, self._pings = self._pings, []
        for waiter in pings:
            waiter.set()

    # -- closing -----------------------------------------------------------------------------

    async def aclose(self, code: int, reason: str) -> None:
        """The closing handshake: our close frame, then the peer's (read and dropped until
        it comes, under the caller's deadline), then TCP. Once the reader is gone."""
        try:
            if self.closed is None and self._ws.state is ConnectionState.OPEN:
                self.closed = (code, reason)
                try:
                    data = self._ws.send(CloseConnection(code=code, reason=reason or None))
                except LocalProtocolError:
                    return
                if await self._send_all_quietly(data):
                    await self._await_close_reply()
        finally:
            await self._close_stream()

    async def abort(self) -> None:
        """Cut TCP without a close frame: after a frame was cut off mid-write, a close frame
        would be read as the rest of it."""
        if self.closed is None:
            self.closed = (CloseCode.ABNORMAL, "aborted")
        await self._close_stream()

    async def _await_close_reply(self) -> None:
        while True:
            data = await self._read()
            if not data:
                return
            try:
                self._ws.receive_data(data)
                for event in self._ws.events():
                    if isinstance(event, CloseConnection):
                        return
            except (LocalProtocolError, RemoteProtocolError):
                return

    async def _send_all_quietly(self, data: bytes) -> bool:
        """Send under the lock; False if the peer is gone."""
        async with self._lock:
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return False
        return True

    async def _close_stream(self) -> None:
        if self.closed is None:
            self.closed = (CloseCode.ABNORMAL, "connection lost")
        self._fd = -1
        self._closed_here = True
        self._ponged()
        with trio.CancelScope(shield=True):
            await self._stream.aclose()


def _peer(sock: object | None) -> str:
    """The peer's address (no port), for logs and per-address limits."""
    getpeername = getattr(sock, "getpeername", None)
    if getpeername is None:
        return "unknown"
    try:
        address = getpeername()
    except OSError:
        return "unknown"
    return str(address[0]) if isinstance(address, Sequence) and address else str(address)


def request_headers(request: Request) -> tuple[tuple[str, str], ...]:
    """The request's headers as (lower-case name, value) text pairs."""
    return tuple(
        (bytes(name).decode("latin-1").lower(), bytes(value).decode("latin-1"))
        for name, value in request.extra_headers
    )
