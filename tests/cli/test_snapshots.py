"""`civicrealtime snapshots ...` on a store written beforehand (as a stopped daemon leaves it)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from pycrdt import Doc, Text

from civicrealtime import cli
from civicrealtime.persistence import SqliteStore

from ..persistence.test_history_export import ROOM, build


def _update(text: str) -> bytes:
    doc = Doc()
    doc.get("t", type=Text).insert(0, text)
    return doc.get_update()


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "civicrealtime", "--config", str(tmp_path / "rt.yml"), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=os.environ,
    )


def _prepare(tmp_path: Path) -> Path:
    (tmp_path / "rt.yml").write_text("data_dir: data\n")
    database = tmp_path / "data" / "realtime.sqlite3"

    async def write() -> None:
        async with SqliteStore(str(database)) as store:
            await store.append([("records:a", _update("alpha")), ("records:b", _update("beta"))])
            await store.write_snapshot("records:b", _update("beta"), covers_seq=1)

    trio.run(write)
    return database


def test_list_show_export_import_compact(tmp_path: Path) -> None:
    _prepare(tmp_path)
    listed = _cli(tmp_path, "snapshots", "list")
    assert listed.returncode == 0, listed.stderr
    assert "records:a" in listed.stdout
    assert "records:b" in listed.stdout
    assert "2 rooms" in listed.stdout
    shown = _cli(tmp_path, "snapshots", "show", "records:b")
    assert shown.returncode == 0
    assert "v1" in shown.stdout
    exported = _cli(tmp_path, "snapshots", "export", "records:a", "a.bin")
    assert exported.returncode == 0, exported.stderr
    doc = Doc()
    doc.apply_update((tmp_path / "a.bin").read_bytes())
    assert str(doc.get("t", type=Text)) == "alpha"
    imported = _cli(tmp_path, "snapshots", "import", "records:copy", "a.bin")
    assert imported.returncode == 0, imported.stderr
    compacted = _cli(tmp_path, "snapshots", "compact")
    assert compacted.returncode == 0
    assert "compacted" in compacted.stdout
    again = _cli(tmp_path, "snapshots", "export", "records:copy", "copy.bin")
    assert again.returncode == 0
    doc = Doc()
    doc.apply_update((tmp_path / "copy.bin").read_bytes())
    assert str(doc.get("t", type=Text)) == "alpha"


def test_verify_reports_a_corrupt_row_and_keeps_it(tmp_path: Path) -> None:
    database = _prepare(tmp_path)
    clean = _cli(tmp_path, "snapshots", "verify")
    assert clean.returncode == 0
    assert "0 problems" in clean.stdout
    connection = sqlite3.connect(database)
    with connection:
        connection.execute("UPDATE realtime_snapshots SET snapshot_data = x'00'")
    connection.close()
    dirty = _cli(tmp_path, "snapshots", "verify")
    assert dirty.returncode == 1
    assert "PROBLEM" in dirty.stdout
    assert "100%" in dirty.stderr  # the progress bar
    connection = sqlite3.connect(database)
    assert connection.execute("SELECT count(*) FROM realtime_snapshots").fetchone()[0] == 1
    connection.close()


def test_unknown_room_and_disabled_store(tmp_path: Path) -> None:
    _prepare(tmp_path)
    missing = _cli(tmp_path, "snapshots", "show", "records:nope")
    assert missing.returncode == 1
    (tmp_path / "rt.yml").write_text("snapshots:\n  enabled: false\n")
    disabled = _cli(tmp_path, "snapshots", "list")
    assert disabled.returncode == 2
    assert "no store" in disabled.stderr


def test_inspect_rebuild_and_accept_loss_of_a_damaged_room(tmp_path: Path) -> None:
    (tmp_path / "rt.yml").write_text("data_dir: data\n")
    database = tmp_path / "data" / "realtime.sqlite3"
    doc = Doc()
    text = doc.get("t", type=Text)

    def typed(words: str) -> bytes:
        before = doc.get_state()
        text.insert(len(str(text)), words)
        return doc.get_update(before)

    async def write() -> None:
        async with SqliteStore(str(database)) as store:
            await store.append([("records:lost", typed("alpha "))])
            await store.write_snapshot("records:lost", doc.get_update(), covers_seq=1)
            await store.append([("records:lost", typed("beta"))])

    trio.run(write)
    connection = sqlite3.connect(database)
    with connection:
        connection.execute("UPDATE realtime_snapshots SET snapshot_data = x'00'")
    connection.close()

    verified = _cli(tmp_path, "snapshots", "verify")
    assert verified.returncode == 1 and "DAMAGED records:lost" in verified.stdout
    inspected = _cli(tmp_path, "snapshots", "inspect", "records:lost")
    assert inspected.returncode == 1
    assert "CORRUPT" in inspected.stdout and "DAMAGED" in inspected.stdout
    assert "seq 2 to 2" in inspected.stdout
    refused = _cli(tmp_path, "snapshots", "rebuild", "records:lost")
    assert refused.returncode == 1 and "nothing written" in refused.stderr
    compacted = _cli(tmp_path, "snapshots", "compact")
    assert compacted.returncode == 1 and "DAMAGED records:lost" in compacted.stdout
    unconfirmed = _cli(tmp_path, "snapshots", "accept-loss", "records:lost")
    assert unconfirmed.returncode == 2
    connection = sqlite3.connect(database)
    assert connection.execute("SELECT count(*) FROM realtime_snapshots").fetchone()[0] == 1
    connection.close()

    accepted = _cli(tmp_path, "snapshots", "accept-loss", "records:lost", "--yes")
    assert accepted.returncode == 0, accepted.stderr
    assert "bad rows are kept" in accepted.stdout
    after = _cli(tmp_path, "snapshots", "inspect", "records:lost")
    assert after.returncode == 0 and after.stdout.rstrip().endswith("OK")
    connection = sqlite3.connect(database)
    assert connection.execute("SELECT count(*) FROM realtime_snapshots").fetchone()[0] == 2
    connection.close()


def test_rebuild_writes_what_the_daemon_would_load(tmp_path: Path) -> None:
    _prepare(tmp_path)
    connection = sqlite3.connect(tmp_path / "data" / "realtime.sqlite3")
    with connection:
        connection.execute("UPDATE realtime_snapshots SET integrity_hash = 'bad'")
    connection.close()
    # records:b's log was truncated by its only snapshot: damaged. records:a has no snapshot.
    assert _cli(tmp_path, "snapshots", "inspect", "records:b").returncode == 1
    rebuilt = _cli(tmp_path, "snapshots", "rebuild", "records:a")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "from the update log" in rebuilt.stdout
    assert _cli(tmp_path, "snapshots", "inspect", "records:a").returncode == 0


def test_export_of_an_unknown_room_is_an_error_and_writes_nothing(tmp_path: Path) -> None:
    _prepare(tmp_path)
    exported = _cli(tmp_path, "snapshots", "export", "records:doesnotexist", "f.bin")
    assert exported.returncode == 1
    assert "no stored state for 'records:doesnotexist'" in exported.stderr
    assert not (tmp_path / "f.bin").exists()


def test_verify_and_compact_work_without_tqdm(tmp_path: Path) -> None:
    """tqdm is the optional [progress] extra: without it there is no bar, the rest works."""
    _prepare(tmp_path)
    # A fresh interpreter where `import tqdm` fails, as in an install without the extra.
    without_tqdm = (
        "import sys; sys.modules['tqdm'] = None; from civicrealtime.cli import main; "
        "sys.exit(main(sys.argv[1:]))"
    )
    outputs = []
    for action in ("verify", "compact"):
        result = subprocess.run(
            [sys.executable, "-c", without_tqdm, "--config", "rt.yml", "snapshots", action],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
    assert "verified 2 rooms" in outputs[0]
    assert "compacted 2 of 2 rooms" in outputs[1]


def test_export_and_import_carry_history_from_sqlite_to_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "h.sqlite3"

    async def write() -> None:
        async with SqliteStore(str(database)) as store:
            await build(store)

    trio.run(write)
    source = tmp_path / "source.yml"
    source.write_text(f"snapshots:\n  enabled: true\n  database_url: '{database}'\n")
    target = tmp_path / "target.yml"
    target.write_text(
        f"snapshots:\n  enabled: true\n  database_url: 'filesystem:{tmp_path / 'fs'}'\n"
    )
    file = str(tmp_path / "bylaw.export")
    assert cli.main(["--config", str(source), "snapshots", "export", ROOM, file]) == 0
    assert "(state and history)" in capsys.readouterr().out
    assert cli.main(["--config", str(target), "snapshots", "import", ROOM, file]) == 0
    assert "restored its history: 3 versions" in capsys.readouterr().out
    for action in (["list", ROOM, "--json"], ["show", ROOM, "2"], ["blame", ROOM, "--json"]):
        assert cli.main(["--config", str(source), "history", *action]) == 0
        expected = capsys.readouterr().out
        assert cli.main(["--config", str(target), "history", *action]) == 0
        assert capsys.readouterr().out == expected
    # Again into the same room: the state merges, the room's own history stays as it is.
    assert cli.main(["--config", str(target), "snapshots", "import", ROOM, file]) == 0
    assert "NOT imported" in capsys.readouterr().out
