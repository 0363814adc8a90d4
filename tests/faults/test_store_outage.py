"""The store turns read-only in the middle of a session, then comes back.

Three rooms are edited continuously throughout. While the store refuses every write
(append and snapshot raise `StoreReadOnly`, as SQLite does on a disk remounted read-only),
editing goes on and every client keeps receiving, /health says "degraded" and why, and no
room is evicted. When the store comes back, everything buffered is written without
anyone's help: a second, read-only store opened on the same file rebuilds every room
exactly as the clients have it, before any restart; after a graceful restart, fresh
clients get the same documents.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import trio
from pycrdt import Doc, Text

from civicrealtime.app import RealtimeService
from civicrealtime.auth import DevelopmentAuthenticator
from civicrealtime.config import RealtimeConfig
from civicrealtime.persistence import SqliteStore, StoreReadOnly

from ..conftest import RunningServer, make_config
from ..polling import eventually
from ..ydoc_client import YClient
from .support import catch_tracebacks

ROOMS = ("alpha", "beta", "gamma")


class ReadOnlyToggle(SqliteStore):
    """SQLite whose writes fail while `read_only_now` is set."""

    read_only_now = False

    async def append(self, batch: Sequence[tuple[str, bytes]]) -> list[int]:
        if self.read_only_now:
            raise StoreReadOnly("simulated: attempt to write a readonly database")
        return await super().append(batch)

    async def write_snapshot(self, room_id: str, state: bytes, **kwargs: Any) -> Any:
        if self.read_only_now:
            raise StoreReadOnly("simulated: attempt to write a readonly database")
        return await super().write_snapshot(room_id, state, **kwargs)


async def _start(nursery: trio.Nursery, config: RealtimeConfig, store: Any) -> RunningServer:
    service = RealtimeService(config, authenticator=DevelopmentAuthenticator(), store=store)
    port = await nursery.start(service.run)
    return RunningServer(service=service, port=port, nursery=nursery)


async def _stop(running: RunningServer) -> None:
    running.service.shutdown()
    with trio.fail_after(10):
        await running.service.stopped.wait()


async def _health(running: RunningServer) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.service.http_port}") as c:
        answer: dict[str, Any] = (await c.get("/health")).json()
    return answer


async def _ready(running: RunningServer) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.service.http_port}") as c:
        response = await c.get("/ready")
    return {"status": response.status_code, **response.json()}


class Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def test_store_read_only_mid_session_then_back(nursery: trio.Nursery, tmp_path: Path) -> None:
    path = tmp_path / "realtime.sqlite3"
    config = make_config(
        data_dir=str(tmp_path),
        snapshots={"enabled": True, "flush_ms": 20, "max_updates": 5, "interval": 0},
        rooms={"cleanup_timeout": 0.1},
    )
    store = ReadOnlyToggle(str(path))
    running = await _start(nursery, config, store)
    persistence = running.service.persistence
    assert persistence is not None
    phase = {"name": "before"}
    warnings = Warnings()
    logging.getLogger("civicrealtime").addHandler(warnings)
    with catch_tracebacks() as caught, trio.fail_after(60):
        editors = {room: await running.client(room) for room in ROOMS}
        watchers = {room: await running.client(room) for room in ROOMS}
        for client in [*editors.values(), *watchers.values()]:
            await client.wait_for(lambda c=client: len(c.binary) >= 2)
        stop_editing = trio.Event()

        async def edit(room: str) -> None:
            i = 0
            while not stop_editing.is_set():
                tag = f"[{phase['name']}{i}]"
                await editors[room].edit(
                    lambda d, t=tag: d.get("t", type=Text).insert(
                        len(str(d.get("t", type=Text))), t
                    )
                )
                i += 1
                await trio.sleep(0.01)

        async with trio.open_nursery() as editing:
            for room in ROOMS:
                editing.start_soon(edit, room)
            await trio.sleep(0.2)
            # The disk goes read-only.
            phase["name"] = "during"
            store.read_only_now = True
            await eventually(lambda: not persistence.healthy, within=5)
            health = await _health(running)
            assert health["status"] == "degraded"
            assert any("store failing" in reason for reason in health["reasons"])
            # Failing writes keep the node ready (docs/operations.md): /ready says why.
            ready = await _ready(running)
            assert ready["status"] == 200 and ready["ready"] is True
            assert "readonly" in ready["store_writes"]
            await trio.sleep(0.5)
            # Editing went on, and everybody kept receiving.
            for room in ROOMS:
                assert "[during" in editors[room].text("t")
                await watchers[room].wait_for(
                    lambda r=room: watchers[r].text("t") == editors[r].text("t"), within=5
                )
                handle = running.service.rooms.get(f"records:{room}")
                assert handle is not None
                assert handle.room.holds_unwritten_updates  # kept in memory, not evicted
            # The disk comes back.
            phase["name"] = "after"
            store.read_only_now = False
            await eventually(lambda: persistence.healthy, within=15)
            # Hundreds of failed writes, a few lines: the first failure, one per room's
            # first failed snapshot, and (past a minute) summaries. It was ~2 per update.
            logging.getLogger("civicrealtime").removeHandler(warnings)
            assert persistence.statistics().failures >= 4
            assert len(warnings.lines) <= 1 + len(ROOMS), warnings.lines
            await trio.sleep(0.2)
            stop_editing.set()

        finals = {}
        for room in ROOMS:
            await watchers[room].wait_for(
                lambda r=room: watchers[r].text("t") == editors[r].text("t"), within=5
            )
            finals[room] = editors[room].text("t")
            assert "[after" in finals[room]
        # Everything is written with no restart and no further edit.
        await eventually(
            lambda: (
                persistence.statistics().pending_updates == 0
                and not any(persistence.unflushed(f"records:{room}") for room in ROOMS)
            ),
            within=15,
        )
        assert (await _health(running))["status"] == "ok"
        reader = SqliteStore(str(path), read_only=True)
        await reader.open()
        try:
            for room in ROOMS:
                loaded = await reader.load(f"records:{room}")
                doc: Doc[Any] = Doc()
                for update in loaded.updates():
                    doc.apply_update(update)
                assert str(doc.get("t", type=Text)) == finals[room]
        finally:
            await reader.close()
        for client in [*editors.values(), *watchers.values()]:
            await client.ws.aclose()
        await _stop(running)

        # A graceful restart shows everything.
        running = await _start(nursery, config, SqliteStore(str(path)))
        for room in ROOMS:
            fresh = await YClient.connect(nursery, running.url(room))
            await fresh.wait_for(lambda f=fresh: len(f.binary) >= 2)
            assert fresh.text("t") == finals[room]
            await fresh.ws.aclose()
        await _stop(running)
    # The outage is logged (persistence.degraded) but nothing else failed.
    unexpected = [r for r in caught.records if not r.getMessage().startswith("persistence.")]
    assert not unexpected, caught.lines()
