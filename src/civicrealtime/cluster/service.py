"""`ClusterService`: rooms spanning several nodes through Redis, assembled from its parts.

| part | module | what it does |
|---|---|---|
| `relay` | relay.py | the rooms' `RoomRelay`: each room's stream, written and read |
| `resync` | resync.py | a room's stream and stored state read again after a gap |
| `leases` | leases.py | one snapshot writer per room, and the stream trims after it |
| `counts` | counts.py | per-user connection counts over every node (`SharedCounts`) |
| `revocations` | revocations.py | revocations published to, and carried out from, the others |
| `nodes` | nodes.py | this node's heartbeat, the other nodes' deaths |
| publisher, reader | publisher.py, reader.py | one `XADD` task, one `XREAD BLOCK` task |

Tasks, all in the service's nursery (started before the rooms, stopped after them): the
reader, the publisher, the heartbeat, the resync and the user counts' writer. See
docs/scaling.md for what travels through Redis, and how each failure is handled.
"""

from __future__ import annotations

import logging
import secrets
import socket

import attrs
import coredis
import trio

from ..config import RealtimeConfig
from .counts import UserCounts
from .entries import Keys
from .leases import DEFAULT_TRIM_DELAY, Leases
from .links import RoomLinks
from .nodes import NodePresence
from .publisher import Publisher
from .reader import StreamReader, Wake
from .relay import RedisRelay
from .resync import Resync, StateLoader
from .revocations import ApplyRevocation, RevocationRelay
from .shared import ClusterStats, RedisAccess

log = logging.getLogger("civicrealtime.cluster")

FINAL_FLUSH_SECONDS = 2.0


class ClusterService:
    """This node's membership of the cluster: owns the Redis client (opened by `run`,
    closed when it returns), the nursery of the cluster's tasks, and the parts, wired here
    once. `relay` goes to the room manager, `counts` to the connection limits;
    `revocations` publishes this node's revocations and carries out the others'
    (`apply_revocation`); `load_stored` reads a room's stored state for a resync.

    It must never make a room or a connection wait on Redis beyond one
    `cluster.redis_timeout` (a room opening, a per-user check), never while Redis is known
    to be unreachable, and never lose an update because Redis is: the store has every one,
    and Redis is only the way between nodes. It never changes a room's document itself;
    other nodes' entries reach a room only through its mailbox.
    """

    def __init__(
        self,
        config: RealtimeConfig,
        *,
        load_stored: StateLoader | None = None,
        apply_revocation: ApplyRevocation | None = None,
        trim_delay: float = DEFAULT_TRIM_DELAY,
    ) -> None:
        cfg = config.cluster
        self._cfg = cfg
        self.node_id = cfg.node_id or f"{socket.gethostname()}-{secrets.token_hex(3)}"
        # Unique per start: a restarted node is a new node to the others.
        self.identity = f"{self.node_id}.{secrets.token_hex(4)}"
        self.keys = Keys(cfg.key_prefix)
        self.stats = ClusterStats()
        self._redis = redis = RedisAccess(
            identity=self.identity, keys=self.keys, timeout=cfg.redis_timeout
        )
        self._links = links = RoomLinks()
        self.publisher = publisher = Publisher(
            redis, self.stats, limit=cfg.publish_buffer_bytes, stream_maxlen=cfg.stream_maxlen
        )
        wake = Wake(redis, publisher)
        self.leases = Leases(
            redis,
            links,
            presence_ttl=cfg.presence_ttl,
            release_after=config.shutdown_timeout + 1.0,
            trim_delay=trim_delay,
        )
        self.revocations = RevocationRelay(redis, publisher, wake, apply_revocation)
        self.counts = UserCounts(redis)
        self.nodes = NodePresence(
            redis,
            links,
            self.stats,
            interval=cfg.heartbeat_interval,
            ttl=cfg.presence_ttl,
            shares=(self.leases, self.revocations, self.counts),
        )
        self.resync = Resync(redis, links, self.stats, publisher, wake, load_stored=load_stored)
        self.relay = RedisRelay(
            redis,
            links,
            self.stats,
            publisher=publisher,
            wake=wake,
            leases=self.leases,
            resync=self.resync,
            nodes=self.nodes,
        )
        self._reader = StreamReader(
            redis,
            self.stats,
            wake,
            (self.revocations, self.relay),
            recovered=(self.resync.everything, self.leases.forget, self.counts.rewrite),
        )
        self._tasks_scope = trio.CancelScope()
        self._tasks_done = trio.Event()

    def health(self) -> str | None:
        """Why the cluster makes this node degraded, or None."""
        failing = self._redis.failing
        if not failing:
            return None
        errors = "; ".join(f"{task}: {error}" for task, error in sorted(failing.items()))
        return (
            f"cluster: Redis unreachable ({errors}); local editing continues, "
            f"{len(self.publisher.buffer)} entries wait to be published"
        )

    def statistics(self) -> dict[str, float]:
        buffer = self.publisher.buffer
        return {
            **attrs.asdict(self.stats),
            "publish_buffer_bytes": buffer.bytes,
            "publish_buffer_entries": len(buffer),
            "dropped_updates": buffer.dropped_updates,
            "rooms": len(self._links),
            "leases": len(self.leases.held),
            "redis_up": 0 if self._redis.failing else 1,
        }

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Until cancelled (after `leave`, for a graceful stop). Ready after one heartbeat,
        answered or not: a node that cannot reach Redis starts degraded and serves."""
        redis = self._redis
        client: coredis.Redis[bytes] = coredis.Redis.from_url(
            self._cfg.redis_url, decode_responses=False, connect_timeout=redis.timeout
        )
        async with client:
            redis.client = client
            log.info(
                "cluster.joining node=%s redis=%s prefix=%s",
                self.identity,
                _without_password(self._cfg.redis_url),
                self._cfg.key_prefix,
            )
            await self.nodes.beat()
            redis.reader_down = "heartbeat" in redis.failing
            if redis.reader_down:
                log.warning(
                    "cluster.starting_degraded node=%s: Redis unreachable; serving local "
                    "clients, other nodes are reached once it answers",
                    self.identity,
                )
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._run_tasks)
                    task_status.started()
                    await trio.sleep_forever()
            finally:
                redis.client = None

    async def _run_tasks(self) -> None:
        try:
            with self._tasks_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._reader.run)
                    nursery.start_soon(self.publisher.run)
                    nursery.start_soon(self.nodes.run)
                    nursery.start_soon(self.resync.run)
                    nursery.start_soon(self.counts.run)
        finally:
            self._tasks_done.set()

    async def leave(self) -> None:
        """Graceful stop, once the rooms have closed: publish what is left (their last
        updates and presence removals), then take this node out of the cluster (liveness
        key, leases, connection counts), within FINAL_FLUSH_SECONDS. `run` then only has
        to be cancelled. Without it, the other nodes notice this one is gone when its
        heartbeat expires."""
        if self._redis.client is None:
            return
        self._tasks_scope.cancel()
        with trio.move_on_after(FINAL_FLUSH_SECONDS):
            await self._tasks_done.wait()
            self.relay.close_all()
            if await self.publisher.drain():
                await self.nodes.leave()


def _without_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return url
    user = credentials.partition(":")[0]
    return f"{scheme}{sep}{user + '@' if user else ''}{host}"
