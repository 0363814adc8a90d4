"""Updates waiting for changes the room never received (issue #20, failure 3).

Before: such updates were held inside pycrdt and counted as nothing. 60 frames of 9 MiB
added 540 MiB of RSS in 12 s with no DOCUMENT_TOO_LARGE, /health said ok, and the memory
stayed after the room was closed. Here the same, scaled down, through the real server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from pycrdt import Doc, Text
from trio_websocket import ConnectionClosed

from civicrealtime.persistence import SqliteStore
from civicrealtime.protocol import messages
from civicrealtime.protocol.closecodes import CloseCode
from civicrealtime.rooms import pending

from .conftest import RunningServer, StartServer, make_config
from .polling import eventually
from .ydoc_client import YClient

MiB = 1024 * 1024


def waiting_update(size: int, words: str = "") -> tuple[bytes, bytes]:
    """(base, update): `update` is from a fresh client and builds on `base`, never sent."""
    a: Doc[Any] = Doc()
    a.get("t", type=Text).insert(0, "base ")
    base = a.get_update()
    b: Doc[Any] = Doc()
    b.apply_update(base)
    text = b.get("t", type=Text)
    text.insert(len(str(text)), words or "w" * size)
    return base, b.get_update(a.get_state())


async def _send(client: YClient, update: bytes) -> None:
    await client.ws.send_message(messages.encode_sync_update(update))


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


async def _room(running: RunningServer, name: str) -> Any:
    await eventually(lambda: running.service.rooms.get(f"records:{name}") is not None)
    handle = running.service.rooms.get(f"records:{name}")
    assert handle is not None
    return handle.room


async def test_waiting_updates_count_against_the_document_limit(
    start_server: StartServer,
) -> None:
    running = await start_server(
        make_config(
            protocol={"control_frames": True},
            rooms={
                "max_document_bytes": 8 * MiB,
                "max_pending_bytes": 64 * MiB,
                "max_pending_bytes_per_connection": 64 * MiB,
            },
        )
    )
    client = await running.client("limit")
    await client.wait_for(lambda: len(client.binary) >= 2)
    room = await _room(running, "limit")
    for _ in range(3):
        await _send(client, waiting_update(3 * MiB)[1])
    await client.wait_for(lambda: bool(client.events("error")))
    assert client.events("error")[0]["error"]["code"] == "DOCUMENT_TOO_LARGE"
    assert 6 * MiB <= room.pending.total < 7 * MiB
    assert running.service.rooms.statistics().pending_bytes == room.pending.total


async def test_a_connection_past_its_budget_is_closed_and_the_room_keeps_working(
    start_server: StartServer,
) -> None:
    running = await start_server(
        make_config(
            protocol={"control_frames": True},
            rooms={"max_pending_bytes_per_connection": MiB},
        )
    )
    editor = await running.client("budget")
    watcher = await running.client("budget")
    attacker = await running.client("budget")
    for c in (editor, watcher, attacker):
        await c.wait_for(lambda c=c: len(c.binary) >= 2)
    room = await _room(running, "budget")
    await _send(attacker, waiting_update(MiB // 2)[1])
    await eventually(lambda: room.pending.total > 0)
    assert attacker.closed is None  # within its budget: held
    await _send(attacker, waiting_update(MiB // 2 + 1000)[1])
    await attacker.wait_for(lambda: attacker.closed is not None)
    assert attacker.closed is not None
    assert attacker.closed[0] == CloseCode.LIMIT_EXCEEDED
    assert "PENDING_LIMIT" in str(attacker.closed[1])
    assert room.pending.total == 0  # both dropped, the document rebuilt without them
    assert running.service.stats.pending_dropped_updates == 2
    await editor.edit(lambda d: d.get("t", type=Text).insert(0, "still editing"))
    await watcher.wait_for(lambda: watcher.text("t") == "still editing")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.service.http_port}") as http:
        health = (await http.get("/health")).json()
        metrics = (await http.get("/metrics")).text
    assert health["status"] == "degraded"
    assert any("never received were dropped" in r for r in health["reasons"])
    assert "civicrealtime_pending_dropped_updates_total 2.0" in metrics


async def test_many_small_waiting_updates_are_bounded_by_count(
    start_server: StartServer,
) -> None:
    """Within the byte budget, each held update still costs a pass on every update the
    room applies: thousands of tiny ones froze the loop for every room."""
    running = await start_server(make_config(protocol={"control_frames": True}))
    editor = await running.client("count")
    attacker = await running.client("count")
    for c in (editor, attacker):
        await c.wait_for(lambda c=c: len(c.binary) >= 2)
    room = await _room(running, "count")
    for n in range(pending.MAX_HELD_PER_CONNECTION + 1):
        await _send(attacker, waiting_update(0, f"w{n}")[1])
    await attacker.wait_for(lambda: attacker.closed is not None)
    assert attacker.closed is not None
    assert "PENDING_LIMIT" in str(attacker.closed[1])
    assert room.pending.total == 0
    assert running.service.stats.pending_dropped_updates == pending.MAX_HELD_PER_CONNECTION + 1
    await editor.edit(lambda d: d.get("t", type=Text).insert(0, "still editing"))
    await editor.wait_for(lambda: editor.text("t") == "still editing")


async def test_a_chain_that_resolves_late_is_integrated_and_released(
    start_server: StartServer,
) -> None:
    running = await start_server(make_config())
    sender = await running.client("late")
    watcher = await running.client("late")
    for c in (sender, watcher):
        await c.wait_for(lambda c=c: len(c.binary) >= 2)
    room = await _room(running, "late")
    base, update = waiting_update(0, words="after")
    await _send(sender, update)
    await eventually(lambda: room.pending.total == len(update))
    assert watcher.text("t") == ""
    await _send(sender, base)
    await watcher.wait_for(lambda: watcher.text("t") == "base after")
    await eventually(lambda: room.pending.total == 0)
    assert running.service.stats.pending_dropped_updates == 0


async def test_what_never_resolves_is_dropped_after_the_timeout(
    start_server: StartServer,
) -> None:
    running = await start_server(make_config(rooms={"pending_timeout": 0.3}))
    client = await running.client("timeout")
    await client.wait_for(lambda: len(client.binary) >= 2)
    room = await _room(running, "timeout")
    await _send(client, waiting_update(100_000)[1])
    await eventually(lambda: room.pending.total > 0)
    await eventually(lambda: room.pending.total == 0)
    assert running.service.stats.pending_dropped_bytes > 100_000
    assert client.closed is None  # expiry drops the updates, not the connection
    # The room still takes edits; the dropped update is gone for good.
    await _send(client, waiting_update(0, words="late")[0])
    await eventually(lambda: str(room.doc.get("t", type=Text)) == "base ")


async def test_memory_is_given_back_when_the_room_is_closed(start_server: StartServer) -> None:
    running = await start_server(
        make_config(
            rooms={
                "max_document_bytes": 512 * MiB,
                "max_pending_bytes": 512 * MiB,
                "max_pending_bytes_per_connection": 512 * MiB,
                "cleanup_timeout": 0.1,
            },
        )
    )
    client = await running.client("memory")
    await client.wait_for(lambda: len(client.binary) >= 2)
    room = await _room(running, "memory")
    before = _rss()
    for _ in range(8):
        await _send(client, waiting_update(8 * MiB)[1])
    await eventually(lambda: room.pending.total >= 64 * MiB, within=20)
    held = _rss()
    assert held - before > 48 * MiB
    assert running.service.close_room("records:memory")
    await client.wait_for(lambda: client.closed is not None)
    await eventually(lambda: room.pending.total == 0 and len(room.doc.get_update()) == 2)
    await eventually(lambda: held - _rss() > 40 * MiB, within=10)


async def test_a_dropped_update_leaves_the_store_too(
    start_server: StartServer, tmp_path: Path
) -> None:
    """Before: the dropped update stayed in the log, carried forward by every snapshot and
    held again after every restart (an attacker's bytes piling up in the store)."""
    running = await start_server(
        make_config(
            data_dir=str(tmp_path),
            snapshots={"enabled": True, "flush_ms": 10, "interval": 0},
            rooms={"pending_timeout": 0.3, "cleanup_timeout": 0.1},
        )
    )
    client = await running.client("stored")
    await client.wait_for(lambda: len(client.binary) >= 2)
    room = await _room(running, "stored")
    _, update = waiting_update(50_000)
    await _send(client, update)
    await eventually(lambda: room.pending.total > 0)
    persistence = running.service.persistence
    assert persistence is not None
    await eventually(lambda: persistence.unflushed("records:stored") == 0)  # in the log
    await eventually(lambda: room.pending.total == 0)  # dropped after the timeout
    await client.ws.aclose()
    await eventually(lambda: running.service.rooms.get("records:stored") is None)
    await eventually(lambda: room.snapshots_taken == 1)  # the retiring snapshot
    async with SqliteStore(str(tmp_path / "realtime.sqlite3"), read_only=True) as store:
        loaded = await store.load("records:stored")
    assert update not in loaded.updates()


async def test_the_reported_attack_with_the_default_budgets(start_server: StartServer) -> None:
    """The report's frames (9 MiB, a fresh client on a clock never seen), default config:
    the first one closes the sender and is dropped; nothing stays held."""
    running = await start_server(make_config(protocol={"control_frames": True}))
    attacker = await running.client("reported")
    await attacker.wait_for(lambda: len(attacker.binary) >= 2)
    room = await _room(running, "reported")
    frame = waiting_update(9 * MiB)[1]
    for _ in range(3):
        if attacker.closed is not None:
            break
        try:
            await _send(attacker, frame)
        except ConnectionClosed:
            break
    await attacker.wait_for(lambda: attacker.closed is not None, within=20)
    assert attacker.closed is not None and attacker.closed[0] == CloseCode.LIMIT_EXCEEDED
    assert attacker.events("error")[0]["error"]["code"] == "PENDING_LIMIT"
    assert room.pending.total == 0
    assert running.service.stats.pending_closes == 1
