"""Per-user connection counts shared by the nodes (`rate_limiting.connections_per_user`).

Each node writes, in a hash per user (`<prefix>:user:<user>`), its own count of that
user's connections. A new connection is checked against the sum over the live nodes, in
one Lua script that also records this node's count and removes the counts of nodes whose
heartbeat key is gone. Counts that changed without a check (a connection ended, a check
failed) are written by a task of their own, so `remove` never waits. While Redis is
unreachable only this node's count is known: the limit fails open.
"""

from __future__ import annotations

import logging
import math
from collections import Counter

import trio
from coredis.patterns.pipeline import Pipeline

from .shared import REDIS_FAILURES, Backoff, BeatPlan, RedisAccess

log = logging.getLogger("civicrealtime.cluster")

USER_HASH_TTL_MS = 10 * 60 * 1000
USER_REFRESH_SECONDS = 60.0
CHECK_TIMEOUT = 2.0  # at most: a connection waits on this before it joins

# Record this node's count of the user's connections; return the count on every live
# node (fields of nodes whose heartbeat key is gone are removed).
COUNT_SCRIPT = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local total = 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  if fields[i] == ARGV[1] or redis.call('EXISTS', ARGV[3] .. fields[i]) == 1 then
    total = total + tonumber(fields[i + 1])
  else
    redis.call('HDEL', KEYS[1], fields[i])
  end
end
return total
"""


class UserCounts:
    """The cluster's `SharedCounts` (limits.py)."""

    def __init__(self, redis: RedisAccess) -> None:
        self._redis = redis
        self._local: Counter[str] = Counter()
        self._dirty: set[str] = set()
        self._ready = trio.Event()
        self._refreshed = -math.inf

    async def add(self, user: str) -> int:
        """Count one more connection of `user` here; return their connections on all nodes.

        Fails open: while Redis is unreachable, only this node's count is known.
        """
        redis = self._redis
        self._local[user] += 1
        count = self._local[user]
        client = redis.usable()
        if client is None:
            self._mark(user)
            return count
        try:
            with trio.fail_after(min(redis.timeout, CHECK_TIMEOUT)):
                total = await client.eval(
                    COUNT_SCRIPT,
                    keys=[redis.keys.user(user)],
                    args=[redis.me, count, redis.keys.node_prefix, USER_HASH_TTL_MS],
                )
        except REDIS_FAILURES as exc:
            log.warning("cluster.limit_check_failed user=%s error=%s", user, exc)
            self._mark(user)
            return self._local[user]
        except BaseException:
            self.remove(user)
            raise
        if self._local[user] != count:
            self._mark(user)  # changed meanwhile: write the current count
        return int(total) if isinstance(total, int) else count

    def remove(self, user: str) -> None:
        """One connection counted by `add` ended. Never waits."""
        self._local[user] -= 1
        if self._local[user] <= 0:
            del self._local[user]
        self._mark(user)

    def rewrite(self) -> None:
        """Write every count again (Redis may have lost them)."""
        self._dirty |= set(self._local)
        self._ready.set()

    def _mark(self, user: str) -> None:
        self._dirty.add(user)
        self._ready.set()

    async def run(self) -> None:
        """Until cancelled: write the counts that changed without a check."""
        redis = self._redis
        client = redis.require()
        backoff = Backoff()
        while True:
            if not self._dirty:
                self._ready = trio.Event()
                await self._ready.wait()
            users, self._dirty = self._dirty, set()
            try:
                with trio.fail_after(redis.timeout):
                    async with client.pipeline(transaction=False) as pipe:
                        for user in users:
                            key = redis.keys.user(user)
                            count = self._local.get(user, 0)
                            if count:
                                pipe.hset(key, {redis.me: count})
                                pipe.pexpire(key, USER_HASH_TTL_MS)
                            else:
                                pipe.hdel(key, [redis.me])
            except REDIS_FAILURES as exc:
                self._dirty |= users
                redis.failed("limits", exc)
                await backoff.sleep()
                continue
            redis.succeeded("limits")
            backoff.reset()

    def beat(self, now: float) -> BeatPlan:
        """Nothing in the pipeline; once in a while, write every count again (their hashes
        expire, and a lost write would otherwise stay lost)."""

        async def answered() -> None:
            if now - self._refreshed > USER_REFRESH_SECONDS:
                self._refreshed = now
                if self._local:
                    self.rewrite()

        return BeatPlan(answered=answered)

    def leave(self, pipe: Pipeline[bytes]) -> None:
        for user in self._local:
            pipe.hdel(self._redis.keys.user(user), [self._redis.me])
