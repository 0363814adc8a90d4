"""The writer's durable receipt and its notifications: the source of the "saved" ack."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing

from civicrealtime.persistence import StoreWriter

from .fakes import FakeStore
from .helpers import Editor


@pytest.fixture
def fake() -> FakeStore:
    return FakeStore()


@pytest.fixture
async def running(fake: FakeStore, nursery: trio.Nursery) -> AsyncIterator[StoreWriter]:
    persistence = StoreWriter(fake, flush_ms=100, retry_initial=0.1, retry_max=1.0)  # type: ignore[arg-type]
    scope = trio.CancelScope()

    async def run(task_status: trio.TaskStatus[None]) -> None:
        with scope:
            await persistence.run(task_status=task_status)

    await nursery.start(run)
    yield persistence
    scope.cancel()


async def test_durable_only_after_the_append_committed(
    autojump_clock: trio.testing.MockClock, running: StoreWriter, fake: FakeStore
) -> None:
    told: list[int] = []
    running.durability.watch("a", lambda receipt, failing: told.append(receipt) is None)
    editor = Editor()
    for text in ("x", "y", "z"):
        running.received("a", editor.type(text))
    assert running.durability.durable("a") == 0
    assert running.durability.oldest_unsaved_seconds() == 0.0
    await trio.sleep(0.05)
    assert running.durability.oldest_unsaved_seconds() == pytest.approx(0.05)
    assert told == []  # buffered, not durable
    await trio.sleep(0.1)
    assert len(fake.append_calls) == 1
    assert running.durability.durable("a") == 3
    assert told == [3]  # one notification for the commit
    assert running.durability.oldest_unsaved_seconds() == 0.0
    await trio.sleep(0.5)
    assert told == [3]  # nothing new: nothing said


async def test_failing_store_tells_nothing_and_resumes_after_recovery(
    autojump_clock: trio.testing.MockClock, running: StoreWriter, fake: FakeStore
) -> None:
    told: list[tuple[int, bool]] = []
    running.durability.watch("a", lambda receipt, failing: told.append((receipt, failing)) is None)
    editor = Editor()
    fake.failing = True
    running.received("a", editor.type("one"))
    await trio.sleep(2)
    running.received("a", editor.type("two"))
    await trio.sleep(2)
    # Told once that the store fails, and nothing durable.
    assert told == [(0, True)]
    assert running.durability.durable("a") == 0
    assert running.durability.oldest_unsaved_seconds() >= 4
    fake.failing = False
    await trio.sleep(2)
    # Everything durable by then, in one notification.
    assert told == [(0, True), (2, False)]
    assert running.durability.durable("a") == 2


async def test_a_refused_notification_is_repeated_at_the_next_tick(
    autojump_clock: trio.testing.MockClock, running: StoreWriter
) -> None:
    calls: list[int] = []

    def full_once(receipt: int, failing: bool) -> bool:
        calls.append(receipt)
        return len(calls) > 1  # the first time the mailbox is full

    running.durability.watch("a", full_once)
    running.received("a", Editor().type("x"))
    await trio.sleep(0.35)
    assert calls == [1, 1]


async def test_shed_updates_hold_the_durable_receipt_until_a_snapshot(
    autojump_clock: trio.testing.MockClock, fake: FakeStore, nursery: trio.Nursery
) -> None:
    persistence = StoreWriter(fake, flush_ms=100, max_pending_bytes=200)  # type: ignore[arg-type]
    await nursery.start(persistence.run)
    editor = Editor()
    fake.failing = True
    for _ in range(8):
        persistence.received("a", editor.type("y" * 40))
    assert persistence.statistics().shed_updates > 0
    fake.failing = False
    persistence.received("a", editor.type("late"))
    await trio.sleep(0.3)
    # The late update is in the log, the shed ones are not: nothing of theirs is durable.
    assert fake.everything("a")
    assert persistence.durability.durable("a") == 0
    await persistence.snapshot("a", editor.doc.get_update())
    assert persistence.durability.durable("a") == 9


async def test_unwatch_by_a_previous_room_leaves_the_successor_watching(
    autojump_clock: trio.testing.MockClock, running: StoreWriter
) -> None:
    old: list[int] = []
    new: list[int] = []

    def old_notify(receipt: int, failing: bool) -> bool:
        old.append(receipt)
        return True

    def new_notify(receipt: int, failing: bool) -> bool:
        new.append(receipt)
        return True

    running.durability.watch("a", old_notify)
    running.durability.watch("a", new_notify)
    running.durability.unwatch("a", old_notify)
    running.received("a", Editor().type("x"))
    await trio.sleep(0.2)
    assert (old, new) == ([], [1])


def test_nothing_received_is_durable_at_zero(fake: FakeStore) -> None:
    persistence: Any = StoreWriter(fake, flush_ms=100)  # type: ignore[arg-type]
    assert persistence.durability.durable("nobody") == 0


async def test_flushes_start_every_flush_ms_however_long_an_append_takes(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    class SlowStore(FakeStore):
        async def append(self, batch: Any) -> list[int]:
            await trio.sleep(0.06)
            return await super().append(batch)

    slow = SlowStore()
    persistence = StoreWriter(slow, flush_ms=100)  # type: ignore[arg-type]
    await nursery.start(persistence.run)
    editor = Editor()
    await trio.sleep(0.05)  # between ticks: which comes first is never a tie
    for _ in range(8):
        persistence.received("a", editor.type("x"))
        await trio.sleep(0.1)
    # One append per 100 ms (their starts), not per 160 ms: the durable wait stays
    # within flush_ms plus one append.
    starts = slow.attempts
    assert len(starts) >= 7
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert all(gap == pytest.approx(0.1) for gap in gaps), gaps
