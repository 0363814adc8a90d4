"""History stores (history.py, historysql.py, historyfs.py): on all three backends."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import attrs
import psycopg
from psycopg import sql

from civicrealtime.persistence import Store
from civicrealtime.persistence.history import Author, Entry, HistoryStore, Version, client_ids
from civicrealtime.persistence.historystores import history_for as _history_for
from civicrealtime.persistence.schema import SCHEMA_VERSION
from civicrealtime.rooms.origin import Origin

from .conftest import MakeStore
from .helpers import PG_URL, Editor, text_of
from .test_schema import read_version, write_version


def history_for(store: Store) -> HistoryStore:
    history = _history_for(store)
    assert history is not None
    return history


ALICE = Origin(sub="alice", name="Alice Martin", conn_id=7)
BOB = Origin(sub="bob", conn_id=8)


def entry(room: str, origin: Origin, data: bytes, at: int = 1000) -> Entry:
    return Entry(
        room_id=room,
        seq=0,
        at_ms=at,
        origin=origin,
        node="node-a",
        client_ids=client_ids(data),
        data=data,
    )


def test_client_ids_are_those_of_the_structs() -> None:
    alice, bob = Editor(), Editor()
    update = alice.type("hello")
    assert client_ids(update) == (alice.doc.client_id,)
    bob.doc.apply_update(update)
    assert client_ids(bob.delete(0, 2)) == ()  # a delete-only update carries no struct


async def test_entries_keep_who_when_where_and_map_client_ids(make_store: MakeStore) -> None:
    store = await make_store()
    history = history_for(store)
    alice, bob = Editor(), Editor()
    a1 = alice.type("one ")
    bob.doc.apply_update(a1)
    b1 = bob.type("two")
    seqs = await history.append_entries(
        [entry("records:a", ALICE, a1), entry("records:b", BOB, b1), entry("records:a", BOB, b1)]
    )
    assert seqs == [1, 1, 2]
    assert await history.append_entries([entry("records:a", ALICE, alice.type("!"))]) == [3]
    stored = await history.entries("records:a")
    assert [e.seq for e in stored] == [1, 2, 3]
    first = stored[0]
    assert first.origin == ALICE
    assert (first.at_ms, first.node, first.data) == (1000, "node-a", a1)
    assert first.client_ids == (alice.doc.client_id,)
    assert [e.seq for e in await history.entries("records:a", after_seq=2)] == [3]
    assert await history.last_seq("records:a") == 3
    owners = await history.clients("records:a")
    assert owners[alice.doc.client_id].author == "alice"
    assert owners[alice.doc.client_id].name == "Alice Martin"
    assert owners[bob.doc.client_id].author == "bob"
    # The first claim of a client id wins: a later update with it does not re-attribute.
    await history.append_entries([entry("records:a", BOB, a1)])
    assert (await history.clients("records:a"))[alice.doc.client_id].author == "alice"


async def test_versions_keep_their_range_authors_and_state(make_store: MakeStore) -> None:
    store = await make_store()
    history = history_for(store)
    editor = Editor()
    editor.type("v1")
    version = Version(
        room_id="records:a",
        number=1,
        started_ms=10,
        ended_ms=20,
        first_seq=1,
        last_seq=4,
        reason="idle",
        authors=(Author(author="alice", name="Alice", changes=3), Author("bob", None, 1)),
    )
    assert await history.add_version(version, editor.state())
    assert await history.versions("records:a") == [version]
    # Another node closing the same number later writes nothing.
    other = Editor()
    other.type("other")
    assert not await history.add_version(attrs.evolve(version, last_seq=9), other.state())
    assert await history.versions("records:b") == []
    state = await history.version_state("records:a", 1)
    assert state is not None and text_of([state]) == "v1"
    assert await history.version_state("records:a", 2) is None


async def test_compaction_and_sweep_never_touch_history(make_store: MakeStore) -> None:
    store = await make_store(keep=1)
    history = history_for(store)
    editor = Editor()
    updates = [editor.type(f"w{i} ") for i in range(5)]
    await store.append([("records:a", u) for u in updates])
    await history.append_entries([entry("records:a", ALICE, u) for u in updates])
    await store.compact("records:a")
    await store.compact("records:a")
    assert await store.sweep(older_than_ms=2**62, live_rooms=set()) == 1
    assert await store.list_rooms() == []
    assert [e.data for e in await history.entries("records:a")] == updates


async def test_prune_drops_old_versions_but_never_the_newest(make_store: MakeStore) -> None:
    store = await make_store()
    history = history_for(store)
    editor = Editor()
    seq = 0
    for number, ended in ((1, 100), (2, 200), (3, 300)):
        updates = [editor.type(f"{number}.{i} ") for i in range(2)]
        await history.append_entries([entry("records:a", ALICE, u, at=ended) for u in updates])
        version = Version(
            room_id="records:a",
            number=number,
            started_ms=ended,
            ended_ms=ended,
            first_seq=seq + 1,
            last_seq=seq + 2,
            reason="idle",
            authors=(Author("alice", None, 2),),
        )
        seq += 2
        await history.add_version(version, editor.state())
    assert await history.prune(before_ms=250) == 2  # versions 1 and 2
    assert [v.number for v in await history.versions("records:a")] == [3]
    assert [e.seq for e in await history.entries("records:a")] == [5, 6]
    assert await history.version_state("records:a", 1) is None
    # Everything is older than the cutoff now: the newest version stays all the same.
    assert await history.prune(before_ms=10_000) == 0
    assert [v.number for v in await history.versions("records:a")] == [3]


async def test_a_version_1_store_is_migrated_to_2_with_empty_history(
    make_store: MakeStore, backend: tuple[str, str], tmp_path: Path
) -> None:
    kind, schema = backend
    store = await make_store()
    editor = Editor()
    await store.append([("records:kept", editor.type("before history"))])
    await store.close()
    _downgrade_to_1(kind, tmp_path, schema)
    assert read_version(kind, tmp_path, schema) == 1
    reopened = await make_store()
    assert read_version(kind, tmp_path, schema) == SCHEMA_VERSION == 2
    assert text_of((await reopened.load("records:kept")).updates()) == "before history"
    history = history_for(reopened)
    assert await history.versions("records:kept") == []
    assert await history.append_entries([entry("records:kept", ALICE, editor.type("!"))]) == [1]


def _downgrade_to_1(kind: str, tmp_path: Path, schema: str) -> None:
    """Make the store look like one schema-1 code wrote: no history, version 1."""
    tables = ("realtime_history_updates", "realtime_history_versions", "realtime_history_clients")
    if kind == "filesystem":
        shutil.rmtree(tmp_path / "fs" / "realtime" / "history")
    elif kind == "sqlite":
        with sqlite3.connect(tmp_path / "db" / "realtime.sqlite3") as conn:
            for table in tables:
                conn.execute(f"DROP TABLE {table}")
    else:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            for table in tables:
                conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))
    write_version(kind, tmp_path, schema, 1)
    if kind == "filesystem":
        assert json.loads((tmp_path / "fs" / "realtime" / "schema.json").read_text()) == {
            "schema_version": 1
        }


async def test_a_read_only_version_1_sqlite_store_reads_as_empty_history(
    tmp_path: Path,
) -> None:
    from civicrealtime.persistence import SqliteStore  # noqa: PLC0415

    path = tmp_path / "db" / "realtime.sqlite3"
    async with SqliteStore(path):
        pass
    _downgrade_to_1("sqlite", tmp_path, "")
    store: Store
    async with SqliteStore(path, read_only=True) as store:
        assert await history_for(store).versions("records:a") == []
