"""Persistence through the daemon: restarts, eviction, store failures, crashes, seeding."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import jwt as pyjwt
import pytest
import trio
from pycrdt import Doc, Text

from civicrealtime.app import RealtimeService
from civicrealtime.auth import DevelopmentAuthenticator
from civicrealtime.config import RealtimeConfig
from civicrealtime.persistence import SqliteStore, StoreFull
from civicrealtime.rooms import RoomType, RoomTypeRegistry
from civicrealtime.startup import StoreSetupError

from . import processes
from .conftest import RunningServer, make_config
from .polling import eventually
from .ydoc_client import YClient


def persistent_config(data_dir: Path, **overrides: Any) -> RealtimeConfig:
    snapshots = {"enabled": True, "flush_ms": 20, **overrides.pop("snapshots", {})}
    return make_config(data_dir=str(data_dir), snapshots=snapshots, **overrides)


class Daemon:
    """A service in the test's nursery that can be stopped and started again."""

    def __init__(self, nursery: trio.Nursery, config: RealtimeConfig, **kwargs: Any) -> None:
        self.nursery = nursery
        self.config = config
        self.kwargs = kwargs
        self.service: RealtimeService | None = None
        self.running: RunningServer | None = None

    async def start(self) -> RunningServer:
        kwargs = {"authenticator": DevelopmentAuthenticator(), **self.kwargs}
        self.service = RealtimeService(self.config, **kwargs)
        port = await self.nursery.start(self.service.run)
        self.running = RunningServer(service=self.service, port=port, nursery=self.nursery)
        return self.running

    async def stop(self) -> None:
        assert self.service is not None
        self.service.shutdown()
        with trio.fail_after(10):
            await self.service.stopped.wait()


async def write(running: RunningServer, room: str, text: str) -> YClient:
    client = await running.client(room)
    await client.wait_for(lambda: len(client.binary) >= 2)
    await client.edit(lambda d: d.get("t", type=Text).insert(len(str(d.get("t", type=Text))), text))
    handle = running.service.rooms.get(f"records:{room}")
    assert handle is not None
    await eventually(lambda: str(handle.room.doc.get("t", type=Text)).endswith(text))
    return client


async def read(running: RunningServer, room: str) -> str:
    client = await running.client(room)
    await client.wait_for(lambda: len(client.binary) >= 2)
    await client.ws.aclose()
    return client.text("t")


async def test_graceful_restart_keeps_every_room(nursery: trio.Nursery, tmp_path: Path) -> None:
    daemon = Daemon(nursery, persistent_config(tmp_path))
    running = await daemon.start()
    for i in range(5):
        await write(running, f"room{i}", f"content {i} ✓")
    await daemon.stop()
    running = await daemon.start()
    for i in range(5):
        assert await read(running, f"room{i}") == f"content {i} ✓"
    await daemon.stop()


async def test_eviction_at_max_rooms_persists_first(nursery: trio.Nursery, tmp_path: Path) -> None:
    daemon = Daemon(nursery, persistent_config(tmp_path, rooms={"max_rooms": 1}))
    running = await daemon.start()
    writer = await write(running, "first", "kept through eviction")
    await writer.ws.aclose()
    await eventually(lambda: running.service.rooms.get("records:first").members == 0)
    await read(running, "second")  # evicts "first" (LRU, empty)
    assert running.service.rooms.get("records:first") is None
    await eventually(lambda: running.service.rooms.get("records:second").members == 0)
    assert await read(running, "first") == "kept through eviction"
    await daemon.stop()


class FlakyStore(SqliteStore):
    """SQLite that can be made to fail writes, like a full disk."""

    broken = False

    async def append(self, batch: Sequence[tuple[str, bytes]]) -> list[int]:
        if self.broken:
            raise StoreFull("simulated: no space left on device")
        return await super().append(batch)

    async def write_snapshot(self, room_id: str, state: bytes, **kwargs: Any) -> Any:
        if self.broken:
            raise StoreFull("simulated: no space left on device")
        return await super().write_snapshot(room_id, state, **kwargs)


