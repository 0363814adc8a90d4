"""What the convergence fuzzer drives: a daemon subprocess, a trio loop, and Yjs clients.

- `DaemonProcess` runs `fuzz/daemon.py` (the CLI's serve path) in a scratch directory:
  start, SIGTERM, SIGKILL, restart on the same data, and a scan of its log for tracebacks.
- `TrioLoop` runs trio in a background thread. Hypothesis rules are synchronous; each rule
  hands one coroutine to the loop (`loop.run`) under a deadline.
- `FuzzClient` is a Yjs client: its document is a `Y.Doc` in the Node oracle
  (`fuzz/oracle.py`, `tests/js/yjs_peer.mjs`), which reads every frame the daemon sends it
  with y-protocols and makes its edits with Yjs; the socket is here, so that the fuzzer can
  stop reading, shrink the receive buffer or reset the connection. It speaks y-websocket:
  on connect it sends step 1, answers the server's step 1 with y-protocols' step 2 (its
  offline edits), and sends every local transaction as an update. After each edit it sends
  a step 1 as a probe: the server answers probes in order, after applying everything the
  client sent before, so the answer is the daemon's acknowledgement of those edits
  (`EditRecord.acked_at`).
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection, wrap_client_stream

from civicrealtime.protocol import messages

from .oracle import OracleError, YjsOracle, YjsPeer, frame_report

DAEMON = Path(__file__).with_name("daemon.py")
# A small receive buffer: a client that stops reading backs the server up after a few
# kilobytes, so the slow-reader rule reaches the daemon's 1013 path quickly.
CLIENT_RCVBUF = 4096
# A frame that carries a 1013 close frame inside it was cut short by the daemon, and the
# close frame written into it (fixed; tests/faults/test_slow_reader.py). The fuzzer's own
# data never contains these bytes, so such a frame is recognised and never applied.
TORN_FRAME_MARKS = (b'{"code":"SLOW_CONSUMER"', b'{"code":"SEND_TIMEOUT"')
_LISTENING = re.compile(r"server\.listening host=\S+ port=(\d+)")
_HTTP_LISTENING = re.compile(r"http\.listening host=\S+ port=(\d+)")


# -- the daemon ------------------------------------------------------------------------------


class DaemonProcess:
    """The daemon as a subprocess, with its data and logs in `workdir`."""

    def __init__(self, workdir: Path, *, flush_ms: int, busy_timeout: float = 0.2) -> None:
        self.workdir = workdir
        self.flush_ms = flush_ms
        self.busy_timeout = busy_timeout
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.data_dir / "realtime.sqlite3"
        self.config_path = workdir / "rt.yml"
        self.config_path.write_text(self._config())
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.http_port = 0
        self.generation = 0
        self._spawned_at = 0.0
        self.startup_seconds: list[float] = []

    def _config(self) -> str:
        return f"""\
host: 127.0.0.1
port: 0
data_dir: {json.dumps(str(self.data_dir))}
shutdown_timeout: 3
auth: {{mode: development}}
http: {{host: 127.0.0.1, port: 0}}
demo: {{enabled: false}}
logging: {{level: info}}
rooms: {{cleanup_timeout: 0.3}}
snapshots: {{flush_ms: {self.flush_ms}, max_updates: 4, interval: 0, keep: 2}}
connection: {{outbound_queue: 8, send_timeout: 0.5, close_timeout: 0.5}}
rate_limiting:
  connections_per_ip: 1000
  connections_per_user: 1000
  messages_per_second: 10000
  burst: 10000
