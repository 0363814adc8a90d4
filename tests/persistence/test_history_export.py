"""`snapshots export` / `import` carry a room's history from any store kind to any other."""

from __future__ import annotations

import argparse
import io
import json
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, XmlFragment

from civicrealtime.cli import history as history_cli
from civicrealtime.history_blame import changed_blocks
from civicrealtime.history_read import HistoryReader
from civicrealtime.persistence import FilesystemStore, SqliteStore, Store
from civicrealtime.persistence.historyexport import MAGIC, export_room, import_room
from civicrealtime.persistence.historyrecorder import HistoryRecorder
from civicrealtime.persistence.historystores import history_for
from civicrealtime.persistence.postgres import PostgresStore
from civicrealtime.records.to_markdown import fragment_to_markdown
from civicrealtime.records.to_yjs import markdown_to_fragment
from civicrealtime.rooms.origin import Origin

from .conftest import MakeStore, postgres_or_skip
from .helpers import PG_URL

ROOM = "records:bylaw"


async def build(store: Store) -> str:
    """Three users over three versions, in the document store and in its history."""
    history = history_for(store)
    assert history is not None
    recorder = HistoryRecorder(history, node="n1", analyse=changed_blocks)
    doc: Doc[Any] = Doc()
    fragment = doc.get("default", type=XmlFragment)

    async def edit(user: str, change: Any) -> None:
        before = doc.get_state()
        with doc.transaction():
            change()
        update = doc.get_update(before)
        await store.append([(ROOM, update)])
        recorder.received(ROOM, update, Origin(sub=user, name=user.title()))
        await recorder.close_version(ROOM, "idle")

    await edit("alice", lambda: markdown_to_fragment("# Bylaw\n\nOne.\n\nTwo.\n", fragment))

    def bang() -> None:
        text = fragment.children[2].children[0]
        del text[3:4]
        text.insert(3, "!")

    await edit("bob", bang)
    await edit("carol", lambda: fragment.children[1].children[0].insert(0, "Article "))
    return fragment_to_markdown(fragment)


async def answers(store: Store, room: str = ROOM) -> list[str]:
    """What `history list`, `show` (each version), `diff` and `blame` print for the room."""
    history = history_for(store)
    assert history is not None
    reader = HistoryReader(history)
    out: list[str] = []

    async def cli(action: Any, **args: Any) -> None:
        buffer = io.StringIO()
        with redirect_stdout(buffer):
            assert await action(reader, argparse.Namespace(room=room, **args)) == 0
        out.append(buffer.getvalue())

    await cli(history_cli._list, since=None, until=None, user=None, json=True)
    for number in (1, 2, 3):
        await cli(history_cli._show, version=number)
    await cli(history_cli._diff, a=1, b=3)
    await cli(history_cli._blame, json=True)
    return out


async def open_target(kind: str, tmp_path: Path, schema: str) -> Store:
    store: Store
    if kind == "sqlite":
        store = SqliteStore(tmp_path / "target.sqlite3")
    elif kind == "filesystem":
        store = FilesystemStore(tmp_path / "target-fs")
    else:
        store = PostgresStore(PG_URL, schema=schema)
    await store.open()
    return store


@pytest.fixture(params=["sqlite", "filesystem", "postgres"])
def target(request: pytest.FixtureRequest) -> tuple[str, str]:
    kind: str = request.param
    if kind == "postgres":
        postgres_or_skip()
        return kind, request.getfixturevalue("pg_schema")
    return kind, ""


async def test_export_from_one_kind_imports_into_another_with_the_same_history(
    make_store: MakeStore, target: tuple[str, str], tmp_path: Path
) -> None:
    source = await make_store()
    text = await build(source)
    expected = await answers(source)
    assert [v["version"] for v in json.loads(expected[0])] == [1, 2, 3]
    assert {b["user"] for b in json.loads(expected[-1])} == {"alice", "bob", "carol"}
    data = await export_room(source, ROOM)
    assert data.startswith(MAGIC)

    kind, schema = target
    store = await open_target(kind, tmp_path, schema)
    try:
        done = await import_room(store, "records:copy", data)
        assert (done.versions, done.history_skipped) == (3, False)
        assert await answers(store, "records:copy") == expected
        state = await store.export_state("records:copy")
        doc: Doc[Any] = Doc()
        doc.apply_update(state)
        assert fragment_to_markdown(doc.get("default", type=XmlFragment)) == text

        # A second import into the same room merges the state but leaves history alone.
        again = await import_room(store, "records:copy", data)
        assert (again.versions, again.history_skipped) == (0, True)
        history = history_for(store)
        assert history is not None
        assert len(await history.versions("records:copy")) == 3
    finally:
        await store.close()


async def test_a_room_without_history_exports_a_plain_yjs_update_that_still_imports(
    make_store: MakeStore, tmp_path: Path
) -> None:
    store = await make_store()
    doc: Doc[Any] = Doc()
    with doc.transaction():
        markdown_to_fragment("Plain.\n", doc.get("default", type=XmlFragment))
    await store.append([("records:plain", doc.get_update())])
    data = await export_room(store, "records:plain")
    assert not data.startswith(MAGIC)
    assert data == await store.export_state("records:plain")
    done = await import_room(store, "records:other", data)
    assert (done.versions, done.history_skipped) == (0, False)
    history = history_for(store)
    assert history is not None
    assert await history.versions("records:other") == []
    copy: Doc[Any] = Doc()
    copy.apply_update(await store.export_state("records:other"))
    assert fragment_to_markdown(copy.get("default", type=XmlFragment)) == "Plain.\n"