async def test_store_failure_never_stops_editing(nursery: trio.Nursery, tmp_path: Path) -> None:
    store = FlakyStore(str(tmp_path / "store.sqlite3"))
    config = persistent_config(tmp_path, snapshots={"max_updates": 3})
    daemon = Daemon(nursery, config, store=store)
    running = await daemon.start()
    editor = await write(running, "r", "before ")
    watcher = await running.client("r")
    store.broken = True
    for word in ("during ", "the ", "outage "):
        await editor.edit(
            lambda d, w=word: d.get("t", type=Text).insert(len(str(d.get("t", type=Text))), w)
        )
    await watcher.wait_for(lambda: watcher.text("t") == "before during the outage ")
    persistence = running.service.persistence
    assert persistence is not None
    await eventually(lambda: not persistence.healthy)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.service.http_port}") as c:
        health = (await c.get("/health")).json()
        metrics = (await c.get("/metrics")).text
    assert health["status"] == "degraded"
    assert any("store failing" in r for r in health["reasons"])
    failed = re.search(r'civicrealtime_store_write_failures_total\{kind="log"\} (\d+)', metrics)
    assert failed is not None
    assert int(failed.group(1)) >= 1
    handle = running.service.rooms.get("records:r")
    assert handle is not None
    assert handle.room.holds_unwritten_updates  # so it is not evicted
    store.broken = False
    await eventually(lambda: persistence.healthy and not persistence.unflushed("records:r"), 10)
    await daemon.stop()
    running = await daemon.start()
    assert await read(running, "r") == "before during the outage "
    await daemon.stop()


class CountingStore(SqliteStore):
    loads = 0

    async def load(self, room_id: str) -> Any:
        self.loads += 1
        await trio.sleep(0.05)
        return await super().load(room_id)


async def test_concurrent_cold_joins_load_once(nursery: trio.Nursery, tmp_path: Path) -> None:
    store = CountingStore(str(tmp_path / "store.sqlite3"))
    daemon = Daemon(nursery, persistent_config(tmp_path), store=store)
    running = await daemon.start()
    async with trio.open_nursery() as joins:
        for _ in range(10):
            joins.start_soon(read, running, "cold")
    assert store.loads == 1
    await daemon.stop()


async def test_corrupt_newest_snapshot_falls_back(nursery: trio.Nursery, tmp_path: Path) -> None:
    config = persistent_config(tmp_path, snapshots={"max_updates": 1, "interval": 0})
    daemon = Daemon(nursery, config)
    running = await daemon.start()
    writer = await write(running, "c", "one ")
    handle = running.service.rooms.get("records:c")
    assert handle is not None
    await eventually(lambda: handle.room.snapshots_taken >= 1)
    await writer.edit(lambda d: d.get("t", type=Text).insert(4, "two"))
    await eventually(lambda: handle.room.snapshots_taken >= 2)
    await daemon.stop()
    database = sqlite3.connect(tmp_path / "realtime.sqlite3")
    with database:
        newest = database.execute(
            "SELECT id FROM realtime_snapshots WHERE room_id = ? ORDER BY version DESC LIMIT 1",
            ("records:c",),
        ).fetchone()[0]
        database.execute(
            "UPDATE realtime_snapshots SET snapshot_data = ? WHERE id = ?", (b"garbage", newest)
        )
    database.close()
    running = await daemon.start()
    assert await read(running, "c") == "one two"
    await daemon.stop()
    # The bad row is kept for diagnosis, never deleted.
    database = sqlite3.connect(tmp_path / "realtime.sqlite3")
    assert (
        database.execute(
            "SELECT count(*) FROM realtime_snapshots WHERE id = ?", (newest,)
        ).fetchone()[0]
        == 1
    )
    database.close()


class Greeting(RoomType):
    """A room type that seeds every new room (the records handler does it from Markdown)."""

    async def seed(self, room_id: str, doc: Doc[Any]) -> None:
        doc.get("t", type=Text).insert(0, f"hello {room_id}")


async def test_a_room_with_history_is_never_reseeded(nursery: trio.Nursery, tmp_path: Path) -> None:
    registry = RoomTypeRegistry([Greeting("records")])
    daemon = Daemon(nursery, persistent_config(tmp_path), room_types=registry)
    running = await daemon.start()
    assert await read(running, "s") == "hello s"
    await write(running, "s", "!")
    await daemon.stop()
    running = await daemon.start()
    assert await read(running, "s") == "hello s!"
    await daemon.stop()


