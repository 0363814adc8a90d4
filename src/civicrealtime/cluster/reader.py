"""The reader: one multiplexed `XREAD BLOCK` over every stream this node follows.

The sources (the room relay, the revocations) say which streams to read from where, and
take what was read. The blocked read also watches this node's wake stream: an entry
there (`Wake.ring`) makes it read again with the streams of rooms opened meanwhile.
(Cancelling a blocked XREAD would cost coredis its connection, and a new one each time.)

When a read succeeds after failing, the `recovered` callbacks run: Redis may have lost or
trimmed what was not read meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import trio

from .entries import NODE, START, StreamId, format_id, parse_id
from .outbox import Outgoing
from .publisher import Publisher
from .shared import REDIS_FAILURES, Backoff, ClusterStats, RedisAccess

READ_COUNT = 256  # entries per stream per read
READ_BLOCK_MS = 2000
PAUSED_POLL_MS = 20  # while a room's mailbox is full: how soon to try it again
WAKE_MAXLEN = 100
WAKE_IDLE_MS = 3600 * 1000


class StreamSource(Protocol):
    def positions(self, now: float) -> tuple[dict[bytes, bytes], bool]:
        """The streams to read, each from the id after which to read; and whether some
        stream is held back (a room's full mailbox), so that the read must not block long."""
        ...

    def received(self, result: dict[bytes, Any]) -> None:
        """One read's entries by stream: take those of this source's streams."""
        ...


class Wake:
    """This node's wake stream: one entry at a time makes the blocked read start again."""

    def __init__(self, redis: RedisAccess, publisher: Publisher) -> None:
        self._me = redis.me
        self._publisher = publisher
        self.stream = redis.keys.wake(redis.identity)
        self.read_id: StreamId = START
        self._queued = False

    def ring(self) -> None:
        """Read again soon with the current streams. Never waits."""
        if self._queued:
            return
        self._queued = True
        self._publisher.push(
            Outgoing(
                stream=self.stream,
                fields={NODE: self._me},
                maxlen=WAKE_MAXLEN,
                expire_ms=WAKE_IDLE_MS,
            )
        )

    def woke(self, last: StreamId) -> None:
        self.read_id = last
        self._queued = False


class StreamReader:
    def __init__(
        self,
        redis: RedisAccess,
        stats: ClusterStats,
        wake: Wake,
        sources: Sequence[StreamSource],
        *,
        recovered: Sequence[Callable[[], None]],
    ) -> None:
        self._redis = redis
        self._stats = stats
        self._wake = wake
        self._sources = sources
        self._recovered = recovered

    async def run(self) -> None:
        """Until cancelled. A failed read marks Redis unreachable (`reader_down`)."""
        redis = self._redis
        client = redis.require()
        backoff = Backoff()
        while True:
            streams, paused = self._streams()
            block = PAUSED_POLL_MS if paused else READ_BLOCK_MS
            try:
                with trio.fail_after(block / 1000 + redis.timeout):
                    result: Any = await client.xread(streams, count=READ_COUNT, block=block)
            except REDIS_FAILURES as exc:
                self._stats.read_failures += 1
                redis.reader_down = True
                redis.failed("read", exc)
                await backoff.sleep()
                continue
            backoff.reset()
            if redis.reader_down:
                redis.reader_down = False
                redis.succeeded("read")
                for recovered in self._recovered:
                    recovered()
            if result:
                self._dispatch(result)

    def _streams(self) -> tuple[dict[bytes, bytes], bool]:
        now = trio.current_time()
        streams = {self._wake.stream: format_id(self._wake.read_id)}
        paused = False
        for source in self._sources:
            more, held = source.positions(now)
            streams.update(more)
            paused = paused or held
        return streams, paused

    def _dispatch(self, result: dict[bytes, Any]) -> None:
        woken = result.get(self._wake.stream)
        if woken:
            self._wake.woke(parse_id(woken[-1].identifier))
        for source in self._sources:
            source.received(result)
