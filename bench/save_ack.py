"""Latency of the "saved" acknowledgement, and what it costs the daemon in CPU per update.

    python bench/save_ack.py [--seconds 10] [--flush-ms 100] [--workloads fanout,thousand]

The daemon runs as `python -m civicrealtime` (SQLite store in a temporary data_dir,
development auth, limits raised above the load), pinned to core 0 when `taskset` exists;
the load runs here (trio, WebSocket clients on bare streams through wsproto). Each workload
runs twice: with every connection asking for control frames (so every writer gets "saved"
frames), and with none asking (the stock y-websocket behaviour), to isolate the cost of the
acknowledgement.

- fanout: 1 room, 50 connections, 10 of them writing 10 updates/s each (100 updates/s,
  fanned out to 49 others);
- thousand: 1,000 connections in 100 rooms of 10, each writing 1 update/s (1,000/s).

Latency: `server_ack_*` from the daemon's civicrealtime_save_ack_seconds histogram (arrival
in the room to the frame queued); `ack_*` from the moment a writer sends an update to the
moment it reads the first saved frame whose `updates` count covers it (client side,
loopback, this process's lag included). CPU: the daemon's user+system time over the
measured period (/proc/<pid>/stat) divided by the updates sent.
Target (docs/saved.md): p99 <= flush_ms + 50 ms. Prints one JSON object per run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
from pycrdt import Doc, Text
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Message,
    Ping,
    Pong,
    Request,
    TextMessage,
)

ROOT = Path(__file__).resolve().parent.parent
CONTROL = "civicrealtime.control.v1"
CONFIG = """\
host: 127.0.0.1
port: {port}
auth:
  mode: development
logging:
  level: warning
http:
  port: {http_port}
snapshots:
  flush_ms: {flush_ms}
  interval: 30
  max_updates: 1000
rooms:
  max_rooms: 1000
rate_limiting:
  messages_per_second: 100000
  burst: 100000
  connections_per_ip: 100000
  connections_per_user: 100000
"""
WORKLOADS: dict[str, dict[str, int]] = {
    "fanout": {"rooms": 1, "per_room": 50, "writers_per_room": 10, "rate": 10},
    "thousand": {"rooms": 100, "per_room": 10, "writers_per_room": 10, "rate": 1},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def updates_for(count: int) -> list[bytes]:
    """`count` single-character inserts of one Yjs client, encoded before the clock starts."""
    doc: Doc[Any] = Doc()
    text = doc.get("t", type=Text)
    out = []
    for i in range(count):
        before = doc.get_state()
        text += "abcdefghij"[i % 10]
        update = doc.get_update(before)
        # A y-websocket sync update frame: messageSync (0), update (2), var-length bytes.
        out.append(b"\x00\x02" + _var_uint(len(update)) + update)
    return out


def _var_uint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


class Run:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.latencies: list[float] = []
        self.sent = 0
        self.unacked_at_end = 0


async def _upgrade(port: int, target: str, subprotocols: list[str]) -> RawSocket:
    """A WebSocket client on a bare stream, through wsproto: far cheaper per frame than a
    full client, so that 1,000 connections and their fan-out do not make this process the
    bottleneck whose lag the latencies would then measure."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    conn = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(
        conn.send(Request(host="127.0.0.1", target=target, subprotocols=subprotocols))
    )
    while not any(isinstance(e, AcceptConnection) for e in conn.events()):
        conn.receive_data(await stream.receive_some(65536))
    return RawSocket(stream, conn)


class RawSocket:
    def __init__(self, stream: trio.SocketStream, conn: WSConnection) -> None:
        self.stream = stream
        self.conn = conn
        self.lock = trio.Lock()

    async def send(self, event: Message | Ping | Pong) -> None:
        async with self.lock:
            await self.stream.send_all(self.conn.send(event))

    async def texts(self, on_text: Callable[[str], None]) -> None:
        """Read until the end: text messages to `on_text`, pings answered, the rest dropped."""
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while chunk := await self.stream.receive_some(1 << 16):
                self.conn.receive_data(chunk)
                for event in self.conn.events():
                    if isinstance(event, TextMessage):
                        on_text(event.data)
                    elif isinstance(event, Ping):
                        await self.send(event.response())
                    elif isinstance(event, CloseConnection):
                        return


async def _writer(ws: RawSocket, frames: list[bytes], rate: int, run: Run) -> None:
    sent_at: list[float] = []
    acked = 0

    def on_text(text: str) -> None:
        nonlocal acked
        frame = json.loads(text)
        if frame.get("event") == "saved":
            now = time.perf_counter()
            upto = int(frame["updates"])
            run.latencies.extend(now - sent_at[i] for i in range(acked, upto))
            acked = upto

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ws.texts, on_text)
        interval = 1 / rate
        # Spread the writers' phases so that the load is steady, not in bursts.
        await trio.sleep(interval * (hash(id(ws)) % 1000) / 1000)
        deadline = trio.current_time() + run.seconds
        for frame in frames:
            if trio.current_time() >= deadline:
                break
            sent_at.append(time.perf_counter())
            await ws.send(Message(data=frame))
            run.sent += 1
            await trio.sleep(interval)
        # Wait for the last acknowledgements (well past the flush window).
        await trio.sleep(2)
        run.unacked_at_end += len(sent_at) - acked
        nursery.cancel_scope.cancel()


