"""SQLite only: CivicPress's table, failures surfacing as StoreError, cancellation."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
import trio

from civicrealtime.persistence import (
    SqliteStore,
    StoreBusy,
    StoreError,
    StoreFull,
    StoreReadOnly,
)

from .helpers import Editor, text_of

# CivicPress's migration, as it creates the table (no compression, no log_seq).
ORIGINAL_SCHEMA = """
CREATE TABLE realtime_snapshots (
  id TEXT PRIMARY KEY,
  room_id TEXT NOT NULL,
  snapshot_data BLOB NOT NULL,
  version INTEGER NOT NULL,
  integrity_hash TEXT NOT NULL DEFAULT '',
  format_version INTEGER NOT NULL DEFAULT 1,
  byte_size INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL
);
CREATE INDEX idx_realtime_snapshots_room_id ON realtime_snapshots(room_id);
CREATE INDEX realtime_snapshots_created_at_idx ON realtime_snapshots(created_at);
"""


def civicpress_database(path: Path) -> tuple[str, str]:
    """A database as CivicPress leaves it: one hashed row, one older row without hash."""
    hashed, legacy = Editor(), Editor()
    hashed.type("from civicpress")
    legacy.type("older civicpress")
    conn = sqlite3.connect(path)
    conn.executescript(ORIGINAL_SCHEMA)
    state = hashed.state()
    conn.execute(
        "INSERT INTO realtime_snapshots VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            "records:a-3-1700000000000",
            "records:a",
            state,
            3,
            hashlib.sha256(state).hexdigest(),
            1,
            len(state),
            1700000000000,
        ),
    )
    conn.execute(
        "INSERT INTO realtime_snapshots (id, room_id, snapshot_data, version, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        ("records:b-1-1600000000000", "records:b", legacy.state(), 1, 1600000000000),
    )
    conn.commit()
    conn.close()
    return str(hashed), str(legacy)


async def test_reads_a_civicpress_database_read_only_without_changing_it(tmp_path: Path) -> None:
    path = tmp_path / "civicpress.db"
    text_a, text_b = civicpress_database(path)
    before = path.read_bytes()
    store = SqliteStore(path, read_only=True)
    await store.open()
    loaded = await store.load("records:a")
    assert loaded.snapshot is not None and loaded.snapshot.version == 3
    assert loaded.snapshot.log_seq == 0 and loaded.problems == ()
    assert text_of(loaded.updates()) == text_a
    legacy = await store.load("records:b")
    assert legacy.snapshot is not None and legacy.snapshot.integrity_hash == ""
    assert text_of(legacy.updates()) == text_b
    assert (await store.verify_all()).ok
    await store.close()
    assert path.read_bytes() == before


async def test_upgrades_a_civicpress_database_in_place(tmp_path: Path) -> None:
    path = tmp_path / "civicpress.db"
    text_a, _ = civicpress_database(path)
    store = SqliteStore(path)
    await store.open()
    editor = Editor()
    editor.doc.apply_update((await store.load("records:a")).updates()[0])
    seqs = await store.append([("records:a", editor.type(" and more"))])
    record = await store.write_snapshot("records:a", editor.state(), covers_seq=seqs[-1])
    assert record.version == 4  # after CivicPress's version 3
    await store.close()

    conn = sqlite3.connect(path)
    columns = [row[1] for row in conn.execute("PRAGMA table_info(realtime_snapshots)")]
    assert columns[:8] == [
        "id",
        "room_id",
        "snapshot_data",
        "version",
        "integrity_hash",
        "format_version",
        "byte_size",
        "created_at",
    ]
    # CivicPress's own insert still works on the upgraded table.
    conn.execute(
        "INSERT OR REPLACE INTO realtime_snapshots (id, room_id, snapshot_data, version, "
        "created_at) VALUES ('x-1-1', 'x', x'0000', 1, 1)"
    )
    conn.commit()
    conn.close()
    store = SqliteStore(path)
    await store.open()
    assert text_of((await store.load("records:a")).updates()) == text_a + " and more"
    await store.close()


async def test_read_only_database_refuses_writes_and_serves_reads(tmp_path: Path) -> None:
    path = tmp_path / "realtime.sqlite3"
    editor = Editor()
    async with SqliteStore(path) as writer:
        await writer.append([("r", editor.type("kept"))])
    store = SqliteStore(path, read_only=True)
    await store.open()
    with pytest.raises(StoreReadOnly, match="read-only"):
        await store.append([("r", editor.type("lost"))])
    with pytest.raises(StoreReadOnly):
        await store.write_snapshot("r", editor.state(), covers_seq=1)
    assert text_of((await store.load("r")).updates()) == "kept"
    await store.ping()
    await store.close()


async def test_full_database_raises_store_full(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "realtime.sqlite3")
    await store.open()
    count = await store.run_blocking(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
    await store.run_blocking(lambda c: c.execute(f"PRAGMA max_page_count = {count}"))
    with pytest.raises(StoreFull, match="full"):
        await store.append([("r", b"\x00" * 100_000)])
    await store.ping()  # the store stays usable
    await store.close()


async def test_locked_database_raises_store_busy(tmp_path: Path) -> None:
    path = tmp_path / "realtime.sqlite3"
    store = SqliteStore(path, busy_timeout=0.1)
    await store.open()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreBusy, match="locked"):
            await store.append([("r", b"\x00\x00")])
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert await store.append([("r", b"\x00\x00")]) == [1]
    await store.close()


async def test_unusable_location_raises_a_clear_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    store = SqliteStore(tmp_path / "file" / "realtime.sqlite3")
    with pytest.raises(StoreError, match="file"):
        await store.open()
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="damaged or not SQLite"):
        await SqliteStore(garbage).open()


async def test_creates_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / ".system-data" / "deeper" / "realtime.sqlite3"
    async with SqliteStore(path) as store:
        await store.ping()
    assert path.exists()


SLOW_QUERY = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000000) "
    "SELECT count(*) FROM n"
)


async def test_cancelling_a_slow_query_interrupts_it(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "realtime.sqlite3")
    await store.open()
    # Counting to 10^9 takes minutes; the bound is what this test asserts.
    with trio.fail_after(10):
        with trio.move_on_after(0.2) as scope:
            await store.run_blocking(lambda c: c.execute(SLOW_QUERY).fetchone())
        assert scope.cancelled_caught
        # The next call needs the connection, so it also proves the query has stopped.
        await store.ping()
        assert await store.append([("r", b"\x00\x00")]) == [1]
    await store.close()


async def test_cancelled_write_leaves_the_store_consistent(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "realtime.sqlite3")
    await store.open()
    editor = Editor()
    with trio.CancelScope() as scope:
        scope.cancel()
        await store.append([("r", editor.type("maybe"))])
    with trio.fail_after(10):
        seqs = await store.append([("r", editor.type(" sure"))])
    loaded = await store.load("r")
    assert [r.seq for r in loaded.log] == list(range(1, seqs[-1] + 1))
    await store.close()
