"""The one module that reaches into trio-websocket: raw writes and aborts on its socket.

trio-websocket offers only `send_message`, which frames each message through wsproto on
every connection and costs one system call per message (docs/benchmarks.md). The transport
instead writes frames built once per broadcast (protocol/wire.py) straight to the
connection's stream, under the stream lock trio-websocket itself holds while it sends (its
pings, pongs and close frame). Server frames need no mask and we negotiate no extension,
so those bytes are valid on every connection.

That uses three private attributes (`_stream`, `_stream_lock`, `_wsproto`), checked here
against the versions they were read from. On any other version `DIRECT` is False and the
transport sends through the public `send_message` instead: slower, never wrong.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import trio
import trio_websocket
from trio_websocket import ConnectionClosed, WebSocketConnection

log = logging.getLogger("civicrealtime.transport")

# trio-websocket releases whose internals this module was checked against.
SUPPORTED_VERSIONS = frozenset({"0.12.2"})
INTERNALS = ("_stream", "_stream_lock", "_wsproto")


def internals_present() -> bool:
    """Whether this trio-websocket still keeps the attributes we use, by those names."""
    names = trio_websocket._impl.WebSocketConnection.__init__.__code__.co_names
    return all(name in names for name in INTERNALS)


DIRECT = trio_websocket.__version__ in SUPPORTED_VERSIONS and internals_present()
if not DIRECT:
    log.warning(
        "transport.direct_writes_off trio_websocket=%s (checked: %s)",
        trio_websocket.__version__,
        ", ".join(sorted(SUPPORTED_VERSIONS)),
    )


class RawSocket:
    """Writes pre-framed bytes to one upgraded connection.

    `write_now` never waits (the room's flush and the writer's fast path); `write` waits
    under the stream lock (the writer, under its send deadline); `abort` drops TCP without a
    closing handshake.
    """

    __slots__ = ("_fd_source", "_lock", "_stream", "ws")

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        stream: Any = ws._stream if DIRECT else None
        self._stream = stream
        self._lock: trio.StrictFIFOLock | None = ws._stream_lock if DIRECT else None
        # Plain TCP only: a TLS stream must encrypt, which needs the awaited path.
        self._fd_source = stream.socket if isinstance(stream, trio.SocketStream) else None

    @property
    def closed(self) -> bool:
        return self.ws.closed is not None

    def write_now(self, data: bytes) -> int:
        """Bytes written without waiting: 0 if someone else is writing (or no direct path,
        or the socket buffer is full); -1 once the connection is closed or broken."""
        if self.ws.closed is not None:
            return -1
        sock = self._fd_source
        lock = self._lock
        if sock is None or lock is None or lock.locked():
            return 0
        fd = sock.fileno()
        if fd < 0:
            return -1
        try:
            return os.write(fd, data)
        except BlockingIOError:
            return 0
        except OSError:
            return -1

    @property
    def direct(self) -> bool:
        """Whether pre-framed bytes can be written (else `send_messages`)."""
        return self._lock is not None

    async def write(self, data: bytes) -> bool:
        """Write whole frames under the stream lock; False once the connection is closing."""
        ws = self.ws
        if ws.closed is not None or self._lock is None:
            return False
        async with self._lock:
            if ws.closed is not None:  # a close frame went out while we waited
                return False
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return False
        return True

    async def send_messages(self, messages: list[bytes | str]) -> bool:
        """Without the direct path: the public API, one message at a time."""
        try:
            for message in messages:
                await self.ws.send_message(message)
        except ConnectionClosed:
            return False
        return True

    async def abort(self) -> None:
        """Cut TCP: after a frame was cut off mid-write, a close frame would be read as the
        rest of it."""
        stream = self.ws._stream
        await stream.aclose()


def peer_address(ws: WebSocketConnection) -> str:
    remote = ws.remote
    address = getattr(remote, "address", remote)
    return str(address)
