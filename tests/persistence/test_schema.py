"""The schema version every store records and checks when it is opened (schema.py)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import psycopg
import pytest
import trio
from psycopg import sql

from civicrealtime.app import RealtimeService
from civicrealtime.persistence import FilesystemStore, SqliteStore
from civicrealtime.persistence.schema import SCHEMA_VERSION, SchemaMismatch
from civicrealtime.startup import StoreSetupError

from ..conftest import make_config
from .conftest import MakeStore
from .helpers import PG_URL

NEWER = SCHEMA_VERSION + 1


def read_version(kind: str, tmp_path: Path, schema: str) -> object:
    """What the store records, read around the store; None when nothing is recorded."""
    if kind == "filesystem":
        path = tmp_path / "fs" / "realtime" / "schema.json"
        return json.loads(path.read_text())["schema_version"] if path.exists() else None
    if kind == "sqlite":
        with sqlite3.connect(tmp_path / "db" / "realtime.sqlite3") as conn:
            tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if "realtime_schema" not in {name for (name,) in tables}:
                return None
            rows = conn.execute("SELECT version FROM realtime_schema WHERE name = 'realtime'")
            return next(iter(rows), (None,))[0]
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        (table,) = conn.execute("SELECT to_regclass('realtime_schema')::text").fetchone() or (None,)
        if table is None:
            return None
        row = conn.execute("SELECT version FROM realtime_schema WHERE name = 'realtime'").fetchone()
        return row[0] if row else None


def write_version(kind: str, tmp_path: Path, schema: str, version: object) -> None:
    """Record `version` (None: remove the record, as in a store from before versions)."""
    if kind == "filesystem":
        path = tmp_path / "fs" / "realtime" / "schema.json"
        if version is None:
            path.unlink()
        else:
            path.write_text(json.dumps({"schema_version": version}))
        return
    if kind == "sqlite":
        with sqlite3.connect(tmp_path / "db" / "realtime.sqlite3") as conn:
            if version is None:
                conn.execute("DROP TABLE realtime_schema")
            else:
                conn.execute("UPDATE realtime_schema SET version = ?", (version,))
        return
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        if version is None:
            conn.execute("DROP TABLE realtime_schema")
        else:
            conn.execute("UPDATE realtime_schema SET version = %s", (version,))


async def test_a_new_store_records_the_current_version(
    make_store: MakeStore, backend: tuple[str, str], tmp_path: Path
) -> None:
    kind, schema = backend
    await make_store()
    assert read_version(kind, tmp_path, schema) == SCHEMA_VERSION


async def test_a_store_from_before_versions_is_stamped_and_keeps_its_data(
    make_store: MakeStore, backend: tuple[str, str], tmp_path: Path
) -> None:
    kind, schema = backend
    store = await make_store()
    await store.append([("records:kept", b"\x00\x00")])
    await store.close()
    write_version(kind, tmp_path, schema, None)
    reopened = await make_store()
    assert read_version(kind, tmp_path, schema) == SCHEMA_VERSION
    loaded = await reopened.load("records:kept")
    assert [record.data for record in loaded.log] == [b"\x00\x00"]


async def test_a_newer_store_refuses_to_open_and_is_left_alone(
    make_store: MakeStore, backend: tuple[str, str], tmp_path: Path
) -> None:
    kind, schema = backend
    store = await make_store()
    await store.append([("records:kept", b"\x00\x00")])
    await store.close()
    write_version(kind, tmp_path, schema, NEWER)
    with pytest.raises(SchemaMismatch) as refused:
        await make_store()
    message = str(refused.value)
    assert f"schema version {NEWER}" in message
    assert f"knows versions up to {SCHEMA_VERSION}" in message
    assert "Run the newer release again" in message
    assert "restore the backup" in message
    assert read_version(kind, tmp_path, schema) == NEWER  # not downgraded
    # Put back, it opens with its data.
    write_version(kind, tmp_path, schema, SCHEMA_VERSION)
    reopened = await make_store()
    assert (await reopened.load("records:kept")).log


@pytest.mark.parametrize("bad", [0, -3, "two"])
async def test_an_unknown_version_refuses_to_open(
    make_store: MakeStore, backend: tuple[str, str], tmp_path: Path, bad: object
) -> None:
    kind, schema = backend
    if kind == "postgres" and isinstance(bad, str):
        bad = -7  # PostgreSQL's INTEGER column cannot hold text
    store = await make_store()
    await store.close()
    write_version(kind, tmp_path, schema, bad)
    with pytest.raises(SchemaMismatch, match="which no civicrealtime writes"):
        await make_store()


async def test_an_unreadable_schema_file_refuses_to_open(tmp_path: Path) -> None:
    async with FilesystemStore(tmp_path):
        pass
    (tmp_path / "realtime" / "schema.json").write_text("{not json")
    with pytest.raises(SchemaMismatch, match="is not a schema file"):
        await FilesystemStore(tmp_path).open()


async def test_read_only_stores_check_but_never_record(tmp_path: Path) -> None:
    database = tmp_path / "db.sqlite3"
    sqlite3.connect(database).close()  # an empty database, as CivicPress may have it
    async with SqliteStore(database, read_only=True) as store:
        assert await store.list_rooms() == []
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)
    async with SqliteStore(database):
        pass
    with sqlite3.connect(database) as conn:
        conn.execute("UPDATE realtime_schema SET version = ?", (NEWER,))
    with pytest.raises(SchemaMismatch, match=f"schema version {NEWER}"):
        await SqliteStore(database, read_only=True).open()
    async with FilesystemStore(tmp_path / "fs"):
        pass
    (tmp_path / "fs" / "realtime" / "schema.json").write_text('{"schema_version": 9}')
    with pytest.raises(SchemaMismatch, match="schema version 9"):
        await FilesystemStore(tmp_path / "fs", read_only=True).open()


async def test_a_bare_civicpress_table_is_migrated(tmp_path: Path) -> None:
    """Version 0 to 1: CivicPress's snapshots table, without our columns and tables."""
    database = tmp_path / "civicpress.sqlite3"
    with sqlite3.connect(database) as conn:
        conn.execute(
            "CREATE TABLE realtime_snapshots (id TEXT PRIMARY KEY, room_id TEXT NOT NULL, "
            "snapshot_data BLOB NOT NULL, version INTEGER NOT NULL, integrity_hash TEXT NOT "
            "NULL DEFAULT '', format_version INTEGER NOT NULL DEFAULT 1, byte_size INTEGER "
            "NOT NULL DEFAULT 0, created_at INTEGER NOT NULL)"
        )
    async with SqliteStore(database) as store:
        assert await store.list_rooms() == []
    with sqlite3.connect(database) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(realtime_snapshots)")}
        (version,) = conn.execute("SELECT version FROM realtime_schema").fetchone()
    assert {"compression", "log_seq"} <= columns
    assert version == SCHEMA_VERSION


async def test_the_daemon_refuses_to_start_on_a_newer_store(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "realtime.sqlite3"):
        pass
    with sqlite3.connect(tmp_path / "realtime.sqlite3") as conn:
        conn.execute("UPDATE realtime_schema SET version = ?", (NEWER,))
    config = make_config(data_dir=str(tmp_path), snapshots={"enabled": True})
    service = RealtimeService(config, hmac_secret=b"s" * 48)
    refused = pytest.RaisesGroup(
        pytest.RaisesExc(StoreSetupError, match=f"schema version {NEWER}"),
        flatten_subgroups=True,
    )
    with trio.fail_after(10), refused:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
