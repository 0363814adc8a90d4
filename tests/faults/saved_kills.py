"""kill -9 at a random moment: every update acknowledged as saved must survive it.

One round: a daemon (`python -m civicrealtime`, a real process) serves a writer that asks
for control frames and sends a stream of updates, each adding one key to a map; the writer
records the highest `updates` count of the "saved" frames it gets. At a random moment the
daemon is killed with SIGKILL. A new daemon on the same store then serves a reader, which
checks: every acknowledged key is there (lost after ack: must be 0), and counts the keys
sent but not acknowledged that are missing (lost before ack: allowed, the flush window).
The same daemon then serves the next round, so each round costs one start.

Used by tests/faults/test_saved_kill.py (a few rounds per store, in CI) and by
`nox -s faults` (CIVICREALTIME_SAVED_KILLS rounds per store; 70 x 3 stores = 210 kills).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import psycopg
import trio
from pycrdt import Doc, Map
from trio_websocket import ConnectionClosed

from .. import processes
from ..ydoc_client import YClient

PG_URL = os.environ.get("CIVICREALTIME_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
CONFIG = """\
host: 127.0.0.1
port: {port}
http:
  port: 0
auth:
  mode: development
logging:
  level: warning
snapshots:
  flush_ms: {flush_ms}
  interval: 0
  max_updates: 25
{store}
"""


@attrs.define
class Figures:
    backend: str
    kills: int = 0
    sent: int = 0
    acked: int = 0
    lost_after_ack: int = 0
    lost_before_ack: int = 0
    failures: list[str] = attrs.Factory(list)

    def line(self) -> str:
        return (
            f"saved-kills backend={self.backend} kills={self.kills} sent={self.sent} "
            f"acked={self.acked} lost_after_ack={self.lost_after_ack} "
            f"lost_before_ack={self.lost_before_ack}"
        )


@contextmanager
def store_settings(backend: str, workdir: Path) -> Iterator[str]:
    """The `snapshots:` keys of one store (a fresh PostgreSQL database, dropped after)."""
    if backend == "sqlite":
        yield f"  database_url: {workdir / 'realtime.sqlite3'}"
    elif backend == "files":
        yield f"  storage: filesystem\n  directory: {workdir / 'files'}"
    elif backend == "postgres":
        name = "saved_kills_" + uuid.uuid4().hex[:12]
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        try:
            yield f"  database_url: {PG_URL.rsplit('/', 1)[0]}/{name}"
        finally:
            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    else:
        raise ValueError(f"unknown backend {backend!r}")


async def _write_until_killed(
    url: str, proc: subprocess.Popen[str], rng: random.Random, prefix: str
) -> tuple[int, int]:
    """Send updates until the daemon dies at a random moment; (sent, acknowledged)."""
    sent = 0
    kill_after = rng.uniform(0.05, 0.6)
    async with trio.open_nursery() as nursery:
        writer = await YClient.connect(nursery, url, token="writer", doc=Doc())
        await writer.wait_for(lambda: len(writer.binary) >= 2)

        async def kill() -> None:
            await trio.sleep(kill_after)
            proc.send_signal(signal.SIGKILL)

        nursery.start_soon(kill)
        keys = writer.doc.get("m", type=Map)
        with trio.move_on_after(10):
            while writer.closed is None:
                keys[f"{prefix}{sent}"] = sent
                try:
                    await writer.flush()
                except (ConnectionClosed, trio.BrokenResourceError, OSError):
                    break  # the daemon died mid-send: that is the test
                sent += 1
                await trio.sleep(rng.uniform(0, 0.004))
        nursery.cancel_scope.cancel()
    acked = max((frame["updates"] for frame in writer.events("saved")), default=0)
    return sent, acked


async def _read(url: str, prefix: str) -> set[int]:
    async with trio.open_nursery() as nursery:
        reader = await YClient.connect(nursery, url, token="reader", read=True)
        await reader.wait_for(lambda: len(reader.binary) >= 2, within=30)
        nursery.cancel_scope.cancel()
    found: dict[str, Any] = reader.doc.get("m", type=Map).to_py() or {}
    return {int(key[len(prefix) :]) for key in found if key.startswith(prefix)}


def run(backend: str, kills: int, workdir: Path, *, seed: int, flush_ms: int = 100) -> Figures:
    rng = random.Random(seed)
    figures = Figures(backend)
    port = processes.free_port()
    with store_settings(backend, workdir) as store:
        config = CONFIG.format(port=port, flush_ms=flush_ms, store=store)
        proc = processes.spawn(workdir, config, port=port)
        try:
            for round_ in range(kills):
                room = f"kill{round_}"
                url = f"ws://127.0.0.1:{port}/realtime/records/{room}"
                prefix = f"k{round_}-"
                sent, acked = trio.run(_write_until_killed, url, proc, rng, prefix)
                proc.wait(timeout=10)
                assert proc.returncode == -signal.SIGKILL, proc.returncode
                figures.kills += 1
                proc = processes.spawn(workdir, config, port=port)
                present = trio.run(_read, url, prefix)
                lost_after = [i for i in range(acked) if i not in present]
                figures.sent += sent
                figures.acked += acked
                figures.lost_after_ack += len(lost_after)
                figures.lost_before_ack += sum(1 for i in range(acked, sent) if i not in present)
                if lost_after:
                    figures.failures.append(
                        f"round {round_}: acked {acked} of {sent}, lost {lost_after[:10]}"
                    )
            processes.terminate(proc)
        finally:
            processes.stop(proc)
    return figures
