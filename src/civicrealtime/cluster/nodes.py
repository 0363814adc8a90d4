"""Node presence: this node's heartbeat, and the other nodes' deaths.

Every `cluster.heartbeat_interval`, one pipelined round trip refreshes this node's
liveness key (`<prefix>:node:<identity>`, TTL `cluster.presence_ttl`), checks the keys of
the nodes whose entries this node has read, and carries the shares of the other parts
(lease renewals and trims, the revocations position, the user counts' refresh). A node
whose key expired is dead: every room that holds its clients' presence gets a `NodeGone`,
which removes them. `leave` takes this node out the same way, at a graceful stop.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import trio

from ..rooms.messages import NodeGone
from .links import RoomLinks
from .shared import REDIS_FAILURES, ClusterStats, HeartbeatShare, RedisAccess

log = logging.getLogger("civicrealtime.cluster")


class NodePresence:
    def __init__(
        self,
        redis: RedisAccess,
        links: RoomLinks,
        stats: ClusterStats,
        *,
        interval: float,
        ttl: float,
        shares: Sequence[HeartbeatShare],
    ) -> None:
        self._redis = redis
        self._links = links
        self._stats = stats
        self._interval = interval
        self._ttl_ms = max(1, int(ttl * 1000))
        self._shares = shares
        self._known: set[str] = set()

    def seen(self, node: str) -> None:
        """An entry of `node` was read: watch its heartbeat from now on."""
        self._known.add(node)

    async def run(self) -> None:
        """Until cancelled: one beat per interval (the first one is the service's)."""
        while True:
            await trio.sleep(self._interval)
            await self.beat()

    async def beat(self) -> None:
        """One round trip; a failure is reported as the task "heartbeat", never raised."""
        redis = self._redis
        client = redis.require()
        now = trio.current_time()
        nodes = sorted(self._known)
        plans = [share.beat(now) for share in self._shares]
        try:
            with trio.fail_after(redis.timeout):
                async with client.pipeline(transaction=False) as pipe:
                    pipe.set(redis.keys.node(redis.identity), b"1", px=self._ttl_ms)
                    alive = [pipe.exists([redis.keys.node(node)]) for node in nodes]
                    for plan in plans:
                        plan.queue(pipe)
                exists = [await request for request in alive]
                for plan in plans:
                    await plan.answered()
        except REDIS_FAILURES as exc:
            redis.failed("heartbeat", exc)
            for plan in plans:
                plan.unanswered()
            return
        redis.succeeded("heartbeat")
        for node, found in zip(nodes, exists, strict=True):
            if not found:
                self._gone(node)

    def _gone(self, node: str) -> None:
        self._known.discard(node)
        rooms = 0
        for _, link in self._links.items():
            if node in link.remote_nodes:
                link.remote_nodes.discard(node)
                link.deliver(NodeGone(node=node), None)
                rooms += 1
        self._stats.nodes_gone += 1
        log.info("cluster.node_gone node=%s rooms=%d", node, rooms)

    async def leave(self) -> None:
        """Take this node out: its liveness key, and the other parts' keys (leases, counts)."""
        redis = self._redis
        client = redis.require()
        try:
            with trio.fail_after(redis.timeout):
                async with client.pipeline(transaction=False) as pipe:
                    pipe.delete([redis.keys.node(redis.identity)])
                    for share in self._shares:
                        share.leave(pipe)
        except REDIS_FAILURES as exc:
            log.warning("cluster.leave_failed error=%s", exc)
            return
        log.info("cluster.left node=%s", redis.identity)
