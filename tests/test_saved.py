"""The "saved" acknowledgement through the daemon: frames, timing, failures, metrics, health."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import trio
from pycrdt import Doc, Text

from civicrealtime.app import RealtimeService
from civicrealtime.auth import DevelopmentAuthenticator
from civicrealtime.persistence import SqliteStore, StoreReadOnly

from .conftest import RunningServer, make_config
from .polling import eventually
from .ydoc_client import YClient, state_vector


class GatedStore(SqliteStore):
    """SQLite whose appends wait for `gate` (when set) and fail while `failing`; it records
    the updates each committed append held."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.gate: trio.Event | None = None
        self.failing = False
        self.committed: list[bytes] = []

    async def append(self, batch: Sequence[tuple[str, bytes]]) -> list[int]:
        if self.gate is not None:
            await self.gate.wait()
        if self.failing:
            raise StoreReadOnly("simulated: attempt to write a readonly database")
        seqs = await super().append(batch)
        self.committed.extend(data for _, data in batch)
        return seqs

    async def write_snapshot(self, room_id: str, state: bytes, **kwargs: Any) -> Any:
        if self.failing:
            raise StoreReadOnly("simulated: attempt to write a readonly database")
        return await super().write_snapshot(room_id, state, **kwargs)


async def _start(nursery: trio.Nursery, tmp_path: Path) -> tuple[RunningServer, GatedStore]:
    config = make_config(
        data_dir=str(tmp_path),
        snapshots={"enabled": True, "flush_ms": 20, "interval": 0, "max_updates": 10000},
    )
    store = GatedStore(str(tmp_path / "realtime.sqlite3"))
    service = RealtimeService(config, authenticator=DevelopmentAuthenticator(), store=store)
    port = await nursery.start(service.run)
    return RunningServer(service=service, port=port, nursery=nursery), store


def _append(doc: Doc[Any], words: str) -> None:
    text = doc.get("t", type=Text)
    text.insert(len(str(text)), words)


async def _joined(client: YClient) -> None:
    await client.wait_for(lambda: len(client.binary) >= 2)


async def test_saved_only_after_the_commit_and_only_for_the_sender(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    running, store = await _start(nursery, tmp_path)
    writer = await running.client("room")
    other = await running.client("room")
    for client in (writer, other):
        await _joined(client)
    store.gate = trio.Event()
    await writer.edit(lambda d: _append(d, "hello"))
    await other.wait_for(lambda: other.text("t") == "hello")
    # The append waits at the gate: nothing is durable, nothing said.
    await trio.sleep(0.2)
    assert writer.events("saved") == []
    committed_before = len(store.committed)
    store.gate.set()
    await writer.wait_for(lambda: bool(writer.events("saved")))
    (frame,) = writer.events("saved")
    assert len(store.committed) > committed_before  # the commit came first
    own = writer.doc.client_id
    assert frame["through"] == {str(own): state_vector(writer.doc)[own]}
    assert frame["updates"] == 1
    # The other connection sent nothing: no frame for it.
    await trio.sleep(0.1)
    assert other.events("saved") == []


async def test_one_frame_per_commit_covering_a_burst(nursery: trio.Nursery, tmp_path: Path) -> None:
    running, store = await _start(nursery, tmp_path)
    writer = await running.client("burst")
    await _joined(writer)
    store.gate = trio.Event()
    for i in range(30):
        await writer.edit(lambda d, i=i: _append(d, f"{i},"))
    handle = running.service.rooms.get("records:burst")
    assert handle is not None
    await eventually(lambda: handle.room.updates_applied == 30)
    store.gate.set()
    await writer.wait_for(lambda: bool(writer.events("saved")))
    await trio.sleep(0.2)
    frames = writer.events("saved")
    # The first append (taken at the gate) may hold only part of the burst; the rest is in
    # the next: never one frame per update.
    assert 1 <= len(frames) <= 2
    assert frames[-1]["updates"] == 30
    own = writer.doc.client_id
    assert frames[-1]["through"][str(own)] == state_vector(writer.doc)[own]


async def test_a_stock_client_sees_nothing_new(nursery: trio.Nursery, tmp_path: Path) -> None:
    running, _ = await _start(nursery, tmp_path)
    stock = await running.client("plain", control=False)
    await _joined(stock)
    for i in range(5):
        await stock.edit(lambda d, i=i: _append(d, str(i)))
    persistence = running.service.persistence
    assert persistence is not None
    await eventually(lambda: persistence.durability.durable("records:plain") == 5)
    await trio.sleep(0.1)
    assert stock.text_frames == []


async def test_failing_store_sends_no_ack_then_acks_everything_after_recovery(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    running, store = await _start(nursery, tmp_path)
    writer = await running.client("outage")
    await _joined(writer)
    await writer.edit(lambda d: _append(d, "before;"))
    await writer.wait_for(lambda: len(writer.events("saved")) == 1)
    store.failing = True
    for i in range(3):
        await writer.edit(lambda d, i=i: _append(d, f"during{i};"))
    await writer.wait_for(
        lambda: any(e["error"]["code"] == "STORE_FAILING" for e in writer.events("error"))
    )
    await trio.sleep(0.3)
    assert len(writer.events("saved")) == 1  # no ack while failing
    assert len(writer.events("error")) == 1  # told once per outage
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.service.http_port}") as c:
        health = (await c.get("/health")).json()
    assert health["oldest_unsaved_seconds"] >= 0.3
    store.failing = False
    await writer.wait_for(lambda: len(writer.events("saved")) == 2, within=10)
    frame = writer.events("saved")[-1]
    assert frame["updates"] == 4
    own = writer.doc.client_id
    assert frame["through"][str(own)] == state_vector(writer.doc)[own]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.service.http_port}") as c:
        health = (await c.get("/health")).json()
        metrics = (await c.get("/metrics")).text
    assert health["oldest_unsaved_seconds"] == 0
    assert "civicrealtime_saved_updates_total 4.0" in metrics
    assert "civicrealtime_save_ack_seconds_count 4.0" in metrics


