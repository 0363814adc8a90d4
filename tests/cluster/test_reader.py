"""The stream reader (reader.py): what it reads from where, where entries go, recovery.

A stand-in client answers `XREAD` from a script, so that an outage is one raised error.
"""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from civicrealtime.cluster.entries import Keys
from civicrealtime.cluster.publisher import Publisher
from civicrealtime.cluster.reader import PAUSED_POLL_MS, READ_BLOCK_MS, StreamReader, Wake
from civicrealtime.cluster.shared import ClusterStats, RedisAccess

from .conftest import entry


class Source:
    def __init__(self, streams: dict[bytes, bytes], paused: bool = False) -> None:
        self.streams = streams
        self.paused = paused
        self.results: list[dict[bytes, Any]] = []

    def positions(self, now: float) -> tuple[dict[bytes, bytes], bool]:
        return dict(self.streams), self.paused

    def received(self, result: dict[bytes, Any]) -> None:
        self.results.append(result)


class ScriptedClient:
    """`xread` answers from `answers` in turn (an exception is raised); then waits."""

    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)
        self.reads: list[tuple[dict[bytes, bytes], int]] = []
        self.exhausted = trio.Event()

    async def xread(self, streams: dict[bytes, bytes], *, count: int, block: int) -> object:
        self.reads.append((dict(streams), block))
        if not self.answers:
            self.exhausted.set()
            await trio.sleep_forever()
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def reader_of(
    client: ScriptedClient, *sources: Source, recovered: list[str] | None = None
) -> tuple[StreamReader, RedisAccess, Wake, ClusterStats]:
    access = RedisAccess(identity="a.1", keys=Keys("t"), timeout=1.0)
    access.client = client  # type: ignore[assignment]
    stats = ClusterStats()
    wake = Wake(access, Publisher(access, stats, limit=1 << 20, stream_maxlen=100))
    calls = recovered if recovered is not None else []
    reader = StreamReader(
        access, stats, wake, sources, recovered=(lambda: calls.append("recovered"),)
    )
    return reader, access, wake, stats


async def run_until_exhausted(reader: StreamReader, client: ScriptedClient) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader.run)
        await client.exhausted.wait()
        nursery.cancel_scope.cancel()


async def test_one_read_covers_every_source_and_hands_each_its_entries() -> None:
    rooms = Source({b"t:room:r:stream": b"5-0"})
    revocations = Source({b"t:revocations": b"0-0"})
    wake_stream = b"t:node:a.1:wake"
    answer = {
        wake_stream: [entry("9-1", n=b"a.1")],
        b"t:room:r:stream": [entry("6-0", n=b"b.1")],
    }
    client = ScriptedClient(answer)
    reader, _, wake, _ = reader_of(client, revocations, rooms)
    await run_until_exhausted(reader, client)
    first, second = client.reads
    assert list(first[0].items()) == [
        (wake_stream, b"0-0"),
        (b"t:revocations", b"0-0"),
        (b"t:room:r:stream", b"5-0"),
    ]
    assert first[1] == READ_BLOCK_MS
    assert second[0][wake_stream] == b"9-1"  # woken: reads on after its wake entry
    assert wake.read_id == (9, 1)
    assert rooms.results == [answer] and revocations.results == [answer]


async def test_a_held_back_stream_makes_the_read_short() -> None:
    client = ScriptedClient({})
    reader, *_ = reader_of(client, Source({}, paused=True))
    await run_until_exhausted(reader, client)
    assert client.reads[0][1] == PAUSED_POLL_MS


async def test_a_failed_read_marks_redis_down_until_one_succeeds(
    autojump_clock: trio.abc.Clock,
) -> None:
    recovered: list[str] = []
    client = ScriptedClient(OSError("connection refused"), OSError("again"), {})
    reader, access, _, stats = reader_of(client, Source({}), recovered=recovered)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader.run)
        await trio.testing.wait_all_tasks_blocked()
        assert access.reader_down and "read" in access.failing
        assert recovered == []
        await client.exhausted.wait()
        nursery.cancel_scope.cancel()
    assert stats.read_failures == 2
    assert not access.reader_down and "read" not in access.failing
    assert recovered == ["recovered"]


def test_the_wake_stream_gets_one_entry_until_it_is_read() -> None:
    access = RedisAccess(identity="a.1", keys=Keys("t"), timeout=1.0)
    publisher = Publisher(access, ClusterStats(), limit=1 << 20, stream_maxlen=100)
    wake = Wake(access, publisher)
    wake.ring()
    wake.ring()
    assert len(publisher.buffer) == 1
    wake.woke((3, 0))
    wake.ring()
    assert len(publisher.buffer) == 2
    assert [item.stream for item in publisher.buffer.take(5)] == [wake.stream] * 2
