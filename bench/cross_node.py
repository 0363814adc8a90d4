"""Cross-node latency: a client on node A edits, a client on node B sees it.

    python bench/cross_node.py [--updates 500] [--rate 50] [--seconds 10] [--json PATH]

Starts two daemons (`python -m civicrealtime`) with clustering on, sharing the local Redis
(redis://127.0.0.1:6379, a key prefix of their own, deleted at the end) and the local
PostgreSQL (postgresql://postgres@127.0.0.1:5432/test, a schema of its own, dropped at the
end), then measures, with two small y-websocket clients (pycrdt documents):

1. ping-pong: the writer inserts one marker, waits until the reader's document has it,
   then the next (`--updates` times): latency without queueing;
2. steady rate: `--rate` updates per second for `--seconds`, each stamped, latency of each;

each once with both clients on node A (same node, the baseline) and once with the reader
on node B (cross node). It also reports the daemons' CPU time per delivered update (from
/proc, less their idle CPU over as long), i.e. the cost of one delivery on both nodes
together (the reader's node does nothing in the same-node run). Loopback only; every phase
has a deadline; the daemons are stopped at the end whatever happens.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import trio
import yaml
from psycopg import sql
from pycrdt import Doc, Text, TransactionEvent
from trio_websocket import WebSocketConnection, open_websocket_url

from civicrealtime.protocol import messages

REDIS = ("127.0.0.1", 6379)
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PHASE_TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis(*args: str) -> bytes:
    parts = [a.encode() for a in args]
    request = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    with socket.create_connection(REDIS, timeout=5) as sock:
        sock.sendall(request)
        sock.settimeout(0.3)
        chunks = []
        with contextlib.suppress(TimeoutError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    return b"".join(chunks)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


@contextlib.contextmanager
def cluster(workdir: Path) -> Iterator[list[tuple[int, subprocess.Popen[bytes]]]]:
    prefix = f"crt-bench-{uuid.uuid4().hex[:8]}"
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    pg_url = f"{PG_URL}?options={quote(f'-csearch_path={schema}')}"
    nodes: list[tuple[int, subprocess.Popen[bytes]]] = []
    try:
        for name in ("a", "b"):
            port = free_port()
            config = {
                "host": "127.0.0.1",
                "port": port,
                "auth": {"mode": "development"},
                "http": {"port": free_port()},
                "demo": {"enabled": False},
                "logging": {"level": "warning"},
                "rate_limiting": {"messages_per_second": 10000, "burst": 10000},
                "snapshots": {"database_url": pg_url},
                "cluster": {"enabled": True, "node_id": name, "key_prefix": prefix},
            }
            path = workdir / f"{name}.yml"
            path.write_text(yaml.safe_dump(config))
            log = (workdir / f"{name}.log").open("wb")
            proc = subprocess.Popen(
                [sys.executable, "-m", "civicrealtime", "--config", str(path)],
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            nodes.append((port, proc))
            deadline = time.monotonic() + 20
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"node {name} did not start; see {workdir}/{name}.log")
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                    break
                time.sleep(0.05)
        yield nodes
    finally:
        for _, proc in nodes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in nodes:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        keys = [k for k in redis("KEYS", f"{prefix}:*").split(b"\r\n") if k and k[:1] not in b"*$"]
        if keys:
            redis("DEL", *(k.decode() for k in keys))
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


class Peer:
    """A y-websocket client: a pycrdt document over one connection."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.doc: Doc = Doc()
        self.text = self.doc.get("text", type=Text)
        self._outgoing: list[bytes] = []
        self._sub = self.doc.observe(self._local)
        self._applying = False
        self.seen: dict[str, float] = {}  # marker -> arrival (perf_counter)
        self.changed = trio.Event()

    def _local(self, event: TransactionEvent) -> None:
        if not self._applying:
            self._outgoing.append(event.update)

    async def send_marker(self, marker: str) -> None:
        self.text.insert(len(self.text), marker)
        pending, self._outgoing = self._outgoing, []
        for update in pending:
            await self.ws.send_message(messages.encode_sync_update(update))

    async def read(self, markers: set[str]) -> None:
        while True:
            frame = await self.ws.get_message()
            if isinstance(frame, str):
                continue
            message = messages.decode(frame)
            if isinstance(message, messages.SyncStep2 | messages.SyncUpdate):
                self._applying = True
                try:
                    self.doc.apply_update(message.update)
                finally:
                    self._applying = False
                now = time.perf_counter()
                text = str(self.text)
                for marker in [m for m in markers if m in text]:
                    self.seen[marker] = now
                    markers.discard(marker)
                self.changed.set()
                self.changed = trio.Event()