async def test_a_repeated_update_is_saved_without_a_new_write(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    running, store = await _start(nursery, tmp_path)
    writer = await running.client("again")
    await _joined(writer)
    await writer.edit(lambda d: _append(d, "once"))
    await writer.wait_for(lambda: len(writer.events("saved")) == 1)
    writes = len(store.committed)
    # The same state again, as a reconnecting client's step 2 would send it.
    await writer.send_step2()
    await writer.wait_for(lambda: len(writer.events("saved")) == 2)
    assert writer.events("saved")[-1]["updates"] == 2
    assert len(store.committed) == writes


async def test_a_refused_update_is_never_saved(nursery: trio.Nursery, tmp_path: Path) -> None:
    config = make_config(
        data_dir=str(tmp_path),
        snapshots={"enabled": True, "flush_ms": 20},
        rooms={"max_document_bytes": 200},
    )
    service = RealtimeService(config, authenticator=DevelopmentAuthenticator())
    port = await nursery.start(service.run)
    running = RunningServer(service=service, port=port, nursery=nursery)
    writer = await running.client("big")
    await _joined(writer)
    await writer.edit(lambda d: _append(d, "small"))
    await writer.wait_for(lambda: len(writer.events("saved")) == 1)
    await writer.edit(lambda d: _append(d, "x" * 500))  # past max_document_bytes: refused
    await writer.wait_for(lambda: bool(writer.events("error")))
    await trio.sleep(0.2)
    assert len(writer.events("saved")) == 1


async def test_an_evicted_room_stops_watching(nursery: trio.Nursery, tmp_path: Path) -> None:
    """The writer must not keep an evicted room (its notifier) alive."""
    config = make_config(
        data_dir=str(tmp_path),
        snapshots={"enabled": True, "flush_ms": 20},
        rooms={"cleanup_timeout": 0.1},
    )
    service = RealtimeService(config, authenticator=DevelopmentAuthenticator())
    port = await nursery.start(service.run)
    running = RunningServer(service=service, port=port, nursery=nursery)
    persistence = service.persistence
    assert persistence is not None
    client = await running.client("leaving")
    await _joined(client)
    assert "records:leaving" in persistence.durability._watchers
    await client.ws.aclose()
    await eventually(lambda: service.rooms.get("records:leaving") is None)
    await eventually(lambda: "records:leaving" not in persistence.durability._watchers)
