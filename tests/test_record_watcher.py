"""The published records on disk: a change made outside the daemon reaches its room."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from pycrdt import Doc, XmlFragment

from civicrealtime.records import read_fragment, write_markdown
from civicrealtime.records import watcher as watcher_module
from civicrealtime.records.source import RecordIndex
from civicrealtime.records.watcher import Edit, PublishedWatcher
from civicrealtime.rooms.edits import read_room

from .conftest import RunningServer, StartServer, make_config
from .polling import eventually
from .ydoc_client import YClient

FRONT = "---\ntitle: Record {n}\ntype: minutes\n---\n\n"
BODY = "# Record {n}\n\nFirst paragraph of {n}.\n\nSecond paragraph of {n}.\n"


def write_records(data: Path, count: int) -> list[Path]:
    folder = data / "records" / "minutes" / "2026"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(count):
        path = folder / f"r{n}.md"
        path.write_text(FRONT.format(n=n) + BODY.format(n=n))
        paths.append(path)
    return paths


async def start(start_server: StartServer, tmp_path: Path, **overrides: Any) -> RunningServer:
    config = make_config(
        data_dir=str(tmp_path / "state"),
        records={
            "data_dir": str(tmp_path / "civicpress"),
            "drafts_dir": str(tmp_path / "drafts"),
            "watch_seconds": 0.05,
        },
        **overrides,
    )
    running: RunningServer = await start_server(config)
    return running


def markdown(doc: Doc) -> str:
    return write_markdown(read_fragment(doc.get("default", type=XmlFragment)))


async def room_markdown(running: RunningServer, record: str) -> str:
    return await read_room(running.service.rooms, f"records:{record}", "records", markdown)


async def test_a_burst_of_200_files_merges_each_once(
    start_server: StartServer, tmp_path: Path
) -> None:
    paths = write_records(tmp_path / "civicpress", 200)
    running = await start(
        start_server,
        tmp_path,
        rooms={"max_rooms": 300},
        # Drafts are written after every change: they must never come back as merges.
        snapshots={"enabled": True, "max_updates": 1, "interval": 0, "flush_ms": 5},
    )
    stats = running.service.stats
    for n in range(200):  # live rooms, as if 200 records were open
        assert "First paragraph" in await room_markdown(running, f"r{n}")
    for n, path in enumerate(paths):  # a `git pull`
        path.write_text(FRONT.format(n=n) + BODY.format(n=n).replace("Second", "Pulled"))
    await eventually(lambda: stats.record_file_merges >= 200, within=30)
    for n in range(200):
        text = await room_markdown(running, f"r{n}")
        assert f"Pulled paragraph of {n}." in text
        assert f"First paragraph of {n}." in text
    drafts = tmp_path / "drafts" / "minutes"

    def drafts_hold_the_merges() -> bool:
        return (
            all(
                "Pulled paragraph" in path.read_text()
                for path in (drafts / f"r{n}.md" for n in range(200))
                if path.exists()
            )
            and len(list(drafts.glob("*.md"))) == 200
        )

    await eventually(drafts_hold_the_merges, within=30)
    # One more change: the count moves by exactly one, so nothing merged twice or looped.
    paths[7].write_text(FRONT.format(n=7) + "# Record 7\n\nOnly this now.\n")
    await eventually(lambda: stats.record_file_merges >= 201)
    assert stats.record_file_merges == 201
    assert running.service.watcher is not None
    assert running.service.watcher.merges == 201


async def test_file_change_merges_three_way_with_a_live_editor(
    start_server: StartServer, tmp_path: Path
) -> None:
    (path,) = write_records(tmp_path / "civicpress", 1)
    running = await start(start_server, tmp_path)
    editor = await YClient.connect(running.nursery, running.url("r0"))
    await editor.wait_for(lambda: "First paragraph" in markdown(editor.doc))

    def type_in_first(doc: Doc) -> None:
        paragraph = doc.get("default", type=XmlFragment).children[1]
        text = paragraph.children[0]
        text.insert(len(text), " Typed by Ada.")  # type: ignore[call-arg, union-attr]

    await editor.edit(type_in_first)
    await eventually(lambda: "Typed by Ada" in _live(running))
    # The file changes the second paragraph, and the first one too.
    path.write_text(
        FRONT.format(n=0)
        + "# Record 0\n\nFirst paragraph, from git.\n\nSecond paragraph, from git.\n"
    )
    await editor.wait_for(lambda: "from git" in markdown(editor.doc))
    text = markdown(editor.doc)
    assert "Second paragraph, from git." in text
    # Both changed the first paragraph, in different places: both changes kept.
    assert "First paragraph, from git. Typed by Ada." in text
    # Counted once the room has answered, which may be after the editor saw the change.
    await eventually(lambda: running.service.stats.record_file_merges == 1)


def _live(running: RunningServer) -> str:
    handle = running.service.rooms.get("records:r0")
    return markdown(handle.room.doc) if handle is not None else ""


async def test_a_file_that_cannot_be_read_is_reported_and_touches_nothing(
    start_server: StartServer, tmp_path: Path
) -> None:
    (path,) = write_records(tmp_path / "civicpress", 1)
    running = await start(start_server, tmp_path)
    before = await room_markdown(running, "r0")
    room = running.service.rooms.get("records:r0")
    assert room is not None
    path.write_text("---\ntitle: [broken\n---\n\n# Record 0\n\nChanged.\n")
    stats = running.service.stats
    await eventually(lambda: stats.record_file_failures == 1)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{running.service.http_port}"
    ) as client:
        health = (await client.get("/health")).json()
        assert health["status"] == "degraded"
        assert any("r0" in reason and "line" in reason for reason in health["reasons"])
        assert room.room.updates_applied == 0
        assert await room_markdown(running, "r0") == before
        # Fixed: the change since the last good text is merged, and /health is ok again.
        path.write_text(FRONT.format(n=0) + "# Record 0\n\nChanged.\n")
        await eventually(lambda: stats.record_file_merges == 1)
        assert "Changed." in await room_markdown(running, "r0")
        assert (await client.get("/health")).json()["status"] == "ok"


async def test_a_change_made_while_the_daemon_was_stopped_is_merged_at_start(
    start_server: StartServer, tmp_path: Path
) -> None:
    (path,) = write_records(tmp_path / "civicpress", 1)
    persist = {"enabled": True, "flush_ms": 5, "interval": 0}
    first = await start(start_server, tmp_path, snapshots=persist)
    editor = await YClient.connect(first.nursery, first.url("r0"))
    await editor.wait_for(lambda: "First paragraph" in markdown(editor.doc))

    def type_in_first(doc: Doc) -> None:
        paragraph = doc.get("default", type=XmlFragment).children[1]
        text = paragraph.children[0]
        text.insert(len(text), " Typed.")  # type: ignore[call-arg, union-attr]

    await editor.edit(type_in_first)
    await eventually(lambda: "Typed." in _live(first))
    first.service.shutdown()
    await first.service.stopped.wait()
    path.write_text(FRONT.format(n=0) + BODY.format(n=0).replace("Second", "Offline"))
    second = await start(start_server, tmp_path, snapshots=persist)
    await eventually(lambda: second.service.stats.record_file_merges == 1)
    text = await room_markdown(second, "r0")
    assert "Offline paragraph of 0." in text
    assert "First paragraph of 0. Typed." in text


async def test_a_room_that_cannot_load_gets_the_change_when_it_can(
    start_server: StartServer, tmp_path: Path
) -> None:
    paths = write_records(tmp_path / "civicpress", 2)
    running = await start(
        start_server,
        tmp_path,
        rooms={"max_rooms": 1},
        snapshots={"enabled": True, "flush_ms": 5, "interval": 0},
    )
    service = running.service
    await room_markdown(running, "r1")  # stored, then closed
    assert service.rooms.close("records:r1")
    await eventually(lambda: service.rooms.get("records:r1") is None)
    editor = await YClient.connect(running.nursery, running.url("r0"))  # the only room
    await editor.wait_for(lambda: "First paragraph" in markdown(editor.doc))
    paths[1].write_text(FRONT.format(n=1) + BODY.format(n=1).replace("Second", "Later"))
    await eventually(lambda: service.stats.record_file_failures >= 1)
    assert service.watcher is not None
    assert "r1" in (service.watcher.health() or "")
    assert service.stats.record_file_merges == 0
    await editor.ws.aclose()  # r0 can now make way for r1
    await eventually(lambda: service.stats.record_file_merges == 1)
    assert "Later paragraph of 1." in await room_markdown(running, "r1")
    assert service.watcher.health() is None


async def test_the_history_attributes_a_merged_file_change_to_the_filesystem(
    start_server: StartServer, tmp_path: Path
) -> None:
    # The watcher's delivery (records/delivery.py) hands its edits to the room with the
    # filesystem origin: the history says the file changed, not an anonymous user.
    [path] = write_records(tmp_path / "civicpress", 1)
    running = await start(
        start_server,
        tmp_path,
        snapshots={"enabled": True, "flush_ms": 5},
    )
    history = running.service.history
    assert history is not None
    assert "First paragraph" in await room_markdown(running, "r0")
    path.write_text(FRONT.format(n=0) + BODY.format(n=0).replace("Second", "Pulled"))
    await eventually(lambda: running.service.stats.record_file_merges >= 1, within=10)

    # The room handed the update to its hooks before the merge counted; tick writes it.
    await history.tick()
    actors = {e.origin.actor for e in await history.store.entries("records:r0")}
    assert "filesystem" in actors
    assert "user" not in actors


class Delivered:
    """A deliver callable that records the ids it was given and says each merged."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.called = trio.Event()

    async def __call__(self, edits: Sequence[tuple[str, Edit]]) -> tuple[set[str], dict[str, str]]:
        self.ids.extend(record_id for record_id, _ in edits)
        self.called.set()
        return {record_id for record_id, _ in edits}, {}


