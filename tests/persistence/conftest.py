from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from civicrealtime.persistence import FilesystemStore, SqliteStore, Store
from civicrealtime.persistence.postgres import PostgresStore

from .helpers import PG_URL, FakeClock, Tamper, unique_schema

_pg_unreachable: list[str] = []


def postgres_or_skip() -> None:
    """Skip, saying why, when the test server cannot be reached (checked once per run)."""
    if not _pg_unreachable:
        try:
            with psycopg.connect(PG_URL, connect_timeout=2):
                pass
            _pg_unreachable.append("")
        except Exception as exc:  # any failure to connect means: no server for these tests
            _pg_unreachable.append(f"PostgreSQL not reachable at {PG_URL}: {exc}")
    if _pg_unreachable[0]:
        pytest.skip(_pg_unreachable[0])


@pytest.fixture
def pg_schema() -> Iterator[str]:
    postgres_or_skip()
    schema = unique_schema()
    yield schema
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


MakeStore = Callable[..., Awaitable[Store]]


@pytest.fixture(params=["sqlite", "filesystem", "postgres"])
def backend(request: pytest.FixtureRequest) -> tuple[str, str]:
    """The store kind, and for PostgreSQL a fresh schema (a sync fixture, so that a skip
    keeps its reason in the report)."""
    kind: str = request.param
    return kind, request.getfixturevalue("pg_schema") if kind == "postgres" else ""


@pytest.fixture
async def make_store(
    backend: tuple[str, str], tmp_path: Path, clock: FakeClock
) -> AsyncIterator[MakeStore]:
    """Opens stores of the parametrized kind; a second call reopens the same data."""
    kind, schema = backend
    opened: list[Store] = []

    async def make(**options: Any) -> Store:
        options.setdefault("clock", clock)
        store: Store
        if kind == "sqlite":
            store = SqliteStore(tmp_path / "db" / "realtime.sqlite3", **options)
        elif kind == "filesystem":
            store = FilesystemStore(tmp_path / "fs", **options)
        else:
            store = PostgresStore(PG_URL, schema=schema, **options)
        await store.open()
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


@pytest.fixture
async def store(make_store: MakeStore) -> Store:
    return await make_store()


@pytest.fixture
def tamper(store: Store, request: pytest.FixtureRequest) -> Tamper:
    kind = request.node.callspec.params["backend"]
    return Tamper(kind, store)