"""

    def log_path(self, generation: int) -> Path:
        return self.workdir / f"daemon-{generation}.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, within: float = 20.0) -> None:
        self.spawn()
        self.wait_listening(within)

    def spawn(self) -> None:
        """Start the process; `wait_listening` waits until it serves."""
        assert not self.running
        self.generation += 1
        self._spawned_at = time.monotonic()
        with self.log_path(self.generation).open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    str(DAEMON),
                    str(self.config_path),
                    "--busy-timeout",
                    str(self.busy_timeout),
                ],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_listening(self, within: float = 20.0) -> None:
        assert self.proc is not None
        log_path = self.log_path(self.generation)
        deadline = time.monotonic() + within
        while True:
            text = log_path.read_text(errors="replace")
            ws, http = _LISTENING.search(text), _HTTP_LISTENING.search(text)
            if ws and http:
                self.port, self.http_port = int(ws.group(1)), int(http.group(1))
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"the daemon exited at start:\n{text[-3000:]}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"the daemon did not listen within {within} s:\n{text}")
            time.sleep(0.01)
        self.startup_seconds.append(time.monotonic() - self._spawned_at)

    def terminate(self, within: float = 15.0) -> int:
        """SIGTERM (graceful shutdown) and wait; returns the exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=within)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> float:
        """SIGKILL and wait; returns the monotonic time just before the signal."""
        assert self.proc is not None
        at = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=15)
        return at

    def url(self, room: str) -> str:
        return f"ws://127.0.0.1:{self.port}/realtime/records/{room}"

    def metrics(self) -> dict[str, float]:
        answer = httpx.get(f"http://127.0.0.1:{self.http_port}/metrics", timeout=5)
        values: dict[str, float] = {}
        for line in answer.text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    values[name] = float(value)
        return values

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = httpx.get(
            f"http://127.0.0.1:{self.http_port}/health", timeout=5
        ).json()
        return result

    def wait_durable(self, within: float = 15.0) -> None:
        """Poll until nothing is buffered for the store (every update received is written)."""
        deadline = time.monotonic() + within
        while self.metrics().get("civicrealtime_store_pending_bytes", 0) > 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"updates still unwritten after {within} s")
            time.sleep(0.02)

    def problems(self) -> list[str]:
        """Tracebacks and crash lines in every log so far (none are expected)."""
        found = []
        for generation in range(1, self.generation + 1):
            path = self.log_path(generation)
            if not path.exists():
                continue
            for line in path.read_text(errors="replace").splitlines():
                if "Traceback" in line or "room.crashed" in line or "connection.failed" in line:
                    found.append(f"[daemon-{generation}] {line}")
        return found


class ExclusiveLock:
    """Another process's write lock on the SQLite file: the daemon's writes get SQLITE_BUSY."""

    def __init__(self, path: Path) -> None:
        import sqlite3  # noqa: PLC0415 - only this helper needs it

        self._db = sqlite3.connect(path, timeout=5, isolation_level=None)
        self._db.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        self._db.execute("ROLLBACK")
        self._db.close()


# -- the trio loop -----------------------------------------------------------------------------


