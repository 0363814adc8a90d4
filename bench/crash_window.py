"""What kill -9 loses: edits relayed (so received) before the kill but absent after restart.

    python bench/crash_window.py [runs] [flush_ms]

A daemon subprocess; one client types as fast as the daemon relays for one second while a
second client records when each edit came back; then SIGKILL, restart, and compare. Prints,
per run, how many edits were acknowledged, how many were lost, and how long before the
kill the oldest lost one had been acknowledged (it must stay below flush_ms).
"""

from __future__ import annotations

import signal
import sys
import tempfile
import time
from pathlib import Path

import trio
from pycrdt import Text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import processes
from tests.ydoc_client import YClient


def run_once(workdir: Path, flush_ms: int) -> tuple[int, int, float]:
    port = processes.free_port()
    cfg = (
        f"host: 127.0.0.1\nport: {port}\nhttp:\n  port: 0\nauth:\n  mode: development\n"
        f"snapshots:\n  flush_ms: {flush_ms}\n"
    )
    proc = processes.spawn(workdir, cfg, port=port)
    url = f"ws://127.0.0.1:{port}/realtime/records/crash"
    acks: list[tuple[str, float]] = []

    async def go() -> float:
        async with trio.open_nursery() as n:
            w = await YClient.connect(n, url, token="w")
            r = await YClient.connect(n, url, token="r")
            await r.wait_for(lambda: len(r.binary) >= 2)
            start = trio.current_time()
            i = 0
            while trio.current_time() - start < 1.0:
                word = f"<{i}>"
                await w.edit(
                    lambda d, w_=word: d.get("t", type=Text).insert(
                        len(str(d.get("t", type=Text))), w_
                    )
                )
                await r.wait_for(lambda w_=word: r.text("t").endswith(w_))
                acks.append((word, time.monotonic()))
                i += 1
            proc.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            n.cancel_scope.cancel()
            return killed

    killed = trio.run(go)
    proc.wait()
    proc = processes.spawn(workdir, cfg, port=port)

    async def read() -> str:
        async with trio.open_nursery() as n:
            c = await YClient.connect(n, url, token="x")
            await c.wait_for(lambda: len(c.binary) >= 2)
            n.cancel_scope.cancel()
            return c.text("t")

    text = trio.run(read)
    processes.terminate(proc)
    lost = [(w, killed - t) for w, t in acks if w not in text]
    return len(acks), len(lost), max((age for _, age in lost), default=0.0)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    flush = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    for k in range(runs):
        with tempfile.TemporaryDirectory() as d:
            n, lost, age = run_once(Path(d), flush)
            print(
                f"flush_ms={flush} run={k + 1} acknowledged={n} lost={lost} "
                f"oldest_lost_age_ms={age * 1000:.1f}"
            )


if __name__ == "__main__":
    main()
