"""HistoryRecorder: attributed entries, versions closed on quiet, eviction and shutdown."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Text

from civicrealtime.persistence import SqliteStore, Store, StoreUnavailable, historyrecorder
from civicrealtime.persistence.history import Entry, HistoryStore, Version, rebuild_version
from civicrealtime.persistence.historyrecorder import HistoryRecorder
from civicrealtime.persistence.historystores import history_for
from civicrealtime.rooms.origin import Origin

from .conftest import MakeStore
from .helpers import Editor, text_of

ALICE = Origin(sub="alice", name="Alice", conn_id=1)
BOB = Origin(sub="bob", name="Bob", conn_id=2)


def history_of(store: Store) -> HistoryStore:
    history = history_for(store)
    assert history is not None
    return history


async def test_a_version_closes_after_quiet_with_its_authors_and_state(
    make_store: MakeStore, mock_clock: trio.testing.MockClock
) -> None:
    history = history_of(await make_store())
    recorder = HistoryRecorder(history, node="n1", version_idle=120)
    editor = Editor()
    recorder.received("records:a", editor.type("one "), ALICE)
    recorder.received("records:a", editor.type("two "), BOB)
    recorder.received("records:a", editor.type("three"), ALICE)
    await recorder.tick()
    assert [e.origin.author for e in await history.entries("records:a")] == [
        "alice",
        "bob",
        "alice",
    ]
    assert await history.versions("records:a") == []  # not quiet long enough yet
    mock_clock.jump(119)
    await recorder.tick()
    assert await history.versions("records:a") == []
    mock_clock.jump(1)
    await recorder.tick()
    (version,) = await history.versions("records:a")
    assert (version.number, version.first_seq, version.last_seq) == (1, 1, 3)
    assert version.reason == "idle"
    assert [(a.author, a.name, a.changes) for a in version.authors] == [
        ("alice", "Alice", 2),
        ("bob", "Bob", 1),
    ]
    state = await state_of(history, "records:a", 1)
    assert state is not None and text_of([state]) == "one two three"
    # Quiet again, nothing new: no empty version.
    mock_clock.jump(500)
    await recorder.tick()
    assert len(await history.versions("records:a")) == 1


async def test_eviction_and_shutdown_close_versions(
    make_store: MakeStore, mock_clock: trio.testing.MockClock
) -> None:
    history = history_of(await make_store())
    recorder = HistoryRecorder(history, node="n1", version_idle=120)
    editor = Editor()
    recorder.received("records:a", editor.type("kept "), ALICE)
    recorder.forget("records:a")
    await recorder.tick()
    other = Editor()
    async with trio.open_nursery() as nursery:
        await nursery.start(recorder.run)
        recorder.received("records:a", editor.type("more"), BOB)
        recorder.received("records:b", other.type("b"), BOB)
        nursery.cancel_scope.cancel()
    first, second = await history.versions("records:a")
    assert (first.reason, second.reason) == ("evicted", "shutdown")
    assert second.first_seq == 2
    state = await state_of(history, "records:a", 2)
    assert state is not None and text_of([state]) == "kept more"
    assert [v.reason for v in await history.versions("records:b")] == ["shutdown"]


async def test_a_room_with_content_from_before_history_gets_a_baseline(
    make_store: MakeStore,
) -> None:
    history = history_of(await make_store())
    recorder = HistoryRecorder(history, node="n1")
    editor = Editor()
    old = editor.type("from before ")
    recorder.loaded("records:a", [old])
    recorder.received("records:a", editor.type("and after"), ALICE)
    closed = await recorder.close_version("records:a", "cut")
    baseline, version = await history.versions("records:a")
    assert closed == version
    assert baseline.reason == "baseline"
    assert [a.author for a in baseline.authors] == ["import"]
    state = await state_of(history, "records:a", 2)
    assert state is not None and text_of([state]) == "from before and after"
    # A room that already has versions gets no second baseline.
    recorder.loaded("records:a", [old])
    await recorder.tick()
    assert len(await history.versions("records:a")) == 2


async def state_of(history: HistoryStore, room: str, number: int) -> bytes:
    state, _ = await rebuild_version(history, await history.versions(room), number)
    return state


class Failing:
    """A history store whose writes fail while `down`."""

    def __init__(self, inner: HistoryStore) -> None:
        self.inner = inner
        self.down = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def append_entries(self, entries: Sequence[Entry]) -> list[int]:
        if self.down:
            raise StoreUnavailable("history store down")
        return await self.inner.append_entries(entries)

    async def add_versions(self, items: Any) -> list[bool]:
        if self.down:
            raise StoreUnavailable("history store down")
        return await self.inner.add_versions(items)


async def test_a_failing_store_keeps_entries_for_the_next_tick(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "h.sqlite3") as store:
        failing = Failing(history_of(store))
        recorder = HistoryRecorder(failing, node="n1")  # type: ignore[arg-type]
        editor = Editor()
        recorder.received("records:a", editor.type("x"), ALICE)
        await recorder.tick()
        assert not recorder.healthy
        assert recorder.last_error == "history store down"
        failing.down = False
        recorder.received("records:a", editor.type("y"), BOB)
        await recorder.tick()
        assert recorder.healthy
        entries = await failing.inner.entries("records:a")
        assert [e.origin.author for e in entries] == ["alice", "bob"]


# -- property: any version, plus the updates after it, is today's document ----------------

edits = st.lists(
    st.tuples(
        st.sampled_from(["alice", "bob", "carol"]),
        st.sampled_from(["type", "delete", "cut"]),
        st.text(alphabet="abc xyz", min_size=1, max_size=4),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=edits)
def test_rebuilding_any_version_then_replaying_later_updates_gives_today(
    script: list[tuple[str, str, str]],
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        trio.run(_replay_property, Path(directory), script)


async def _replay_property(directory: Path, script: list[tuple[str, str, str]]) -> None:
    async with SqliteStore(directory / "h.sqlite3") as store:
        history = history_of(store)
        recorder = HistoryRecorder(history, node="n1")
        editors = {name: Editor() for name in ("alice", "bob", "carol")}
        live: Doc[Any] = Doc()
        for name, action, words in script:
            editor = editors[name]
            editor.doc.apply_update(live.get_update(editor.doc.get_state()))
            if action == "cut":
                await recorder.close_version("records:a", "cut")
                continue
            if action == "delete" and str(editor.text):
                update = editor.delete(0, min(len(words), len(str(editor.text))))
            else:
                update = editor.type(words)
            live.apply_update(update)
            recorder.received("records:a", update, Origin(sub=name))
        await recorder.close_version("records:a", "cut")
        today = str(live.get("t", type=Text))
        entries = await history.entries("records:a")
        versions = await history.versions("records:a")
        for version in versions:
            state, _ = await rebuild_version(history, versions, version.number)
            later = [e.data for e in entries if e.seq > version.last_seq]
            assert text_of([state, *later]) == today


async def test_only_checkpoints_keep_a_state_and_others_are_rebuilt(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(historyrecorder, "CHECKPOINT_UPDATES", 3)
    history = history_of(await make_store())
    recorder = HistoryRecorder(history, node="n1")
    editor = Editor()
    texts = []
    for burst in range(5):
        for word in ("a", "b"):
            recorder.received("records:a", editor.type(f"{burst}{word} "), ALICE)
        await recorder.close_version("records:a", "cut")
        texts.append(str(editor))
    versions = await history.versions("records:a")
    stored = [bool(await history.version_state("records:a", v.number)) for v in versions]
    # The first; then once 3 updates or more were recorded since the last checkpoint.
    assert stored == [True, False, True, False, True]
    for version, text in zip(versions, texts, strict=True):
        state, checkpoint = await rebuild_version(history, versions, version.number)
        assert text_of([state]) == text
        assert checkpoint.number <= version.number
    # Retention keeps the checkpoint that rebuilds the oldest version it keeps.
    assert await history.prune(before_ms=versions[3].ended_ms) == 2
    kept = await history.versions("records:a")
    assert [v.number for v in kept] == [3, 4, 5]
    state, _ = await rebuild_version(history, kept, 4)
    assert text_of([state]) == texts[3]


async def test_the_buffer_is_bounded_while_the_store_fails(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "h.sqlite3") as store:
        failing = Failing(history_of(store))
        recorder = HistoryRecorder(failing, node="n1", max_buffer_bytes=400)  # type: ignore[arg-type]
        editor = Editor()
        updates = [editor.type(f"word{i} ") for i in range(40)]
        for update in updates:
            recorder.received("records:a", update, ALICE)
            await recorder.tick()
        assert recorder.entries_shed > 0
        assert recorder._buffered_bytes <= 400
        failing.down = False
        await recorder.tick()
        entries = await failing.inner.entries("records:a")
        # The newest are kept, in order; the oldest were shed.
        assert len(entries) == 40 - recorder.entries_shed
        assert [e.data for e in entries] == updates[recorder.entries_shed :]


async def test_the_bound_counts_entries_not_only_their_bytes(tmp_path: Path) -> None:
    """Empty updates are 2 bytes: counting data alone, 10,000 of them never reached a
    64 KiB bound, and each kept an Entry of a few hundred bytes alive."""
    async with SqliteStore(tmp_path / "h.sqlite3") as store:
        failing = Failing(history_of(store))
        recorder = HistoryRecorder(failing, node="n1", max_buffer_bytes=64 * 1024)  # type: ignore[arg-type]
        for _ in range(10_000):
            recorder.received("records:a", b"\x00\x00", ALICE)
        await recorder.tick()
        assert recorder.entries_shed > 0
        assert len(recorder._buffer) * historyrecorder.ENTRY_OVERHEAD <= 64 * 1024


async def test_content_history_never_saw_is_recorded_as_an_import(make_store: MakeStore) -> None:
    history = history_of(await make_store())
    recorder = HistoryRecorder(history, node="n1")
    editor = Editor()
    recorder.received("records:a", editor.type("seen "), ALICE)
    await recorder.close_version("records:a", "cut")
    # Loaded as history knows it: nothing to add.
    recorder.loaded("records:a", [editor.state()])
    await recorder.tick()
    assert len(await history.entries("records:a")) == 1
    # `snapshots import` (or a shed entry) put content in the document store only.
    editor.type("unseen")
    recorder.loaded("records:a", [editor.state()])
    recorder.received("records:a", editor.type("!"), BOB)
    await recorder.close_version("records:a", "cut")
    entries = await history.entries("records:a")
    assert [e.origin.author for e in entries] == ["alice", "import", "bob"]
    assert text_of([entries[1].data, *[e.data for e in entries[:1]]]) == "seen unseen"
    assert text_of([await state_of(history, "records:a", 2)]) == "seen unseen!"


class Stale:
    """A history store whose first `versions` answer misses what another node just wrote."""

    def __init__(self, inner: HistoryStore) -> None:
        self.inner = inner
        self.stale = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def versions(self, room_id: str) -> list[Version]:
        if self.stale:
            self.stale = False
            return []
        return await self.inner.versions(room_id)


async def test_a_version_another_node_closed_first_is_left_to_it(make_store: MakeStore) -> None:
    history = history_of(await make_store())
    first = HistoryRecorder(history, node="n1")
    second = HistoryRecorder(Stale(history), node="n2")  # type: ignore[arg-type]
    editor = Editor()
    first.received("records:a", editor.type("one "), ALICE)
    await first.close_version("records:a", "cut")
    second.received("records:a", editor.type("two"), BOB)
    assert await second.close_version("records:a", "cut") is None  # number 1 was taken
    closed = await second.close_version("records:a", "cut")
    assert closed is not None and closed.number == 2
    assert [[a.author for a in v.authors] for v in await history.versions("records:a")] == [
        ["alice"],
        ["bob"],
    ]
    assert text_of([await state_of(history, "records:a", 2)]) == "one two"