class TrioLoop:
    """trio in a background thread; `run(afn, ...)` runs a coroutine there, under a deadline."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self.nursery: trio.Nursery | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="fuzz-trio", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the trio thread did not start")

    def _main(self) -> None:
        async def serve() -> None:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                self._token = trio.lowlevel.current_trio_token()
                self._ready.set()
                await trio.sleep_forever()

        try:
            trio.run(serve)
        except BaseException as exc:  # noqa: BLE001 - reported by `close`
            self._error = exc
            self._ready.set()

    def run(self, afn: Callable[..., Awaitable[Any]], *args: Any, within: float = 60.0) -> Any:
        async def bounded() -> Any:
            with trio.fail_after(within):
                return await afn(*args)

        return trio.from_thread.run(bounded, trio_token=self._token)

    def close(self) -> None:
        if self._token is not None and self.nursery is not None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self.nursery.cancel_scope.cancel, trio_token=self._token)
        self._thread.join(10)
        if self._error is not None and not isinstance(self._error, trio.Cancelled):
            raise self._error


# -- a client --------------------------------------------------------------------------------

_TRANSIENT = (OSError, HandshakeError, ConnectionClosed, trio.BrokenResourceError)


def transient(exc: BaseException) -> bool:
    """A failure to connect that a retry may cure (also inside trio's exception groups)."""
    if isinstance(exc, BaseExceptionGroup):
        return all(transient(inner) for inner in exc.exceptions)
    return isinstance(exc, _TRANSIENT)


class UnusableFrame(Exception):
    """A frame from the daemon that the client's Yjs document could not read or apply."""


@attrs.define(eq=False)
class EditRecord:
    """One local transaction of one client, and when the daemon acknowledged it."""

    client: str
    room: str
    update: bytes
    made_at: float
    acked_at: float | None = None
    description: str = ""


class FuzzClient:
    """A y-websocket client around one Y.Doc (in the oracle) that lives across its
    connections."""

    def __init__(
        self, loop: TrioLoop, oracle: YjsOracle, name: str, room: str, client_id: int
    ) -> None:
        self.loop = loop
        self.name = name
        self.room = room
        self.peer: YjsPeer = oracle.peer(name, client_id)
        self.client_id = client_id
        self.ws: WebSocketConnection | None = None
        self.wants_online = False
        self.synced = False
        self._uploaded = False
        self.close_codes: list[int | None] = []
        self.edits: list[EditRecord] = []
        self.errors: list[str] = []  # frames from the daemon that could not be used
        self.torn_frames = 0
        self.unacked: list[EditRecord] = []  # not acknowledged on any connection yet
        self._probes: deque[list[EditRecord]] = deque()
        self._unsolicited_step2 = True
        self._scope: trio.CancelScope | None = None
        self._stream: trio.SocketStream | None = None
        self.reading = trio.Event()
        self.reading.set()
        self.changed = trio.Event()

    def __repr__(self) -> str:
        return f"<{self.name} room={self.room} online={self.online}>"

    @property
    def online(self) -> bool:
        return self.ws is not None

    # -- connection --------------------------------------------------------------------------

    async def connect(self, url: str, within: float = 10.0) -> None:
        """Open a connection and resync; retried until `within` (the daemon may be starting)."""
        self.wants_online = True
        with trio.fail_after(within):
            while True:
                try:
                    await self._open(url)
                except Exception as exc:
                    if not transient(exc):
                        raise
                    await trio.sleep(0.05)
                    continue
                if await self._wait_synced():
                    return
                await trio.sleep(0.05)

    async def _open(self, url: str) -> None:
        assert self.ws is None and self.loop.nursery is not None
        host_port, _, resource = url.removeprefix("ws://").partition("/")
        host, _, port = host_port.partition(":")
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RCVBUF)
        try:
            await sock.connect((host, int(port)))
        except BaseException:
            sock.close()
            raise
        stream = trio.SocketStream(sock)
        self.synced = False
        self._uploaded = False
        self._unsolicited_step2 = True
        # Everything not acknowledged goes again with this connection's first step 2.
        for batch in self._probes:
            self.unacked.extend(batch)
        self._probes.clear()
        await self.loop.nursery.start(self._connection, stream, host, "/" + resource)

    async def _connection(
        self,
        stream: trio.SocketStream,
        host: str,
        resource: str,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        with trio.CancelScope() as scope:
            self._scope, self._stream = scope, stream
            try:
                async with trio.open_nursery() as nursery:
                    try:
                        ws = await wrap_client_stream(nursery, stream, host, resource)
                    except BaseException:
                        await stream.aclose()
                        raise
                    self.ws = ws
                    task_status.started()
                    # y-websocket's first message: our state vector (its answer is a probe
                    # acknowledging nothing).
                    self._probes.append([])
                    with contextlib.suppress(ConnectionClosed):
                        await ws.send_message(self.peer.step1())
                    if await self._read(ws):
                        # The library's reader task finishes the closing handshake: give
                        # it a moment rather than cancelling it (that would stall `aclose`).
                        nursery.cancel_scope.deadline = trio.current_time() + 2
                    else:
                        self._abort()
            finally:
                stream.socket.close()
                self._gone()

    def _gone(self) -> None:
        if self.ws is not None:
            reason = self.ws.closed
            self.close_codes.append(reason.code if reason is not None else None)
        self.ws = None
        self.synced = False
        self._uploaded = False
        self._scope = None
        self._wake()

    async def _read(self, ws: WebSocketConnection) -> bool:
        """Until the connection closes (True) or sends something unusable (False)."""
        try:
            while True:
                await self.reading.wait()
                frame = await ws.get_message()
                if isinstance(frame, bytes) and any(m in frame for m in TORN_FRAME_MARKS):
                    self.torn_frames += 1
                    self.errors.append(
                        f"{self.name}: a torn frame (a close frame inside a data frame): "
                        f"{len(frame)} bytes, ...{frame[-40:]!r}"
                    )
                    return False
                try:
                    await self._handle(ws, frame)
                except ConnectionClosed:
                    raise
                except Exception as exc:  # noqa: BLE001 - any failure here is a finding
                    data = frame if isinstance(frame, bytes) else frame.encode()
                    self.errors.append(
                        f"{self.name}: unusable frame from the daemon ({exc}): {frame_report(data)}"
                    )
                    return False
        except ConnectionClosed:
            return True

    def _abort(self) -> None:
        """Drop the connection at once, with a TCP reset (no closing handshake)."""
        if self._stream is not None:
            with contextlib.suppress(OSError):
                # SO_LINGER 0: close with a reset, as a vanished client would.
                self._stream.socket.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
        if self._scope is not None:
            self._scope.cancel()

    async def _handle(self, ws: WebSocketConnection, frame: bytes | str) -> None:
        if isinstance(frame, str):
            return  # control frames (connection.ack, notices, errors) are not state
        try:
            received = self.peer.receive(frame)
        except OracleError as exc:
            raise UnusableFrame(f"Yjs could not apply it: {exc}") from None
        kind, reply = received.kind, received.reply
        if received.updates:
            # Yjs changed the document by itself (formatting made redundant by concurrent
            # marks is deleted): y-websocket sends that like an edit.
            await self._send(self._records(received.updates, "Yjs's own cleanup"))
        if kind == "step1":
            # The server's state vector: y-protocols' answer is what it lacks (edits made
            # offline); then a probe whose answer acknowledges them.
            assert reply is not None
            await ws.send_message(reply)
            pending, self.unacked = self.unacked, []
            self._probes.append(pending)
            self._uploaded = True
            await ws.send_message(self.peer.step1())
        elif kind == "step2":
            if self._unsolicited_step2:
                self._unsolicited_step2 = False
            elif self._probes:
                now = time.monotonic()
                for record in self._probes.popleft():
                    if record.acked_at is None:
                        record.acked_at = now
                if not self._probes:
                    self.synced = True
        self._wake()

    def state_vector(self) -> dict[int, int]:
        return self.peer.state_vector

    async def _wait_synced(self, within: float = 5.0) -> bool:
        """Until the connection's first probes are answered; False if it closed meanwhile."""
        with trio.move_on_after(within):
            while self.ws is not None and not self.synced:
                await self.changed.wait()
        return self.ws is not None and self.synced

    async def disconnect(self, *, abrupt: bool = False) -> None:
        """Go offline: a closing handshake, or the TCP connection cut without one."""
        self.wants_online = False
        ws, scope = self.ws, self._scope
        if ws is None:
            return
        if abrupt:
            self._abort()
        else:
            with trio.move_on_after(2):
                await ws.aclose()
            if scope is not None:
                scope.cancel()
        with trio.move_on_after(5):
            while self.ws is not None:
                await self.changed.wait()

    # -- editing -----------------------------------------------------------------------------

    async def edit(self, op: tuple[Any, ...]) -> list[EditRecord]:
        """Apply one edit locally; if online, send it and a probe. Returns its records."""
        records = self._records(self.peer.edit(op), repr(op))
        await self._send(records)
        return records

    def _records(self, updates: list[bytes], description: str) -> list[EditRecord]:
        records = [
            EditRecord(self.name, self.room, update, time.monotonic(), description=description)
            for update in updates
        ]
        self.edits.extend(records)
        return records

    async def _send(self, records: list[EditRecord]) -> None:
        ws = self.ws
        if ws is None or not self._uploaded:
            self.unacked.extend(records)
            return
        try:
            for record in records:
                await ws.send_message(messages.encode_sync_update(record.update))
            self._probes.append(records)
            await ws.send_message(self.peer.step1())
        except ConnectionClosed:
            # The connection is going: the next one's first step 2 carries these edits.
            if not self._probes or self._probes[-1] is not records:
                self.unacked.extend(records)

    def pause_reading(self) -> None:
        if self.reading.is_set():
            self.reading = trio.Event()

    def resume_reading(self) -> None:
        self.reading.set()

    def _wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def wait_for(self, predicate: Callable[[], bool], within: float) -> bool:
        with trio.move_on_after(within):
            while not predicate():
                await self.changed.wait()
            return True
        return False


async def fetch_state(url: str, within: float = 10.0) -> bytes:
    """The server's whole document for a room, as a fresh joiner gets it (never uploads)."""
    with trio.fail_after(within):
        while True:
            try:
                async with trio.open_nursery() as nursery:
                    stream = await trio.open_tcp_stream(*_host_port(url))
                    ws = await wrap_client_stream(nursery, stream, *_host_resource(url))
                    try:
                        while True:
                            frame = await ws.get_message()
                            if isinstance(frame, bytes):
                                message = messages.decode(frame)
                                if isinstance(message, messages.SyncStep2):
                                    return message.update
                    finally:
                        with trio.move_on_after(1):
                            await ws.aclose()
                        nursery.cancel_scope.cancel()
            except Exception as exc:
                if not transient(exc):
                    raise
                await trio.sleep(0.05)


def _host_port(url: str) -> tuple[str, int]:
    host, _, port = url.removeprefix("ws://").partition("/")[0].partition(":")
    return host, int(port)


def _host_resource(url: str) -> tuple[str, str]:
    host_port, _, resource = url.removeprefix("ws://").partition("/")
    return host_port.partition(":")[0], "/" + resource


def rss_kib(pid: int | str = "self") -> int:
    """Resident set size of a process, in KiB, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


__all__ = [
    "DaemonProcess",
    "EditRecord",
    "ExclusiveLock",
    "FuzzClient",
    "TrioLoop",
    "fetch_state",
    "rss_kib",
]
