"""Issue #20, failure 5, through the daemon: a room whose every snapshot is corrupt.

Before: a client joined with no error and saw 0 of 250 entries, /health said ok, and an
admin snapshot then wrote a 2-byte state over the stored rows.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import httpx
import trio

from civicrealtime.app import RealtimeService
from civicrealtime.auth import DevelopmentAuthenticator
from civicrealtime.persistence import SqliteStore
from civicrealtime.protocol.closecodes import CloseCode
from civicrealtime.rooms.room import Room

from ..conftest import make_config
from ..persistence.helpers import Editor
from ..ydoc_client import YClient

ENTRIES = 250


async def _stored_room(path: Path) -> str:
    editor = Editor()
    async with SqliteStore(str(path)) as store:
        for i in range(ENTRIES):
            seqs = await store.append([("records:ledger", editor.type(f"[{i}]"))])
            if (i + 1) % 60 == 0:
                await store.write_snapshot("records:ledger", editor.state(), covers_seq=seqs[-1])
        infos = await store.snapshots("records:ledger")
        assert len(infos) == 3

        def corrupt(conn: Any) -> None:
            # Every blob damaged in place, as bit rot would (the hash no longer matches).
            conn.execute(
                "UPDATE realtime_snapshots SET snapshot_data = zeroblob(length(snapshot_data))"
            )

        await store.run_blocking(corrupt)
    return str(editor)


async def test_a_room_with_only_corrupt_snapshots_is_refused_not_served_blank(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    path = tmp_path / "realtime.sqlite3"
    text = await _stored_room(path)
    config = make_config(data_dir=str(tmp_path), snapshots={"enabled": True, "interval": 0})
    service = RealtimeService(config, authenticator=DevelopmentAuthenticator())
    port = await nursery.start(service.run)
    url = f"ws://127.0.0.1:{port}/realtime/records/ledger"
    http = f"http://127.0.0.1:{service.http_port}"

    client = await YClient.connect(nursery, url)
    await client.wait_for(lambda: client.closed is not None)
    assert client.closed is not None
    assert client.closed[0] == CloseCode.ROOM_FAILED
    assert "ROOM_DAMAGED" in client.closed[1]
    assert client.events("error")[0]["error"]["code"] == "ROOM_DAMAGED"
    assert not client.binary  # never a blank document in place of the real one

    # Each join retries the load with a new room actor; a refused one leaves no trace.
    for _ in range(3):
        more = await YClient.connect(nursery, url)
        await more.wait_for(lambda more=more: more.closed is not None)
    gc.collect()
    assert not [o for o in gc.get_objects() if isinstance(o, Room) and o.key == "records:ledger"]

    async with httpx.AsyncClient(base_url=http) as c:
        health = (await c.get("/health")).json()
        metrics = (await c.get("/metrics")).text
    assert health["status"] == "degraded"
    assert health["damaged_rooms"] == ["records:ledger"]
    assert any("stored state is damaged" in reason for reason in health["reasons"])
    assert 'civicrealtime_rooms{state="damaged"} 1.0' in metrics
    # Not a live room: no snapshot can be written over the rows.
    assert (await service.snapshot_room("records:ledger")).status == 404
    async with SqliteStore(str(path), read_only=True) as reader:
        assert len(await reader.snapshots("records:ledger")) == 3
        assert (await reader.load("records:ledger")).damaged

    # The operator decides (here: accept the loss); the next joiner is served at once.
    async with SqliteStore(str(path)) as store:
        await store.rebuild_room("records:ledger", accept_loss=True)
    again = await YClient.connect(nursery, url)
    await again.wait_for(lambda: len(again.binary) >= 2)
    assert again.closed is None
    assert again.text("t") != text  # what the corrupt snapshots held is gone, knowingly
    async with httpx.AsyncClient(base_url=http) as c:
        assert (await c.get("/health")).json()["damaged_rooms"] == []
    await again.ws.aclose()
    service.shutdown()
    with trio.fail_after(10):
        await service.stopped.wait()
