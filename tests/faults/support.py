"""Helpers shared by the fault tests: log capture, raw handshakes, task and memory counts."""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import trio
import trio.lowlevel
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request
from wsproto.utilities import RemoteProtocolError


class Tracebacks(logging.Handler):
    """Every log record at ERROR or above, or carrying a traceback, from any logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(record)

    def lines(self) -> list[str]:
        return [f"{r.name} {r.levelname} {r.getMessage()}" for r in self.records]


@contextmanager
def catch_tracebacks() -> Iterator[Tracebacks]:
    handler = Tracebacks()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


async def raw_upgrade(port: int, target: str, *, wait_for_101: bool = True) -> trio.SocketStream:
    """A TCP connection that sends the WebSocket upgrade (and waits for the 101, if asked)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    client = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(client.send(Request(host="127.0.0.1", target=target)))
    if wait_for_101:
        with trio.fail_after(5):
            while not any(isinstance(e, AcceptConnection) for e in client.events()):
                client.receive_data(await stream.receive_some(65536))
    return stream


class RawClient:
    """A WebSocket client on its own socket, that reads only when told to.

    `rcvbuf` shrinks the socket's receive buffer (set before connecting), so that a client
    that does not read backs the server up after a few kilobytes rather than megabytes.
    """

    def __init__(self, stream: trio.SocketStream, ws: WSConnection) -> None:
        self.stream = stream
        self.ws = ws

    @classmethod
    async def connect(cls, port: int, target: str, *, rcvbuf: int | None = None) -> RawClient:
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        await sock.connect(("127.0.0.1", port))
        stream = trio.SocketStream(sock)
        ws = WSConnection(ConnectionType.CLIENT)
        await stream.send_all(ws.send(Request(host="127.0.0.1", target=target)))
        with trio.fail_after(5):
            while not any(isinstance(e, AcceptConnection) for e in ws.events()):
                ws.receive_data(await stream.receive_some(65536))
        return cls(stream, ws)

    async def read_until_closed(self, within: float = 10) -> list[object]:
        """Every event the server sends from now until its close frame or end of stream."""
        events: list[object] = []
        with trio.move_on_after(within):
            while True:
                try:
                    data = await self.stream.receive_some(65536)
                except trio.BrokenResourceError:
                    data = b""
                self.ws.receive_data(data or None)
                try:
                    events += list(self.ws.events())
                except RemoteProtocolError as exc:
                    events.append(exc)
                    break
                if not data or any(isinstance(e, CloseConnection) for e in events):
                    break
        await self.stream.aclose()
        return events


def reset_on_close(stream: trio.SocketStream) -> None:
    """SO_LINGER 0: closing the stream sends a TCP reset instead of a FIN."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def count_tasks() -> int:
    """Every live trio task of the run (timers and actors included)."""

    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(child) for n in task.child_nurseries for child in n.child_tasks)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    return walk(root)


def rss_kib(pid: int | str = "self") -> int:
    """Resident set size, KiB, from /proc/<pid>/status (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")
