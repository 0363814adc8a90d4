"""PostgreSQL only (skipped, with the reason, when the test server is unreachable)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
import trio

from civicrealtime.persistence import StoreUnavailable
from civicrealtime.persistence.postgres import PostgresStore, describe_url

from .helpers import PG_URL, Editor, text_of


async def test_cancelling_a_slow_statement_cancels_it_on_the_server(pg_schema: str) -> None:
    store = PostgresStore(PG_URL, schema=pg_schema)
    await store.open()
    with trio.fail_after(10):
        with trio.move_on_after(0.2) as scope:
            await store.run_blocking(lambda conn: conn.execute("SELECT pg_sleep(60)"))
        assert scope.cancelled_caught
        await store.ping()  # needs the connection: the statement has stopped
    await store.close()


async def test_reconnects_after_the_connection_is_lost(pg_schema: str) -> None:
    store = PostgresStore(PG_URL, schema=pg_schema)
    await store.open()
    editor = Editor()
    await store.append([("r", editor.type("before"))])
    pid = await store.run_blocking(lambda conn: conn.info.backend_pid)
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(StoreUnavailable):
        await store.append([("r", editor.type(" lost"))])
    await store.append([("r", editor.type(" after"))])
    assert text_of((await store.load("r")).updates()).startswith("before")
    await store.close()


async def test_unreachable_server_raises_store_unavailable() -> None:
    store = PostgresStore("postgresql://nobody:secret@127.0.0.1:1/none", connect_timeout=1)
    with pytest.raises(StoreUnavailable, match="cannot connect") as caught:
        await store.open()
    assert "secret" not in str(caught.value)


def test_description_hides_the_password() -> None:
    assert describe_url("postgresql://u:pw@db.example:5433/civic") == (
        "postgresql://u@db.example:5433/civic"
    )


async def test_tables_match_the_sqlite_columns(pg_schema: str) -> None:
    store = PostgresStore(PG_URL, schema=pg_schema)
    await store.open()

    def columns(conn: Any) -> list[tuple[str, str]]:
        rows = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = 'realtime_snapshots' "
            "ORDER BY ordinal_position",
            (pg_schema,),
        ).fetchall()
        return [(str(name), str(kind)) for name, kind in rows]

    assert await store.run_blocking(columns) == [
        ("id", "text"),
        ("room_id", "text"),
        ("snapshot_data", "bytea"),
        ("version", "integer"),
        ("integrity_hash", "text"),
        ("format_version", "integer"),
        ("byte_size", "bigint"),
        ("created_at", "bigint"),
        ("compression", "text"),
        ("log_seq", "bigint"),
    ]
    await store.close()