async def test_admin_snapshot_endpoint(nursery: trio.Nursery, tmp_path: Path) -> None:
    config = persistent_config(tmp_path, auth={"mode": "development"})
    daemon = Daemon(nursery, config)
    running = await daemon.start()
    await write(running, "a", "x")
    service = running.service
    service.admin_token = "test-admin-token-123456"
    headers = {"Authorization": "Bearer test-admin-token-123456"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.http_port}") as c:
        answer = await c.post("/admin/rooms/records%3Aa/snapshot", headers=headers)
        metrics = (await c.get("/metrics")).text
    assert answer.status_code == 200
    assert answer.json()["snapshots"] >= 1
    assert 'civicrealtime_store_writes_total{kind="snapshot"}' in metrics
    await daemon.stop()


CRASH_CONFIG = (
    "host: 127.0.0.1\nport: {port}\nhttp:\n  port: 0\nauth:\n  mode: development\n"
    "snapshots:\n  flush_ms: 100\n"
)


def _spawn(workdir: Path, port: int) -> subprocess.Popen[str]:
    return processes.spawn(workdir, CRASH_CONFIG.format(port=port), port=port)


def test_kill_9_loses_nothing_older_than_the_flush_window(tmp_path: Path) -> None:
    """Edits the daemon had received more than flush_ms before SIGKILL are all there."""
    port = processes.free_port()
    url = f"ws://127.0.0.1:{port}/realtime/records/crash"
    proc = _spawn(tmp_path, port)
    acknowledged: list[str] = []
    try:

        async def edit_then_wait() -> None:
            async with trio.open_nursery() as nursery:
                writer = await YClient.connect(nursery, url, token="w")
                watcher = await YClient.connect(nursery, url, token="r")
                await watcher.wait_for(lambda: len(watcher.binary) >= 2)
                for i in range(40):
                    word = f"<{i}>"
                    await writer.edit(
                        lambda d, w=word: d.get("t", type=Text).insert(
                            len(str(d.get("t", type=Text))), w
                        )
                    )
                    # The watcher sees it: the daemon has received and applied it.
                    await watcher.wait_for(lambda w=word: watcher.text("t").endswith(w))
                    acknowledged.append(word)
                # Wait well past flush_ms (100 ms) so every acknowledged edit is durable.
                await trio.sleep(0.5)
                nursery.cancel_scope.cancel()

        trio.run(edit_then_wait)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        processes.stop(proc)
    assert proc.returncode == -signal.SIGKILL
    proc = _spawn(tmp_path, port)
    try:

        async def reopen() -> str:
            async with trio.open_nursery() as nursery:
                client = await YClient.connect(nursery, url, token="again")
                await client.wait_for(lambda: len(client.binary) >= 2)
                nursery.cancel_scope.cancel()
                return client.text("t")

        text = trio.run(reopen)
        assert processes.terminate(proc) == 0
    finally:
        processes.stop(proc)
    assert text == "".join(acknowledged)
    assert len(acknowledged) == 40


def test_sigterm_restart_keeps_rooms(tmp_path: Path) -> None:
    port = processes.free_port()
    proc = _spawn(tmp_path, port)
    try:

        async def edit() -> None:
            async with trio.open_nursery() as nursery:
                c = await YClient.connect(
                    nursery, f"ws://127.0.0.1:{port}/realtime/records/term", token="t"
                )
                await c.wait_for(lambda: len(c.binary) >= 2)
                await c.edit(lambda d: d.get("t", type=Text).insert(0, "saved on SIGTERM"))
                await trio.sleep(0.01)  # no wait for a flush: SIGTERM must flush
                nursery.cancel_scope.cancel()

        trio.run(edit)
        assert processes.terminate(proc) == 0
    finally:
        processes.stop(proc)
    proc = _spawn(tmp_path, port)
    try:

        async def reopen() -> str:
            async with trio.open_nursery() as nursery:
                c = await YClient.connect(
                    nursery, f"ws://127.0.0.1:{port}/realtime/records/term", token="u"
                )
                await c.wait_for(lambda: len(c.binary) >= 2)
                nursery.cancel_scope.cancel()
                return c.text("t")

        assert trio.run(reopen) == "saved on SIGTERM"
        assert processes.terminate(proc) == 0
    finally:
        processes.stop(proc)


