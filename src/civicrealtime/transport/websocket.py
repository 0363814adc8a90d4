"""One server-side WebSocket over a trio stream, read by its owner's task.

Why not trio-websocket (docs/architecture.md, "The WebSocket layer"): its reader task
parses every frame and hands each message through a channel to whoever awaits
`get_message`, so each incoming frame cost three task switches before a room saw it, and
its public API frames and sends one message per system call. Here the connection's own
reader task calls `receive`, which reads once and returns every complete message of that
read; the caller hands them to the room together.

Who parses what: wsproto (through h11) reads the upgrade request and writes the 101 or the
HTTP refusal; after the upgrade, the client's frames are read by `protocol/wsframes.py`
(sans-IO, tested against wsproto) and our frames are built by `protocol/wire.py`. Server
frames need no mask and no extension is ever negotiated, so a broadcast's bytes, framed
once, are valid on every connection.

Writing: `write_now` never waits (one `os.write` on the descriptor, used by the outbox's
flusher); `write` waits under the stream lock, which also orders our control frames (pong,
ping, close) between whole frames.

Ending: `receive` raises `PeerClosed` once the peer closed (its close frame answered, or
TCP ended) and `ProtocolViolation` for a frame the protocol forbids or a message over the
size limit; the server then closes with that row of the close table.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Sequence

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, RejectData, Request
from wsproto.utilities import RemoteProtocolError

from ..protocol import closecodes, wsframes
from ..protocol.closecodes import Close, CloseCode
from ..protocol.wire import frame, wire_bytes
from ..protocol.wsframes import ClientFrameReader

log = logging.getLogger("civicrealtime.transport")

# Bytes asked of the socket per read: several frames of a busy client arrive in one read,
# and the whole read reaches the room as one mailbox message. The buffer lives only for
# the read, so idle connections hold none of it.
RECEIVE_BYTES = 16 * 1024
# The upgrade request's head (request line and headers), at most.
MAX_REQUEST_HEAD = 16 * 1024

# The codes a client's frames can break the protocol with, as rows of our table.
_VIOLATIONS: dict[int, Close] = {
    wsframes.PROTOCOL_ERROR: closecodes.PROTOCOL_ERROR,
    wsframes.INVALID_PAYLOAD: closecodes.INVALID_PAYLOAD,
    wsframes.MESSAGE_TOO_BIG: closecodes.MESSAGE_TOO_BIG,
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
        "_early",
        "_end",
        "_fd",
        "_frames",
        "_full_read",
        "_lock",
        "_pings",
        "_stream",
        "_upgrade",
        "closed",
        "remote",
    )

    def __init__(self, stream: trio.abc.Stream, *, max_message_size: int) -> None:
        self._stream = stream
        self._upgrade = WSConnection(ConnectionType.SERVER)
        self._frames = ClientFrameReader(max_message_size)
        self._lock = trio.StrictFIFOLock()
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
        # Bytes that came with the upgrade request: the client's first frames, if any.
        self._early = b""
        self.remote = _peer(sock)

    # -- the opening handshake ---------------------------------------------------------------

    async def handshake(self) -> Request | None:
        """Read the upgrade request. None if the peer left or sent something else (then
        answered 400, 426 or 431 and closed)."""
        head = b""
        while True:
            data = await self._read()
            if not data:
                await self._close_stream()
                return None
            head += data
            end = head.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(head) > MAX_REQUEST_HEAD:
                await self._refuse_upgrade(RejectConnection(status_code=431))
                return None
        # wsproto reads the head only: what follows it is already the client's first frames.
        head, rest = head[: end + 4], head[end + 4 :]
        try:
            self._upgrade.receive_data(head)
        except RemoteProtocolError as exc:
            log.debug("websocket.bad_upgrade detail=%s", exc)
            hint = exc.event_hint
            await self._refuse_upgrade(hint if isinstance(hint, RejectConnection) else None)
            return None
        for event in self._upgrade.events():
            if isinstance(event, Request):
                self._early = rest
                return event
        await self._refuse_upgrade(RejectConnection())  # blank lines, no request
        return None

    async def accept(self, subprotocol: str | None) -> bool:
        """Answer 101; False if the peer is already gone."""
        accept = AcceptConnection(subprotocol=subprotocol)
        return await self._send_all_quietly(self._upgrade.send(accept))

    async def reject(self, status: int, body: bytes) -> None:
        """Answer the upgrade with an HTTP error and its plain-text body, then close."""
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode("ascii")),
        ]
        data = self._upgrade.send(
            RejectConnection(status_code=status, headers=headers, has_body=True)
        )
        data += self._upgrade.send(RejectData(data=body))
        await self._send_all_quietly(data)
        self.closed = (status, "rejected")
        await self._close_stream()

    async def _refuse_upgrade(self, refusal: RejectConnection | None) -> None:
        if refusal is not None:
            await self._send_all_quietly(self._upgrade.send(refusal))
        await self._close_stream()

    # -- reading -----------------------------------------------------------------------------

    async def receive(self) -> list[bytes | str]:
        """Read once; every message that read completed, in order (perhaps none).

        Pings are answered and pongs noted here. Raises `PeerClosed` or
        `ProtocolViolation` once the messages before the end were returned.
        """
        if self._end is not None:
            raise self._end
        data, self._early = (self._early, b"") if self._early else (await self._read(), b"")
        if not data:
            self._ended(PeerClosed(CloseCode.ABNORMAL, "connection lost"))
            raise self._end_now()
        messages = await self._take(data)
        if messages or self._end is None:
            return messages
        raise self._end_now()

    async def _take(self, data: bytes) -> list[bytes | str]:
        """Parse `data`; answer pings, note pongs, settle a close or a violation."""
        messages, events = self._frames.feed(data)
        pongs: list[bytes] = []
        for event in events:
            if isinstance(event, wsframes.Ping):
                pongs.append(frame(event.payload, wsframes.OP_PONG))
            elif isinstance(event, wsframes.Pong):
                self._ponged()
            elif isinstance(event, wsframes.Close):
                await self._peer_closing(event)
            else:
                close = _VIOLATIONS.get(event.code, closecodes.PROTOCOL_ERROR)
                self._ended(ProtocolViolation(close, event.detail))
        if pongs and self.closed is None:
            await self.write(b"".join(pongs))
        return messages

    async def _peer_closing(self, event: wsframes.Close) -> None:
        """The peer's close frame: answer it and end TCP (RFC 6455 §7.1.1: the server
        closes TCP first)."""
        if self.closed is None:
            self.closed = (event.code, event.reason)
            # Echo its code; a close without one is answered without one.
            code = b"" if event.code == wsframes.NO_STATUS else struct.pack("!H", event.code)
            await self._send_all_quietly(frame(code, wsframes.OP_CLOSE))
        self._ended(PeerClosed(event.code, event.reason))
        await self._close_stream()

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
        if not await self.write(frame(os.urandom(4), wsframes.OP_PING)):
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
        it comes, under the caller's deadline), then TCP. Once the reader is gone.

        After a violation the peer's frames cannot be followed any more (RFC 6455 §7.1.7):
        TCP ends right after our close frame.
        """
        try:
            if self.closed is None:
                self.closed = (code, reason)
                payload = struct.pack("!H", code) + reason.encode("utf-8")
                if (
                    await self._send_all_quietly(frame(payload, wsframes.OP_CLOSE))
                    and not self._frames.ended
                ):
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
        frames = self._frames
        while not frames.ended:
            data = await self._read()
            if not data:
                return
            frames.feed(data)

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
