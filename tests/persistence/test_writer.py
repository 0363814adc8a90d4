"""StoreWriter: group commit, retry with backoff, coverage of snapshots, shutdown."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from civicrealtime.persistence import (
    Problem,
    SqliteStore,
    StoreError,
    StoreTimeout,
    StoreWriter,
)

from .fakes import FakeStore
from .helpers import Editor, text_of


@pytest.fixture
def fake() -> FakeStore:
    return FakeStore()


@pytest.fixture
async def running(
    fake: FakeStore, nursery: trio.Nursery
) -> AsyncIterator[tuple[StoreWriter, trio.CancelScope]]:
    persistence = StoreWriter(fake, flush_ms=100, retry_initial=0.1, retry_max=1.0)  # type: ignore[arg-type]
    scope = trio.CancelScope()

    async def run(task_status: trio.TaskStatus[None]) -> None:
        with scope:
            await persistence.run(task_status=task_status)

    await nursery.start(run)
    yield persistence, scope
    scope.cancel()


async def test_one_append_per_flush_for_all_rooms(
    autojump_clock: trio.testing.MockClock, running: Any, fake: FakeStore
) -> None:
    persistence, _ = running
    editors = {room: Editor() for room in ("a", "b", "c")}
    sent: list[tuple[str, bytes]] = []
    for i in range(12):
        room = "abc"[i % 3]
        update = editors[room].type(str(i))
        persistence.received(room, update)
        sent.append((room, update))
    assert persistence.unflushed("a") == 4
    await trio.sleep(0.15)
    assert len(fake.append_calls) == 1  # one transaction for the three rooms
    (batch,) = fake.append_calls
    for room in "abc":  # each room's updates in the order they came
        assert [u for r, u in batch if r == room] == [u for r, u in sent if r == room]
    assert persistence.unflushed("a") == 0
    stats = persistence.statistics()
    assert stats.log_writes == 1 and stats.updates_written == 12 and stats.pending_bytes == 0
    assert stats.healthy and stats.last_flush_ms is not None


async def test_failures_retry_with_backoff_and_lose_nothing(
    autojump_clock: trio.testing.MockClock, running: Any, fake: FakeStore
) -> None:
    persistence, _ = running
    editor = Editor()
    fake.failing = True
    sent = []
    for word in ("one ", "two "):
        sent.append(editor.type(word))
        persistence.received("r", sent[-1])
    await trio.sleep(4)
    assert not persistence.healthy
    assert persistence.last_error is not None and "store is down" in persistence.last_error
    gaps = [round(b - a, 3) for a, b in zip(fake.attempts, fake.attempts[1:], strict=False)]
    assert gaps[:5] == [0.1, 0.2, 0.4, 0.8, 1.0]  # doubling, capped at retry_max
    assert persistence.unflushed("r") == 2
    # Editing goes on meanwhile.
    sent.append(editor.type("three"))
    persistence.received("r", sent[-1])
    fake.failing = False
    await trio.sleep(1.1)
    assert persistence.healthy and persistence.last_error is not None
    assert fake.everything("r") == sent
    assert text_of(fake.everything("r")) == "one two three"
    assert persistence.unflushed("r") == 0
    stats = persistence.statistics()
    assert stats.failures >= 5
    assert stats.log_failures == stats.failures  # only appends were tried
    assert stats.snapshot_failures == 0


async def test_shutdown_flushes_what_is_buffered(
    autojump_clock: trio.testing.MockClock, fake: FakeStore
) -> None:
    persistence = StoreWriter(fake, flush_ms=10_000)  # type: ignore[arg-type]
    editor = Editor()
    async with trio.open_nursery() as nursery:
        await nursery.start(persistence.run)
        persistence.received("r", editor.type("last words"))
        nursery.cancel_scope.cancel()
    assert text_of(fake.everything("r")) == "last words"


async def test_shutdown_says_what_it_could_not_write(
    autojump_clock: trio.testing.MockClock, fake: FakeStore, caplog: pytest.LogCaptureFixture
) -> None:
    persistence = StoreWriter(fake, shutdown_timeout=2.0)  # type: ignore[arg-type]
    fake.failing = True
    editor = Editor()
    with trio.fail_after(3):  # the final flush gives up at its deadline
        async with trio.open_nursery() as nursery:
            await nursery.start(persistence.run)
            persistence.received("r", editor.type("a"))
            persistence.received("r", editor.type("b"))
            nursery.cancel_scope.cancel()
    unwritten = [r.getMessage() for r in caplog.records if "unwritten" in r.getMessage()]
    assert len(unwritten) == 1
    assert "room=r updates=2" in unwritten[0] and "store is down" in unwritten[0]


async def test_snapshot_covers_the_log_and_the_buffer(
    autojump_clock: trio.testing.MockClock, running: Any, fake: FakeStore
) -> None:
    persistence, _ = running
    editor = Editor()
    for word in ("a", "b", "c"):
        persistence.received("r", editor.type(word))
    await trio.sleep(0.15)
    persistence.received("r", editor.type("d"))  # buffered, not yet written
    assert persistence.unflushed("r") == 1
    await persistence.snapshot("r", editor.state())
    assert fake.snapshot_calls[-1]["covers_seq"] == 3
    assert fake.snapshot_calls[-1]["carry"] == []
    # "d" is in the state, and still goes to the log: should this snapshot ever be found
    # corrupt, the previous one plus the log must rebuild the room.
    assert persistence.unflushed("r") == 1
    await trio.sleep(0.15)
    assert persistence.unflushed("r") == 0
    assert fake.everything("r")[-1] == fake.append_calls[-1][-1][1]
    assert text_of(await persistence.load("r")) == "abcd"


async def test_snapshot_carries_buffered_updates_the_state_lacks(
    autojump_clock: trio.testing.MockClock, running: Any, fake: FakeStore
) -> None:
    persistence, _ = running
    editor = Editor()
    first = editor.type("hello")
    second = editor.type(" world")
    persistence.received("r", second)  # its dependency never arrived: pending in the doc
    await persistence.snapshot("r", Editor().state(), carry=[b"\x00\x00"])
    # The buffered update stays buffered (it will reach the log), so it needs no carry.
    assert fake.snapshot_calls[-1]["carry"] == [b"\x00\x00"]
    assert persistence.unflushed("r") == 1
    assert text_of([*(await persistence.load("r")), first]) == "hello world"


async def test_snapshot_with_an_earlier_mark_leaves_later_updates_buffered(
    fake: FakeStore,
) -> None:
    persistence = StoreWriter(fake)  # type: ignore[arg-type]  # no flusher: nothing moves
    editor = Editor()
    persistence.received("r", editor.type("a"))
    state, mark = editor.state(), persistence.mark("r")
    persistence.received("r", editor.type("b"))  # arrives before the snapshot task runs
    await persistence.snapshot("r", state, received=mark)
    assert persistence.unflushed("r") == 2  # both still go to the log
    assert text_of(await persistence.load("r")) == "ab"


async def test_snapshot_failure_raises_and_keeps_the_buffer(
    autojump_clock: trio.testing.MockClock, fake: FakeStore
) -> None:
    persistence = StoreWriter(fake)  # type: ignore[arg-type]
    editor = Editor()
    persistence.received("r", editor.type("a"))
    fake.failing = True
    with pytest.raises(StoreError, match="down"):
        await persistence.snapshot("r", editor.state())
    assert not persistence.healthy and persistence.unflushed("r") == 1
    fake.failing = False
    await persistence.snapshot("r", editor.state())
    # Healthy again; the update still waits for the flusher (not running here).
    assert persistence.healthy and persistence.unflushed("r") == 1
    stats = persistence.statistics()
    assert (stats.snapshot_failures, stats.snapshot_writes) == (1, 1)
    assert (stats.log_failures, stats.log_writes) == (0, 0)


async def test_over_the_memory_bound_a_room_is_shed_until_its_snapshot(
    autojump_clock: trio.testing.MockClock,
    running: Any,
    fake: FakeStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    persistence, _ = running
    persistence._max_pending = 2000
    fake.failing = True
    big, small = Editor(), Editor()
    for i in range(30):
        persistence.received("big", big.type(f"{i:03d}" * 30))
    persistence.received("small", small.type("s"))
    assert persistence.statistics().pending_bytes <= 2000
    assert persistence.unflushed("big") == 30  # shed, but still counted: not evictable
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "overflow" in r.message]
    assert len(errors) == 1
    fake.failing = False
    await trio.sleep(2)
    assert persistence.unflushed("small") == 0
    assert persistence.unflushed("big") > 0
    await persistence.snapshot("big", big.state())
    assert persistence.unflushed("big") == 0
    assert text_of(await persistence.load("big")) == str(big)


async def test_load_reports_problems_and_includes_the_buffer(
    autojump_clock: trio.testing.MockClock, fake: FakeStore
) -> None:
    persistence = StoreWriter(fake)  # type: ignore[arg-type]
    editor = Editor()
    await fake.append([("r", editor.type("stored "))])
    persistence.received("r", editor.type("buffered"))
    fake.problems = (Problem(room_id="r", what="log", ident="seq 9", reason="crc32 mismatch"),)
    assert text_of(await persistence.load("r")) == "stored buffered"
    assert persistence.statistics().corrupt_rows == 1


async def test_load_fails_loudly_when_the_store_fails(
    autojump_clock: trio.testing.MockClock, fake: FakeStore
) -> None:
    persistence = StoreWriter(fake, op_timeout=5)  # type: ignore[arg-type]
    fake.failing = True
    with pytest.raises(StoreError):
        await persistence.load("r")
    fake.failing, fake.hang = False, True
    with pytest.raises(StoreTimeout):
        await persistence.load("r")


async def test_with_sqlite_everything_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "realtime.sqlite3"
    editors = {room: Editor() for room in ("a", "b")}
    async with SqliteStore(path) as store:
        persistence = StoreWriter(store, flush_ms=10)
        async with trio.open_nursery() as nursery:
            await nursery.start(persistence.run)
            for i in range(20):
                room = "ab"[i % 2]
                persistence.received(room, editors[room].type(f"{i} "))
                if i == 10:
                    await persistence.snapshot("a", editors["a"].state())
            nursery.cancel_scope.cancel()
    async with SqliteStore(path) as store:
        persistence = StoreWriter(store)
        for room, editor in editors.items():
            assert text_of(await persistence.load(room)) == str(editor)


async def test_a_long_outage_is_logged_as_a_few_summary_lines(
    autojump_clock: trio.testing.MockClock,
    running: Any,
    fake: FakeStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A full disk for ten minutes, an update and a snapshot attempt every 0.1 s.

    Before: one WARNING per failed append and per failed snapshot (thousands of lines).
    Now: the first failure at once, one summary per minute, one recovery line.
    """
    persistence, _ = running
    editor = Editor()
    caplog.set_level(logging.INFO, logger="civicrealtime.persistence")
    fake.failing = True
    for _ in range(6000):
        persistence.received("r", editor.type("x"))
        with pytest.raises(StoreError):
            await persistence.snapshot("r", b"\x00\x00")
        await trio.sleep(0.1)
    assert persistence.statistics().failures > 6000
    assert persistence.failing_seconds >= 599
    fake.failing = False
    await trio.sleep(2)
    assert persistence.healthy
    lines = [r for r in caplog.records if r.name == "civicrealtime.persistence"]
    loud = [r for r in lines if r.levelno >= logging.WARNING]
    assert loud[0].levelno == logging.ERROR and "persistence.degraded" in loud[0].message
    summaries = [r.message for r in loud[1:]]
    assert 9 <= len(summaries) <= 11, summaries
    assert all(s.startswith("persistence.still_failing failures=") for s in summaries)
    counted = sum(int(s.split("failures=")[1].split()[0]) for s in summaries)
    recovered = [r.message for r in lines if "persistence.recovered" in r.message]
    assert len(recovered) == 1
    total = int(recovered[0].split("failures=")[1].split()[0])
    assert total == persistence.statistics().failures
    assert 1 + counted <= total  # failures after the last summary are only in the total
    assert persistence.failing_seconds == 0.0


async def test_discarded_updates_are_never_written_and_leave_the_log(
    autojump_clock: trio.testing.MockClock, running: Any, fake: FakeStore
) -> None:
    persistence, _ = running
    editor = Editor()
    logged = editor.type("logged ")
    persistence.received("r", logged)
    await trio.sleep(0.15)  # flushed
    buffered = editor.type("buffered")
    persistence.received("r", buffered)
    persistence.discard("r", [logged, buffered])
    assert persistence.unflushed("r") == 0
    assert persistence.statistics().pending_bytes == 0
    await trio.sleep(0.15)
    assert fake.everything("r") == [logged]  # the buffered one was never written
    await persistence.snapshot("r", b"\x00\x00")
    assert fake.snapshot_calls[-1]["discard"] == {
        sha256(logged).digest(),
        sha256(buffered).digest(),
    }
    await persistence.snapshot("r", b"\x00\x00")
    assert fake.snapshot_calls[-1]["discard"] == set()  # forgotten once a snapshot took them