# --- revoked sessions across restarts ---------------------------------------------------

JWT_SECRET = "r" * 40


def _jwt(user: str, *, jti: str, issued: float) -> str:
    claims = {"sub": user, "jti": jti, "iat": int(issued), "exp": int(issued) + 3600}
    return pyjwt.encode({**claims, "role": "editor"}, JWT_SECRET, "HS256")


async def _admin_revoke(running: RunningServer, body: dict[str, str]) -> httpx.Response:
    admin = pyjwt.encode(
        {"sub": "root", "role": "admin", "exp": int(time.time()) + 60}, JWT_SECRET, "HS256"
    )
    base = f"http://127.0.0.1:{running.service.http_port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        return await client.post(
            "/admin/revoke", headers={"Authorization": f"Bearer {admin}"}, json=body
        )


async def _admitted(running: RunningServer, token: str) -> bool:
    client = await running.client("gate", token=token)
    await client.wait_for(lambda: len(client.binary) >= 2 or client.closed is not None)
    admitted = client.closed is None
    await client.ws.aclose()
    return admitted


def _jwt_daemon(nursery: trio.Nursery, tmp_path: Path, **kwargs: Any) -> Daemon:
    config = persistent_config(tmp_path, auth={"mode": "jwt"})
    environ = {"CIVICREALTIME_JWT_SECRET": JWT_SECRET}
    # No authenticator of the test's: the service builds its own, as the daemon does.
    return Daemon(nursery, config, authenticator=None, environ=environ, **kwargs)


async def test_revocations_survive_a_restart(nursery: trio.Nursery, tmp_path: Path) -> None:
    daemon = _jwt_daemon(nursery, tmp_path)
    running = await daemon.start()
    before = time.time() - 5
    alice, leaked, other = (
        _jwt("alice", jti="a1", issued=before),
        _jwt("bob", jti="leaked", issued=before),
        _jwt("bob", jti="b2", issued=before),
    )
    assert await _admitted(running, alice)
    for body in ({"user_id": "alice"}, {"token_id": "leaked"}):
        response = await _admin_revoke(running, body)
        assert response.status_code == 200
        assert response.json()["persisted"] is True
    await daemon.stop()

    running = await daemon.start()  # a new process would read the same store
    assert not await _admitted(running, alice)
    assert not await _admitted(running, leaked)
    assert await _admitted(running, other)
    # A token issued after the user's revocation is accepted: they signed in again.
    assert await _admitted(running, _jwt("alice", jti="a2", issued=time.time() + 1))
    await daemon.stop()


class RevocationsFail(SqliteStore):
    async def save_revocation(self, revocation: Any) -> None:
        raise StoreFull("simulated: no space left on device")


async def test_a_revocation_the_store_refuses_is_in_force_and_reported(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    store = RevocationsFail(str(tmp_path / "store.sqlite3"))
    running = await _jwt_daemon(nursery, tmp_path, store=store).start()
    alice = _jwt("alice", jti="a1", issued=time.time() - 5)
    response = await _admin_revoke(running, {"user_id": "alice"})
    assert response.status_code == 503
    body = response.json()
    assert body["revoked"] is True
    assert body["persisted"] is False
    assert "no space left on device" in body["error"]
    assert not await _admitted(running, alice)  # in force all the same


async def test_an_unreadable_revocations_file_stops_the_start(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    config = persistent_config(
        tmp_path, snapshots={"storage": "filesystem", "directory": str(tmp_path / "fs")}
    )
    (tmp_path / "fs" / "realtime").mkdir(parents=True)
    (tmp_path / "fs" / "realtime" / "revocations.json").write_text("not json")
    service = RealtimeService(config, authenticator=DevelopmentAuthenticator())
    with pytest.raises(StoreSetupError, match=r"revoked sessions.*revocations\.json"):
        await service.run()
