"""The publisher: one task that `XADD`s what the parts hand over, in order.

Rooms and revocations push entries without waiting (`push`, `push_room`); the task takes
them from the bounded `PublishBuffer` in pipelined batches. While Redis is unreachable
the buffer holds (see outbox.py for what happens when it fills) and the rooms go on.
"""

from __future__ import annotations

import logging

import trio
from coredis import PureToken

from .entries import DATA, KIND, NODE, RELOAD
from .outbox import Outgoing, PublishBuffer
from .shared import REDIS_FAILURES, Backoff, ClusterStats, RedisAccess

log = logging.getLogger("civicrealtime.cluster")

PUBLISH_BATCH = 512
STREAM_IDLE_MS = 24 * 3600 * 1000  # a room stream nobody wrote to for a day expires


class Publisher:
    def __init__(
        self, redis: RedisAccess, stats: ClusterStats, *, limit: int, stream_maxlen: int
    ) -> None:
        self._redis = redis
        self._stats = stats
        self._stream_maxlen = stream_maxlen
        self.buffer = PublishBuffer(limit)
        self._ready = trio.Event()

    def push(self, item: Outgoing) -> None:
        """Publish `item` after what was pushed before. Never waits."""
        self.buffer.push(item)
        self._ready.set()

    def push_room(self, key: str, kind: bytes, data: bytes) -> None:
        """An entry of this node on the room's stream. Never waits."""
        self.push(
            Outgoing(
                stream=self._redis.keys.stream(key),
                fields={NODE: self._redis.me, KIND: kind, DATA: data},
                room=key,
                maxlen=self._stream_maxlen,
                expire_ms=STREAM_IDLE_MS,
            )
        )

    async def run(self) -> None:
        """Until cancelled; a batch in flight when it is cancelled goes back to the buffer."""
        backoff = Backoff()
        while True:
            if not len(self.buffer):
                self._ready = trio.Event()
                await self._ready.wait()
            batch = self.buffer.take(PUBLISH_BATCH)
            try:
                await self._publish(batch)
            except REDIS_FAILURES as exc:
                self.buffer.give_back(batch)
                self._stats.publish_failures += 1
                self._redis.failed("publish", exc)
                await backoff.sleep()
                continue
            except BaseException:
                self.buffer.give_back(batch)
                raise
            self.buffer.done(batch)
            self._stats.published += len(batch)
            self._redis.succeeded("publish")
            backoff.reset()
            while self.buffer.dropped_rooms:
                self.push_room(self.buffer.dropped_rooms.pop(), RELOAD, b"")

    async def drain(self) -> bool:
        """Publish everything left (a graceful stop); False at the first failure."""
        while len(self.buffer):
            batch = self.buffer.take(PUBLISH_BATCH)
            try:
                await self._publish(batch)
            except REDIS_FAILURES as exc:
                self.buffer.give_back(batch)
                log.error(  # noqa: TRY400 - Redis is down: a traceback says nothing more
                    "cluster.unpublished entries=%d error=%s: other nodes reload these "
                    "rooms from the store when they reconnect",
                    len(self.buffer),
                    exc,
                )
                return False
            self.buffer.done(batch)
        return True

    async def _publish(self, batch: list[Outgoing]) -> None:
        client = self._redis.require()
        with trio.fail_after(self._redis.timeout):
            async with client.pipeline(transaction=False) as pipe:
                expiries: dict[bytes, int] = {}
                for item in batch:
                    pipe.xadd(
                        item.stream,
                        item.fields,
                        trim_strategy=PureToken.MAXLEN,
                        trim_operator=PureToken.APPROXIMATELY,
                        threshold=item.maxlen,
                    )
                    if item.expire_ms is not None:
                        expiries[item.stream] = item.expire_ms
                for stream, milliseconds in expiries.items():
                    pipe.pexpire(stream, milliseconds)
