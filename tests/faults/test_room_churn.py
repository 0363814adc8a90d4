"""100 rooms created and evicted, round after round: memory stays flat, nothing is left over.

Each round opens 100 new rooms (new names, as records come and go), one client each that
publishes awareness and edits, then closes them all; with a short grace period every room
is evicted, its last snapshot written. After each round the daemon's structures must be
empty (room registry, rooms retiring, the persistence writer's per-room bookkeeping,
connection limits, open sockets), the number of trio tasks (room actors, grace timers,
stale sweeps, snapshotters) must be back to where it was, every evicted `Room` must be
freed, and the process's RSS, after warm-up, must not grow.
"""

from __future__ import annotations

import gc
import weakref
from pathlib import Path
from typing import Any

import attrs
import trio
from pycrdt import Text

from civicrealtime.app import RealtimeService

from ..conftest import RunningServer, StartServer, make_config
from ..polling import eventually
from ..ydoc_client import YClient
from .support import count_tasks, rss_kib

ROOMS = 100
RSS_GROWTH_BOUND_KIB = 20 * 1024
# Each room's document holds this much text, so that a room kept alive shows in the RSS.
CONTENT = "x" * 60_000


@attrs.define
class Churn:
    service: RealtimeService
    rss_kib: list[int] = attrs.Factory(list)
    rooms: list[weakref.ref[Any]] = attrs.Factory(list)


async def _round(running: RunningServer, index: int, churn: Churn) -> None:
    clients: list[YClient] = []

    async def open_one(i: int) -> None:
        client = await running.client(f"churn-{index}-{i}")
        await client.wait_for(lambda: len(client.binary) >= 2)
        await client.set_awareness(client.doc.client_id, {"user": f"u{i}", "cursor": i})
        await client.edit(lambda d: d.get("t", type=Text).insert(0, f"{i}/{index} {CONTENT}"))
        clients.append(client)

    async with trio.open_nursery() as nursery:
        for i in range(ROOMS):
            nursery.start_soon(open_one, i)
    rooms = running.service.rooms
    await eventually(lambda: all(h.room.updates_applied == 1 for h in rooms), within=10)
    churn.rooms += [weakref.ref(handle.room) for handle in rooms]
    for client in clients:
        await client.ws.aclose()  # the client stops observing its document (ydoc_client.py)


def _leftovers(service: RealtimeService) -> dict[str, int]:
    """Sizes of every per-room or per-connection structure; all zero when idle."""
    rooms, server, persistence = service.rooms, service.server, service.persistence
    assert persistence is not None
    history = service.history
    assert history is not None
    return {
        "history.buffer": len(history._buffer),
        "history.active": len(history._active),
        "history.closing": len(history._closing),
        "history.baselines": len(history._baselines),
        "history.states": len(history._states),
        "history.since": len(history._since),
        "rooms": len(rooms._rooms),
        "retiring": len(rooms._retiring),
        "connections": len(server.connections),
        "open_sockets": server._open_sockets,
        "limits": server.limits.tracked,
        "persistence.pending": persistence.statistics().pending_updates,
        "persistence.buffers": len(persistence._buffers),
        "persistence.receipts": len(persistence._receipts),
        "persistence.logged": len(persistence._logged),
        "persistence.floor": len(persistence._floor),
        "persistence.shed": len(persistence._shed_upto) + len(persistence._shed_counts),
    }


async def _churn(start_server: StartServer, tmp_path: Path, rounds: int) -> Churn:
    config = make_config(
        data_dir=str(tmp_path),
        snapshots={"enabled": True, "flush_ms": 20},
        rooms={"cleanup_timeout": 0.05, "max_rooms": 2 * ROOMS},
        rate_limiting={"connections_per_ip": 1000, "connections_per_user": 1000},
    )
    running: RunningServer = await start_server(config)
    churn = Churn(running.service)
    tasks_idle = count_tasks()
    # Generous bounds: they only stop a hung run (what must drain is asserted, not how fast;
    # speed is the benchmarks' business). Under a loaded 2-core machine, a round's history
    # versions and flushes took over 20 s to drain.
    with trio.fail_after(60 + 30 * rounds):
        for index in range(rounds):
            await _round(running, index, churn)
            await eventually(lambda: not any(_leftovers(churn.service).values()), within=60)
            # Room actors, grace timers, sweeps and snapshotters have all ended.
            await eventually(lambda: count_tasks() == tasks_idle, within=30)
            gc.collect()
            churn.rss_kib.append(rss_kib())
    return churn


async def test_room_churn_leaves_no_structure_behind(
    start_server: StartServer, tmp_path: Path
) -> None:
    churn = await _churn(start_server, tmp_path, rounds=3)
    assert not any(_leftovers(churn.service).values()), _leftovers(churn.service)
    # Every room's content was written before it left memory.
    store = churn.service.persistence.store  # type: ignore[union-attr]
    assert len(await store.list_rooms()) == 3 * ROOMS


async def test_room_churn_keeps_rss_flat(start_server: StartServer, tmp_path: Path) -> None:
    churn = await _churn(start_server, tmp_path, rounds=8)
    mib = [round(r / 1024, 1) for r in churn.rss_kib]
    print(f"\nRSS after each round (MiB): {mib}")
    growth = churn.rss_kib[-1] - churn.rss_kib[1]
    assert growth < RSS_GROWTH_BOUND_KIB, f"RSS grew {growth} KiB after warm-up: {mib} MiB"


async def test_evicted_rooms_are_freed(start_server: StartServer, tmp_path: Path) -> None:
    churn = await _churn(start_server, tmp_path, rounds=1)
    gc.collect()
    alive = sum(ref() is not None for ref in churn.rooms)
    assert alive == 0, f"{alive} of {len(churn.rooms)} evicted rooms still in memory"
