"""`civicrealtime history ...` (cli/history.py): reading a store, restoring through a daemon."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
from pycrdt import Doc, XmlFragment

from civicrealtime import cli
from civicrealtime.history_blame import changed_blocks
from civicrealtime.persistence import FilesystemStore, SqliteStore, Store
from civicrealtime.persistence.historyrecorder import HistoryRecorder
from civicrealtime.persistence.historystores import history_for
from civicrealtime.records.to_markdown import fragment_to_markdown
from civicrealtime.records.to_yjs import markdown_to_fragment
from civicrealtime.rooms.origin import Origin

from .conftest import StartServer
from .test_http import http, start, token
from .test_http_history import versions_until, write

ROOM = "records:bylaw"


async def build_history(store: Store) -> None:
    """Two versions: alice writes, bob changes the last paragraph."""
    history = history_for(store)
    assert history is not None
    recorder = HistoryRecorder(history, node="n1", analyse=changed_blocks)
    doc: Doc[Any] = Doc()
    fragment = doc.get("default", type=XmlFragment)
    with doc.transaction():
        markdown_to_fragment("# Bylaw\n\nOne.\n\nTwo.\n", fragment)
    recorder.received(ROOM, doc.get_update(), Origin(sub="alice", name="Alice"))
    await recorder.close_version(ROOM, "idle")
    before = doc.get_state()
    text = fragment.children[2].children[0]
    with doc.transaction():
        del text[3:4]
        text.insert(3, "!")
    recorder.received(ROOM, doc.get_update(before), Origin(sub="bob", name="Bob"))
    await recorder.close_version(ROOM, "idle")


@pytest.fixture(params=["sqlite", "filesystem"])
def configured(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    kind: str = request.param
    location = (
        f"filesystem:{tmp_path / 'fs'}" if kind == "filesystem" else str(tmp_path / "h.sqlite3")
    )
    store: Store = (
        FilesystemStore(tmp_path / "fs") if kind == "filesystem" else SqliteStore(location)
    )

    async def fill() -> None:
        async with store:
            await build_history(store)

    trio.run(fill)
    config = tmp_path / "rt.yml"
    config.write_text(f"snapshots:\n  enabled: true\n  database_url: '{location}'\n")
    return config


def run(config: Path, *args: str) -> int:
    return cli.main(["--config", str(config), "history", *args])


def test_list_show_diff_and_blame(configured: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(configured, "list", ROOM) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2
    assert "alice (Alice): 1" in out[0] and "bob (Bob): 1" in out[1]
    assert run(configured, "list", ROOM, "--user", "bob", "--json") == 0
    assert [v["version"] for v in json.loads(capsys.readouterr().out)] == [2]
    assert run(configured, "show", ROOM, "1") == 0
    assert capsys.readouterr().out == "# Bylaw\n\nOne.\n\nTwo.\n"
    assert run(configured, "diff", ROOM, "1", "2") == 0
    captured = capsys.readouterr()
    assert "-Two.\n+Two!\n" in captured.out
    assert "1 changed, 0 added, 0 removed, 2 unchanged" in captured.err
    assert run(configured, "blame", ROOM, "--json") == 0
    blame = {b["text"]: b["user"] for b in json.loads(capsys.readouterr().out)}
    assert blame == {"# Bylaw": "alice", "One.": "alice", "Two!": "bob"}


def test_unknown_room_or_version_exits_1_saying_which(
    configured: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(configured, "list", "records:nope") == 1
    assert "no history for room 'records:nope'" in capsys.readouterr().err
    assert run(configured, "show", ROOM, "7") == 1
    assert f"room {ROOM!r} has no version 7" in capsys.readouterr().err
    assert run(configured, "diff", ROOM, "1", "9") == 1
    assert "no version 9" in capsys.readouterr().err
    assert run(configured, "list", ROOM, "--since", "yesterday") == 2
    assert "not an ISO 8601 time" in capsys.readouterr().err


async def test_restore_goes_through_the_daemon(
    start_server: StartServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin_file = tmp_path / "admin-token"
    admin_file.write_text("static-" + "a" * 40)
    running = await start(
        start_server,
        data_dir=str(tmp_path),
        snapshots={"enabled": True, "flush_ms": 10},
        history={"version_idle": 0.05},
        http={"admin_token_file": str(admin_file)},
    )
    editor = await running.client("minutes", token=token("ada"))
    async with http(running) as client:
        await editor.edit(write("Good text."))
        await versions_until(client, 1)
        await editor.edit(write("Bad text."))
        await versions_until(client, 2)
    config = tmp_path / "cli.yml"
    config.write_text(f"http:\n  admin_token_file: {admin_file}\n")
    url = f"http://127.0.0.1:{running.service.http_port}"
    args = ["--config", str(config), "history", "restore", "records:minutes"]
    code = await trio.to_thread.run_sync(cli.main, [*args, "1", "--url", url])
    assert code == 0
    await editor.wait_for(
        lambda: fragment_to_markdown(editor.doc.get("default", type=XmlFragment)) == "Good text.\n"
    )
    assert await trio.to_thread.run_sync(cli.main, [*args, "5", "--url", url]) == 1
    monkeypatch.delenv("CIVICREALTIME_ADMIN_TOKEN", raising=False)
    config.write_text("http:\n  port: 1\n")
    assert await trio.to_thread.run_sync(cli.main, [*args, "1"]) == 2  # no token
