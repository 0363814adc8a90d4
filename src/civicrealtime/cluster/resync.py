"""Resync: a room's stream read from its start, and its stored state loaded again.

Wanted when Redis may have lost or trimmed entries this node did not read: Redis was
unreachable (when the room opened, or since), a room's full mailbox held its stream back
for long, or another node could not publish some updates (a `reload` entry). Stream
first, then the store: what was trimmed before the stream was read was stored. Then the
other nodes are asked for their clients' presence again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import pycrdt
import trio

from ..persistence.errors import StoreError
from ..rooms.messages import FromNode
from .entries import QUERY
from .links import RoomLink, RoomLinks
from .publisher import Publisher
from .reader import Wake
from .shared import (
    REDIS_FAILURES,
    RETRY_INITIAL,
    Backoff,
    ClusterStats,
    RedisAccess,
    last_id,
    updates_in,
)

log = logging.getLogger("civicrealtime.cluster")

STORE_LOAD_TIMEOUT = 35.0  # the store's own deadline is 30 s
# The node name in `FromNode` for state reloaded from the shared store.
STORE_NODE = "(store)"

StateLoader = Callable[[str], Awaitable[Sequence[bytes]]]


class Resync:
    def __init__(
        self,
        redis: RedisAccess,
        links: RoomLinks,
        stats: ClusterStats,
        publisher: Publisher,
        wake: Wake,
        *,
        load_stored: StateLoader | None,
    ) -> None:
        self._redis = redis
        self._links = links
        self._stats = stats
        self._publisher = publisher
        self._wake = wake
        self._load_stored = load_stored
        self._wanted: set[str] = set()
        self._ready = trio.Event()

    def want(self, key: str) -> None:
        """Resync the room soon. Never waits."""
        self._wanted.add(key)
        self._ready.set()

    def everything(self) -> None:
        """Redis answers again: it may have lost or trimmed what we did not read."""
        for key in self._links:
            self.want(key)

    def discard(self, key: str) -> None:
        self._wanted.discard(key)

    async def run(self) -> None:
        """Until cancelled: one room at a time, while Redis answers; failures retried."""
        backoff = Backoff()
        while True:
            if not self._wanted:
                self._ready = trio.Event()
                await self._ready.wait()
            if self._redis.reader_down:
                await trio.sleep(RETRY_INITIAL)
                continue
            key = self._wanted.pop()
            link = self._links.get(key)
            if link is None or not link.alive:
                continue
            try:
                await self._resync(link)
            except (*REDIS_FAILURES, StoreError) as exc:
                log.warning("cluster.resync_failed room=%s error=%s", key, exc)
                if self._links.get(key) is link:
                    self._wanted.add(key)
                await backoff.sleep()
                continue
            backoff.reset()

    async def _resync(self, link: RoomLink) -> None:
        """Stream first, then the store: what was trimmed before we read was stored."""
        client = self._redis.require()
        if link.read_id is None:
            with trio.fail_after(self._redis.timeout):
                tail = await client.xrange(link.stream, "-", "+")
            if not link.alive:
                return
            for found in updates_in(tail):
                link.deliver(FromNode(node=found.node, update=found.update), found.sid)
            link.read_id = last_id(tail)
            self._wake.ring()
        if self._load_stored is not None:
            with trio.fail_after(STORE_LOAD_TIMEOUT):
                stored = list(await self._load_stored(link.key))
            if stored and link.alive:
                for update in _merged(stored):
                    link.deliver(FromNode(node=STORE_NODE, update=update), None)
        self._stats.resyncs += 1
        self._publisher.push_room(link.key, QUERY, b"")
        log.info("cluster.resynced room=%s", link.key)


def _merged(updates: list[bytes]) -> list[bytes]:
    if len(updates) < 2:
        return updates
    try:
        return [pycrdt.merge_updates(*updates)]
    except Exception:  # noqa: BLE001 - one bad update: deliver them one by one instead
        return updates