def summary(latencies: list[float]) -> dict[str, float]:
    ms = sorted(x * 1000 for x in latencies)
    q = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else ms * 99
    return {
        "n": len(ms),
        "p50_ms": round(q[49], 2),
        "p99_ms": round(q[98], 2),
        "max_ms": round(ms[-1], 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


async def measure(
    writer_url: str, reader_url: str, room: str, args: argparse.Namespace, pids: list[int]
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    async with (
        open_websocket_url(f"{writer_url}/records/{room}", subprotocols=["auth.writer"]) as w_ws,
        open_websocket_url(f"{reader_url}/records/{room}", subprotocols=["auth.reader"]) as r_ws,
        trio.open_nursery() as nursery,
    ):
        writer, reader = Peer(w_ws), Peer(r_ws)
        pending: set[str] = set()
        nursery.start_soon(reader.read, pending)
        nursery.start_soon(_drain, w_ws)
        await trio.sleep(0.5)  # both synced and the room open on both nodes
        with trio.fail_after(PHASE_TIMEOUT):
            latencies = []
            for i in range(args.updates):
                marker = f"<p{i}>"
                pending.add(marker)
                sent = time.perf_counter()
                await writer.send_marker(marker)
                while marker not in reader.seen:
                    await reader.changed.wait()
                latencies.append(reader.seen[marker] - sent)
            results["ping_pong"] = summary(latencies)

            # The daemons' idle CPU (heartbeats, timers) over as long, subtracted below.
            idle_before = sum(cpu_seconds(pid) for pid in pids)
            await trio.sleep(args.seconds)
            idle = sum(cpu_seconds(pid) for pid in pids) - idle_before

            sent_at: dict[str, float] = {}
            cpu_before = sum(cpu_seconds(pid) for pid in pids)
            interval = 1 / args.rate
            start = time.perf_counter()
            count = int(args.rate * args.seconds)
            for i in range(count):
                await trio.sleep_until(_trio_deadline(start + i * interval))
                marker = f"<r{i}>"
                pending.add(marker)
                sent_at[marker] = time.perf_counter()
                await writer.send_marker(marker)
            while len([m for m in sent_at if m in reader.seen]) < count:
                await reader.changed.wait()
            cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before - idle
            results["steady"] = {
                **summary([reader.seen[m] - t for m, t in sent_at.items()]),
                "rate": args.rate,
                "cpu_ms_per_update_all_nodes": round(cpu * 1000 / count, 3),
            }
        nursery.cancel_scope.cancel()
    return results


def _trio_deadline(perf_time: float) -> float:
    return trio.current_time() + max(0.0, perf_time - time.perf_counter())


async def _drain(ws: WebSocketConnection) -> None:
    while True:
        await ws.get_message()


async def main(
    args: argparse.Namespace, nodes: list[tuple[int, subprocess.Popen[bytes]]]
) -> dict[str, Any]:
    (port_a, proc_a), (port_b, proc_b) = nodes
    url_a = f"ws://127.0.0.1:{port_a}/realtime"
    url_b = f"ws://127.0.0.1:{port_b}/realtime"
    pids = [proc_a.pid, proc_b.pid]
    return {
        "same_node": await measure(url_a, url_a, f"same-{uuid.uuid4().hex[:6]}", args, pids),
        "cross_node": await measure(url_a, url_b, f"cross-{uuid.uuid4().hex[:6]}", args, pids),
    }


def render(results: dict[str, Any]) -> str:
    lines = [
        "| path | phase | n | p50 ms | p99 ms | max ms | CPU ms per update (both nodes) |",
        "|---|---|---|---|---|---|---|",
    ]
    for path in ("same_node", "cross_node"):
        for phase in ("ping_pong", "steady"):
            r = results[path][phase]
            label = "ping-pong" if phase == "ping_pong" else f"{r['rate']}/s steady"
            cpu = r.get("cpu_ms_per_update_all_nodes", "")
            lines.append(
                f"| {path.replace('_', ' ')} | {label} | {r['n']} | {r['p50_ms']} | "
                f"{r['p99_ms']} | {r['max_ms']} | {cpu} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=500, help="ping-pong round trips")
    parser.add_argument("--rate", type=float, default=50.0, help="steady updates per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="steady phase duration")
    parser.add_argument("--json", type=Path, help="also write the results here")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crt-cross-node-") as tmp, cluster(Path(tmp)) as nodes:
        outcome = trio.run(main, arguments, nodes)
    print(render(outcome))
    if arguments.json:
        arguments.json.write_text(json.dumps(outcome, indent=2))
