"""Snapshot leases: one node at a time writes a room's snapshots, then trims its stream.

A lease is a Redis key per room (`<prefix>:room:<room>:lease`) holding the identity of the
node that writes the room's snapshots, acquired when the room opens and renewed at every
heartbeat (one Lua script does both). The room asks `allowed`, a cached answer that
never waits; it is counted from before the request, with a margin, so this node stops
writing before Redis could hand the lease to another node.

Trimming: a snapshot's state holds every stream entry below `RoomLink.applied_below()`,
taken when the state was captured. Once the snapshot is written, the trim is carried out
`trim_delay` seconds later, longer than a room load may take (the store's 30 s deadline):
a node that loaded the store before that snapshot committed has read its stream tail by
then. A room closed here releases its lease after the shutdown deadline (its last
snapshot may still be on its way).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable
from typing import Any

import coredis
import trio
from coredis import PureToken
from coredis.patterns.pipeline import Pipeline

from .entries import StreamId, format_id
from .links import RoomLinks
from .shared import BeatPlan, RedisAccess

log = logging.getLogger("civicrealtime.cluster")

DEFAULT_TRIM_DELAY = 60.0

# Acquire the lease if free, renew it if ours: 1 when we hold it afterwards.
LEASE_SCRIPT = """
local holder = redis.call('GET', KEYS[1])
if holder == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
elseif holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Leases:
    def __init__(
        self,
        redis: RedisAccess,
        links: RoomLinks,
        *,
        presence_ttl: float,
        release_after: float,
        trim_delay: float = DEFAULT_TRIM_DELAY,
    ) -> None:
        self._redis = redis
        self._links = links
        self._presence_ttl = presence_ttl
        self._ttl_ms = max(1, int(presence_ttl * 1000))
        self._release_after = release_after
        self.trim_delay = trim_delay
        self._until: dict[str, float] = {}  # room -> trio time until which it is ours
        self._releasing: dict[str, float] = {}  # room closed here -> when to release
        self._trims: deque[tuple[float, str, StreamId]] = deque()

    @property
    def held(self) -> frozenset[str]:
        """The rooms whose lease this node holds."""
        return frozenset(self._until)

    async def ask(self, client: coredis.Redis[bytes], key: str) -> bool:
        """Acquire or renew the room's lease: True when this node holds it."""
        held = await client.eval(
            LEASE_SCRIPT, keys=[self._redis.keys.lease(key)], args=[self._redis.me, self._ttl_ms]
        )
        return held == 1

    def record(self, key: str, held: bool, asked_at: float) -> None:
        had = key in self._until
        if held:
            # Counted from before the request, with a margin: we stop writing before
            # Redis could hand the lease to another node.
            self._until[key] = asked_at + self._presence_ttl * 0.8
        else:
            self._until.pop(key, None)
        if held != had:
            log.info("cluster.lease room=%s held=%s", key, held)

    def reopened(self, key: str) -> None:
        """The room opened again here before its lease was released: keep it."""
        self._releasing.pop(key, None)

    def closed(self, key: str) -> None:
        if key in self._until:
            self._releasing[key] = trio.current_time() + self._release_after

    def allowed(self, key: str) -> bool:
        """May this node write the room's snapshot now? Never waits."""
        until = self._until.get(key)
        return until is not None and trio.current_time() < until

    def plan_trim(self, key: str, below: StreamId) -> None:
        """A snapshot holding every entry below `below` is written: trim them later."""
        self._trims.append((trio.current_time() + self.trim_delay, key, below))
        log.debug("cluster.trim_planned room=%s below=%s", key, format_id(below))

    def forget(self) -> None:
        """Redis was unreachable: the leases were not renewed, another node may hold them."""
        self._until.clear()

    def beat(self, now: float) -> BeatPlan:
        """Renew the open rooms' leases, release those of rooms closed long enough ago,
        carry out the trims that are due."""
        keys, me = self._redis.keys, self._redis.me
        rooms = self._links.alive()
        releases = [key for key, at in self._releasing.items() if at <= now]
        trims: list[tuple[float, str, StreamId]] = []
        while self._trims and self._trims[0][0] <= now:
            trims.append(self._trims.popleft())
        renewed: list[Awaitable[Any]] = []

        def queue(pipe: Pipeline[bytes]) -> None:
            renewed.extend(
                pipe.eval(LEASE_SCRIPT, keys=[keys.lease(key)], args=[me, self._ttl_ms])
                for key in rooms
            )
            for key in releases:
                pipe.eval(RELEASE_SCRIPT, keys=[keys.lease(key)], args=[me])
            for _, key, sid in trims:
                pipe.xtrim(
                    keys.stream(key),
                    PureToken.MINID,
                    format_id(sid),  # type: ignore[arg-type]  # an id, not a count
                )

        async def answered() -> None:
            answers = [await request for request in renewed]
            for key, held in zip(rooms, answers, strict=True):
                if key in self._links:
                    self.record(key, held == 1, now)
            for key in releases:
                self._releasing.pop(key, None)
                if key not in self._links:
                    self._until.pop(key, None)

        def unanswered() -> None:
            self._until.clear()  # no renewal: another node may take them
            self._trims.extendleft(reversed(trims))

        return BeatPlan(queue=queue, answered=answered, unanswered=unanswered)

    def leave(self, pipe: Pipeline[bytes]) -> None:
        for key in self._until:
            pipe.eval(RELEASE_SCRIPT, keys=[self._redis.keys.lease(key)], args=[self._redis.me])
