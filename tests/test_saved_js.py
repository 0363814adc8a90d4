"""The client helper (`/client/civicrealtime.js`) under Node against the daemon, in process.

Each scenario is `node tests/js/saved_client.mjs <ws> <ops> <scenario>` (see that file). The
daemon runs in this test's trio run with a SQLite store whose writes can be made to fail,
so the outage scenario answers the script's `PAUSE fail` / `PAUSE recover` lines by
flipping the store, then checks that what the helper last showed as saved is in the store.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from pycrdt import Doc, Text

from civicrealtime.app import RealtimeService
from civicrealtime.auth import DevelopmentAuthenticator
from civicrealtime.persistence import SqliteStore, StoreReadOnly

from .conftest import make_config

JS_DIR = Path(__file__).resolve().parent / "js"
SCRIPT = JS_DIR / "saved_client.mjs"
NODE = shutil.which("node")

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node (Node.js) not found on PATH"),
    pytest.mark.skipif(
        not (JS_DIR / "node_modules").is_dir(), reason="run `npm ci --prefix tests/js`"
    ),
]


class FailingStore(SqliteStore):
    """SQLite whose writes fail while `failing` is set (a disk gone read-only)."""

    failing = False

    async def append(self, batch: Sequence[tuple[str, bytes]]) -> list[int]:
        if self.failing:
            raise StoreReadOnly("simulated: attempt to write a readonly database")
        return await super().append(batch)

    async def write_snapshot(self, room_id: str, state: bytes, **kwargs: Any) -> Any:
        if self.failing:
            raise StoreReadOnly("simulated: attempt to write a readonly database")
        return await super().write_snapshot(room_id, state, **kwargs)


async def _serve(nursery: trio.Nursery, tmp_path: Path) -> tuple[RealtimeService, FailingStore]:
    config = make_config(
        data_dir=str(tmp_path),
        snapshots={"enabled": True, "flush_ms": 50, "interval": 0, "max_updates": 1000},
    )
    store = FailingStore(str(tmp_path / "realtime.sqlite3"))
    service = RealtimeService(config, authenticator=DevelopmentAuthenticator(), store=store)
    await nursery.start(service.run)
    return service, store


async def _drive(
    service: RealtimeService, scenario: str, room: str, answer: dict[str, Any] | None = None
) -> list[str]:
    """Run the script; answer each `PAUSE <what>` by calling answer[what]() then a line."""
    assert NODE is not None
    ws = f"ws://127.0.0.1:{service.server.port}/realtime"
    ops = f"http://127.0.0.1:{service.http_port}"
    cmd = [NODE, str(SCRIPT), ws, ops, scenario, "--room", room]
    process = await trio.lowlevel.open_process(
        cmd, cwd=JS_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None and process.stdin is not None
    assert process.stderr is not None
    lines: list[str] = []
    errors = bytearray()

    async def read_stderr() -> None:
        assert process.stderr is not None
        async for chunk in process.stderr:
            errors.extend(chunk)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_stderr)
            buffered = b""
            async for chunk in process.stdout:
                buffered += chunk
                while b"\n" in buffered:
                    raw, buffered = buffered.split(b"\n", 1)
                    line = raw.decode()
                    lines.append(line)
                    if line.startswith("PAUSE "):
                        what = line.removeprefix("PAUSE ")
                        assert answer is not None and what in answer, line
                        await answer[what]()
                        await process.stdin.send_all(b"ok\n")
            code = await process.wait()
    assert code == 0, "\n".join(lines) + "\n" + errors.decode(errors="replace")
    assert f"PASS {scenario}" in lines
    return lines


def test_helper_bookkeeping_over_a_fake_socket() -> None:
    """tests/js/civicrealtime_helper.test.mjs: the real provider, a socket the test drives."""
    assert NODE is not None
    result = subprocess.run(
        [NODE, "--test", "civicrealtime_helper.test.mjs"],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert "# fail 0" in result.stdout


async def test_helper_is_served_to_any_origin(nursery: trio.Nursery, tmp_path: Path) -> None:
    service, _ = await _serve(nursery, tmp_path)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.http_port}") as client:
        response = await client.get("/client/civicrealtime.js")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/javascript")
        assert response.headers["access-control-allow-origin"] == "*"
        assert "civicrealtime.control.v1" in response.text
        assert (await client.get("/client/other.js")).status_code == 404
    service.shutdown()


async def test_typing_and_deleting_go_saving_then_saved(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    service, _ = await _serve(nursery, tmp_path)
    await _drive(service, "saved", "helper-saved")
    service.shutdown()


async def test_changes_made_offline_are_saved_after_reconnecting(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    service, _ = await _serve(nursery, tmp_path)
    await _drive(service, "offline", "helper-offline")
    service.shutdown()


async def test_store_outage_shows_error_then_saved(nursery: trio.Nursery, tmp_path: Path) -> None:
    service, store = await _serve(nursery, tmp_path)

    async def fail() -> None:
        store.failing = True

    async def recover() -> None:
        store.failing = False

    lines = await _drive(service, "outage", "helper-outage", {"fail": fail, "recover": recover})
    (shown,) = [line.removeprefix("TEXT ") for line in lines if line.startswith("TEXT ")]
    # Shown as saved: in the store, read by a second connection, before any restart.
    loaded = await store.load("records:helper-outage")
    doc: Doc[Any] = Doc()
    for update in loaded.updates():
        doc.apply_update(update)
    assert str(doc.get("t", type=Text)) == shown == "before;during;more;"
    service.shutdown()