async def load(port: int, workload: dict[str, int], control: bool, run: Run, pid: int) -> float:
    subprotocols = [CONTROL] if control else []
    count = int(workload["rate"] * run.seconds) + 5
    async with trio.open_nursery() as nursery:
        writers = []
        for room in range(workload["rooms"]):
            target = f"/realtime/records/bench{room}"
            for i in range(workload["per_room"]):
                ws = await _upgrade(port, target, subprotocols)
                if i < workload["writers_per_room"]:
                    writers.append(ws)
                else:
                    nursery.start_soon(ws.texts, lambda _text: None)
        frames = [updates_for(count) for _ in writers]
        await trio.sleep(1)  # joins settle
        cpu0 = cpu_seconds(pid)
        async with trio.open_nursery() as writing:
            for ws, mine in zip(writers, frames, strict=True):
                writing.start_soon(_writer, ws, mine, workload["rate"], run)
        cpu = cpu_seconds(pid) - cpu0
        nursery.cancel_scope.cancel()
    return cpu


def scrape(http_port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10) as answer:
        return str(answer.read().decode())


def sample(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def ack_histogram(text: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of civicrealtime_save_ack_seconds."""
    buckets = []
    for line in text.splitlines():
        match = re.match(r'civicrealtime_save_ack_seconds_bucket\{le="([^"]+)"\} (\S+)', line)
        if match:
            buckets.append((float(match.group(1)), float(match.group(2))))
    return sorted(buckets)


def histogram_quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Prometheus's estimate: linear within the bucket holding the q-th observation (ms)."""
    if not buckets or buckets[-1][1] == 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return round(lower * 1000, 1)
            share = (rank - below) / (count - below) if count > below else 1.0
            return round((lower + (bound - lower) * share) * 1000, 1)
        lower, below = bound, count
    return None


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench(name: str, control: bool, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="saveack-") as tmp:
        config = Path(tmp) / "rt.yml"
        http_port = free_port()
        config.write_text(CONFIG.format(port=port, http_port=http_port, flush_ms=args.flush_ms))
        pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
        proc = subprocess.Popen(
            [*pin, sys.executable, "-m", "civicrealtime", "--config", str(config)],
            cwd=tmp,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 15
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("daemon did not start") from None
                    time.sleep(0.05)
            run = Run(args.seconds)
            cpu = trio.run(load, port, WORKLOADS[name], control, run, proc.pid)
            metrics = scrape(http_port)
            server = ack_histogram(metrics)
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    ms = [v * 1000 for v in run.latencies]
    server_ms = {q: histogram_quantile(server, q) for q in (0.5, 0.99)}
    return {
        "workload": name,
        "control_frames": control,
        "flush_ms": args.flush_ms,
        "updates": run.sent,
        "acked": len(ms),
        "unacked_at_end": run.unacked_at_end if control else None,
        # The daemon's own histogram (arrival to ack queued), unaffected by this client's lag.
        "server_ack_p50_ms": server_ms[0.5],
        "server_ack_p99_ms": server_ms[0.99],
        # As this client sees it (send to frame read): includes its own scheduling lag.
        "ack_p50_ms": round(percentile(ms, 0.5) or 0, 1) if ms else None,
        "ack_p99_ms": round(percentile(ms, 0.99) or 0, 1) if ms else None,
        "ack_max_ms": round(max(ms), 1) if ms else None,
        "cpu_us_per_update": round(cpu / max(run.sent, 1) * 1e6, 1),
        # What the flush itself took (group commit: one append, one fsync, per flush).
        "log_appends": int(sample(metrics, 'civicrealtime_store_write_seconds_count{kind="log"}')),
        "log_append_mean_ms": round(
            1000
            * sample(metrics, 'civicrealtime_store_write_seconds_sum{kind="log"}')
            / max(1.0, sample(metrics, 'civicrealtime_store_write_seconds_count{kind="log"}')),
            1,
        ),
        "loop_lag_max_ms": round(
            1000 * sample(metrics, "civicrealtime_event_loop_lag_max_seconds"), 1
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--flush-ms", type=int, default=100)
    parser.add_argument("--workloads", default="fanout,thousand")
    args = parser.parse_args()
    for name in args.workloads.split(","):
        for control in (True, False):
            print(json.dumps(bench(name, control, args)), flush=True)


if __name__ == "__main__":
    main()