async def test_a_poll_that_fails_is_retried_and_does_not_stop_the_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A year directory removed mid-scan (a `git pull`) raised out of the watcher's task,
    which runs in the daemon's root nursery: the whole server stopped."""
    data = tmp_path / "civicpress"
    (path,) = write_records(data, 1)
    index = RecordIndex(data)
    index.scan()
    refresh = index.refresh_if_changed
    polls = 0

    def flaky() -> bool:
        nonlocal polls
        polls += 1
        if polls == 2:
            raise FileNotFoundError(2, "No such file or directory", str(path.parent))
        return refresh()

    monkeypatch.setattr(index, "refresh_if_changed", flaky)
    delivered = Delivered()
    watcher = PublishedWatcher(index, delivered, interval=0.01)
    async with trio.open_nursery() as nursery:
        await nursery.start(watcher.run)
        path.write_text(FRONT.format(n=0) + BODY.format(n=0).replace("First", "Changed"))
        with trio.fail_after(10):
            await delivered.called.wait()
        nursery.cancel_scope.cancel()
    assert polls > 2
    assert delivered.ids == ["r0"]


async def test_a_record_replaced_by_a_link_out_of_the_data_dir_is_never_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between a scan and the read of a changed file, the file became a symlink to a file
    outside the data directory: its text went into the room."""
    data = tmp_path / "civicpress"
    (path,) = write_records(data, 1)
    secret = tmp_path / "secret.md"
    secret.write_text(FRONT.format(n=0) + "# Secret\n\nnot for the room\n")
    index = RecordIndex(data)
    index.scan()
    # The rescan that would drop the link has not run yet (the race, made to last).
    monkeypatch.setattr(index, "refresh_if_changed", lambda: False)
    delivered = Delivered()
    watcher = PublishedWatcher(index, delivered, interval=0.01)
    failed = trio.Event()
    watcher.on_failure = failed.set
    async with trio.open_nursery() as nursery:
        await nursery.start(watcher.run)
        path.unlink()
        path.symlink_to(secret)
        with trio.fail_after(10):
            await failed.wait()
        nursery.cancel_scope.cancel()
    assert delivered.ids == []
    assert "link out of the data directory" in watcher.failures["r0"]


async def test_a_file_that_never_stops_changing_does_not_hold_back_the_merges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Merges waited for a poll that found no change: one file rewritten before every poll
    held back every record's merge, forever."""
    data = tmp_path / "civicpress"
    busy, quiet = write_records(data, 2)
    index = RecordIndex(data)
    index.scan()
    refresh = index.refresh_if_changed
    writes = 0

    def rewrite_then_refresh() -> bool:
        nonlocal writes
        writes += 1
        busy.write_text(FRONT.format(n=0) + BODY.format(n=0) + "x" * writes + "\n")
        return refresh()

    monkeypatch.setattr(index, "refresh_if_changed", rewrite_then_refresh)
    delivered = Delivered()
    watcher = PublishedWatcher(index, delivered, interval=0.01)
    async with trio.open_nursery() as nursery:
        await nursery.start(watcher.run)
        quiet.write_text(FRONT.format(n=1) + BODY.format(n=1).replace("First", "Changed"))
        with trio.fail_after(10):
            await delivered.called.wait()
        nursery.cancel_scope.cancel()
    assert "r1" in delivered.ids


async def test_a_parser_failure_on_one_file_is_reported_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected exception parsing one file ended the watcher's task, in the daemon's
    root nursery: the whole server stopped."""
    data = tmp_path / "civicpress"
    bad, good = write_records(data, 2)
    index = RecordIndex(data)
    index.scan()
    real = watcher_module.parse_content

    def parse(text: str) -> Any:
        if "Broken" in text:
            raise ValueError("a parser bug")
        return real(text)

    monkeypatch.setattr(watcher_module, "parse_content", parse)
    delivered = Delivered()
    watcher = PublishedWatcher(index, delivered, interval=0.01)
    async with trio.open_nursery() as nursery:
        await nursery.start(watcher.run)
        bad.write_text(FRONT.format(n=0) + "# Broken\n")
        good.write_text(FRONT.format(n=1) + BODY.format(n=1).replace("First", "Changed"))
        with trio.fail_after(10):
            await delivered.called.wait()
        nursery.cancel_scope.cancel()
    assert delivered.ids == ["r1"]
    assert "ValueError" in watcher.failures["r0"]
