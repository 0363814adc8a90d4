"""The daemon the convergence fuzzer runs as a subprocess, so that SIGKILL is a real crash.

It is `python -m civicrealtime`'s serve path (the same `RealtimeService`, SQLite store,
signal handling), with one difference: the SQLite store waits `--busy-timeout` seconds
(default 0.2) for another process's lock instead of 5, so that the fuzzer holding
`BEGIN EXCLUSIVE` on the database makes writes really fail (`StoreBusy`), quickly, and
recover when it lets go. Usage: `python fuzz/daemon.py CONFIG [--busy-timeout S]`.
"""

from __future__ import annotations

import argparse
import signal
import sys

import trio

from civicrealtime.app import RealtimeService
from civicrealtime.config import load
from civicrealtime.logs import configure
from civicrealtime.persistence import SqliteStore


async def _serve(service: RealtimeService) -> None:
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            await nursery.start(service.run)
            async for _ in signals:
                service.shutdown()
                break
        await service.stopped.wait()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--busy-timeout", type=float, default=0.2)
    args = parser.parse_args()
    config = load(args.config).config
    configure(config.logging.level, config.logging.format)
    snapshots = config.snapshots
    store = SqliteStore(
        snapshots.location(config.data_dir), keep=snapshots.keep, busy_timeout=args.busy_timeout
    )
    trio.run(_serve, RealtimeService(config, store=store))
    return 0


if __name__ == "__main__":
    sys.exit(main())
