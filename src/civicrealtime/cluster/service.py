"""`ClusterService`: rooms spanning several nodes through Redis (the rooms' `RoomRelay`).

Tasks, all in the service's nursery (started before the rooms, stopped after them):

- **reader**: one multiplexed `XREAD BLOCK` over the streams of every open room (plus the
  revocations stream), from the last id seen in each. Remote entries become `FromNode`
  messages in the room's mailbox (`send_nowait`; a full mailbox parks them and pauses that
  stream). Its own node's entries are skipped. Opening a room appends an entry to this
  node's wake stream, which the blocked read also watches, so that the next read includes
  the new room.
- **publisher**: `XADD`s what the rooms hand over, in order, in pipelined batches, from a
  bounded buffer; while Redis is unreachable the buffer holds and the rooms go on.
- **heartbeat**: this node's liveness key, snapshot leases (acquire and renew), checks on
  the nodes whose presence our rooms hold (a dead one becomes `NodeGone`), stream trims.
- **resync**: after Redis was unreachable (or a room opened meanwhile), a room's stream is
  read from its start and its stored state is reloaded from the shared store, so whatever
  Redis lost or trimmed meanwhile still reaches the room.
- **users**: this node's connection count per user, written for the cross-node limit.

Nothing here blocks a room: `local_update`, `local_awareness`, `snapshot_allowed`,
`snapshot_written` and `closed` never wait; `opened` waits for at most one round trip
(`cluster.redis_timeout`), and not at all while Redis is known to be unreachable.

Trimming: a snapshot's state holds every stream entry below `RoomLink.applied_below()`,
taken when the state was captured. Once the snapshot is written, the trim is carried out
`trim_delay` seconds later, longer than a room load may take (the store's 30 s deadline):
a node that loaded the store before that snapshot committed has read its stream tail by
then.
"""

from __future__ import annotations

import logging
import math
import secrets
import socket
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import anyio
import attrs
import coredis
import pycrdt
import trio
from coredis import PureToken
from coredis.exceptions import RedisError
from coredis.response.types import StreamEntry

from ..config import RealtimeConfig
from ..persistence.errors import StoreError
from ..rooms.messages import FromNode, NodeGone, RoomMessage
from .entries import (
    AWARENESS,
    DATA,
    KIND,
    NODE,
    QUERY,
    REASON,
    RELOAD,
    REVOKED_AT,
    START,
    TOKEN,
    UPDATE,
    USER,
    Keys,
    StreamId,
    awareness_payload,
    format_id,
    parse_id,
)
from .links import RoomLink
from .outbox import Outgoing, PublishBuffer
from .presence import LocalPresence

log = logging.getLogger("civicrealtime.cluster")

READ_COUNT = 256  # entries per stream per read
READ_BLOCK_MS = 2000
PAUSED_POLL_MS = 20  # while a room's mailbox is full: how soon to try it again
PUBLISH_BATCH = 512
STREAM_IDLE_MS = 24 * 3600 * 1000  # a room stream nobody wrote to for a day expires
WAKE_MAXLEN = 100
WAKE_IDLE_MS = 3600 * 1000
REVOCATIONS_MAXLEN = 1000
USER_HASH_TTL_MS = 10 * 60 * 1000
USER_REFRESH_SECONDS = 60.0
STORE_LOAD_TIMEOUT = 35.0  # the store's own deadline is 30 s
FINAL_FLUSH_SECONDS = 2.0
DEFAULT_TRIM_DELAY = 60.0
RETRY_INITIAL = 0.1
RETRY_MAX = 2.0
# The node name in `FromNode` for state reloaded from the shared store.
STORE_NODE = "(store)"

# anyio's errors: a connection torn down under a command.
REDIS_FAILURES = (
    RedisError,
    OSError,
    trio.TooSlowError,
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
)

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

StateLoader = Callable[[str], Awaitable[Sequence[bytes]]]


class RevocationTarget(Protocol):
    def revoke(
        self,
        *,
        user_id: str | None = None,
        token_id: str | None = None,
        reason: str,
        relayed: bool = False,
        revoked_at: float | None = None,
    ) -> object: ...


@attrs.define
class ClusterStats:
    published: int = 0  # entries written to Redis
    delivered: int = 0  # remote entries handed to rooms
    publish_failures: int = 0
    read_failures: int = 0
    resyncs: int = 0
    nodes_gone: int = 0


class _Backoff:
    def __init__(self) -> None:
        self._delay = 0.0

    def reset(self) -> None:
        self._delay = 0.0

    async def sleep(self) -> None:
        self._delay = min(RETRY_MAX, self._delay * 2) if self._delay else RETRY_INITIAL
        await trio.sleep(self._delay)


class ClusterService:
    def __init__(
        self,
        config: RealtimeConfig,
        *,
        load_stored: StateLoader | None = None,
        trim_delay: float = DEFAULT_TRIM_DELAY,
    ) -> None:
        cfg = config.cluster
        self._cfg = cfg
        self.node_id = cfg.node_id or f"{socket.gethostname()}-{secrets.token_hex(3)}"
        # Unique per start: a restarted node is a new node to the others.
        self.identity = f"{self.node_id}.{secrets.token_hex(4)}"
        self._me = self.identity.encode()
        self._keys = Keys(cfg.key_prefix)
        self._timeout = cfg.redis_timeout
        self._ttl_ms = max(1, int(cfg.presence_ttl * 1000))
        self._release_after = config.shutdown_timeout + 1.0
        self._load_stored = load_stored
        self._trim_delay = trim_delay
        self.stats = ClusterStats()

        self._client: coredis.Redis[bytes] | None = None
        self._links: dict[str, RoomLink] = {}
        self._outbox = PublishBuffer(cfg.publish_buffer_bytes)
        self._outbox_ready = trio.Event()
        self._presence = LocalPresence()
        self._leases: dict[str, float] = {}  # room -> trio time until which it is ours
        self._releasing: dict[str, float] = {}  # room closed here -> when to release
        self._trims: deque[tuple[float, str, StreamId]] = deque()
        self._known_nodes: set[str] = set()
        self._resync: set[str] = set()
        self._resync_ready = trio.Event()
        # The reader blocks on its streams and on this node's wake stream: an entry there
        # makes it read again with the streams of rooms opened meanwhile. (Cancelling a
        # blocked XREAD would cost coredis its connection, and a new one each time.)
        self._wake_stream = self._keys.wake(self.identity)
        self._wake_id: StreamId = START
        self._wake_queued = False
        self._revocations_id: StreamId | None = None
        # Set once this node reads the revocations stream from a known position: from then
        # on it misses none, and the service reads the stored ones again (see app.py).
        self.revocations_tailing = trio.Event()
        self._target: RevocationTarget | None = None
        self._user_local: Counter[str] = Counter()
        self._user_dirty: set[str] = set()
        self._users_ready = trio.Event()
        self._users_refreshed = -math.inf
        # Continuous tasks that currently fail to reach Redis, with the error.
        self._failing: dict[str, str] = {}
        self._reader_down = False
        self._tasks_scope = trio.CancelScope()
        self._tasks_done = trio.Event()

    # -- wiring ------------------------------------------------------------------------------

    def attach(self, target: RevocationTarget) -> None:
        """Where revocations published by other nodes are carried out (the local server)."""
        self._target = target

    def health(self) -> str | None:
        """Why the cluster makes this node degraded, or None."""
        if not self._failing:
            return None
        errors = "; ".join(f"{task}: {error}" for task, error in sorted(self._failing.items()))
        return (
            f"cluster: Redis unreachable ({errors}); local editing continues, "
            f"{len(self._outbox)} entries wait to be published"
        )

    def statistics(self) -> dict[str, float]:
        return {
            **attrs.asdict(self.stats),
            "publish_buffer_bytes": self._outbox.bytes,
            "publish_buffer_entries": len(self._outbox),
            "dropped_updates": self._outbox.dropped_updates,
            "rooms": len(self._links),
            "leases": len(self._leases),
            "redis_up": 0 if self._failing else 1,
        }

    # -- running -----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Until cancelled; then publish what is left, within FINAL_FLUSH_SECONDS."""
        client: coredis.Redis[bytes] = coredis.Redis.from_url(
            self._cfg.redis_url, decode_responses=False, connect_timeout=self._timeout
        )
        async with client:
            self._client = client
            log.info(
                "cluster.joining node=%s redis=%s prefix=%s",
                self.identity,
                _without_password(self._cfg.redis_url),
                self._cfg.key_prefix,
            )
            await self._beat()
            self._reader_down = "heartbeat" in self._failing
            if self._reader_down:
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
                self._client = None

    async def _run_tasks(self) -> None:
        try:
            with self._tasks_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._read_loop)
                    nursery.start_soon(self._publish_loop)
                    nursery.start_soon(self._heartbeat_loop)
                    nursery.start_soon(self._resync_loop)
                    nursery.start_soon(self._users_loop)
        finally:
            self._tasks_done.set()

    async def leave(self) -> None:
        """Graceful stop, once the rooms have closed: publish what is left (their last
        updates and presence removals), then take this node out of the cluster (liveness
        key, leases, connection counts), within FINAL_FLUSH_SECONDS. `run` then only has
        to be cancelled. Without it, the other nodes notice this one is gone when its
        heartbeat expires."""
        if self._client is None:
            return
        self._tasks_scope.cancel()
        with trio.move_on_after(FINAL_FLUSH_SECONDS):
            await self._tasks_done.wait()
            await self._leave()

    async def _leave(self) -> None:
        """Publish what is left, then take this node out: liveness key, leases, counts."""
        client = self._require_client()
        for room in list(self._links):
            self.closed(room)
        while len(self._outbox):
            batch = self._outbox.take(PUBLISH_BATCH)
            try:
                await self._publish(batch)
            except REDIS_FAILURES as exc:
                self._outbox.give_back(batch)
                log.error(  # noqa: TRY400 - Redis is down: a traceback says nothing more
                    "cluster.unpublished entries=%d error=%s: other nodes reload these "
                    "rooms from the store when they reconnect",
                    len(self._outbox),
                    exc,
                )
                return
            self._outbox.done(batch)
        try:
            with trio.fail_after(self._timeout):
                async with client.pipeline(transaction=False) as pipe:
                    pipe.delete([self._keys.node(self.identity)])
                    for room in self._leases:
                        pipe.eval(RELEASE_SCRIPT, keys=[self._keys.lease(room)], args=[self._me])
                    for user in self._user_local:
                        pipe.hdel(self._keys.user(user), [self._me])
        except REDIS_FAILURES as exc:
            log.warning("cluster.leave_failed error=%s", exc)
            return
        log.info("cluster.left node=%s", self.identity)

    def _require_client(self) -> coredis.Redis[bytes]:
        if self._client is None:
            raise RuntimeError("the cluster service is not running")
        return self._client

    def _failed(self, task: str, exc: BaseException) -> None:
        error = f"{type(exc).__name__}: {exc}"[:200]
        if task not in self._failing:
            log.error("cluster.redis_unreachable task=%s error=%s", task, error)
        self._failing[task] = error

    def _succeeded(self, task: str) -> None:
        if self._failing.pop(task, None) is not None:
            log.info("cluster.redis_recovered task=%s", task)

    # -- the room relay ----------------------------------------------------------------------

    async def opened(
        self, key: str, mailbox: trio.MemorySendChannel[RoomMessage]
    ) -> Sequence[bytes]:
        link = RoomLink(key=key, stream=self._keys.stream(key), mailbox=mailbox)
        previous = self._links.pop(key, None)
        if previous is not None:
            previous.close()
        self._links[key] = link
        self._releasing.pop(key, None)
        client = self._client
        if client is None or self._reader_down:
            self._want_resync(key)
            return ()
        started = trio.current_time()
        try:
            # Multiplexed commands, not a pipeline: a pipeline takes a connection of its
            # own, which coredis would open in this (the room's) cancel scope.
            with trio.fail_after(self._timeout):
                tail = await client.xrange(link.stream, "-", "+")
                held = await client.eval(
                    LEASE_SCRIPT, keys=[self._keys.lease(key)], args=[self._me, self._ttl_ms]
                )
        except REDIS_FAILURES as exc:
            log.warning("cluster.open_failed room=%s error=%s", key, exc)
            self._want_resync(key)
            return ()
        updates: list[bytes] = []
        for entry in tail:
            fields = _fields(entry)
            if fields.get(KIND) == UPDATE:
                updates.append(fields.get(DATA, b""))
        link.read_id = parse_id(tail[-1].identifier) if tail else START
        self._set_lease(key, held == 1, started)
        # Presence is not replayed from the tail (it may be stale): nodes holding the room
        # answer this with their clients' current states.
        self._push(key, QUERY, b"")
        self._wake_reader()
        log.debug("cluster.opened room=%s tail=%d updates=%d", key, len(tail), len(updates))
        return updates

    def closed(self, key: str) -> None:
        link = self._links.pop(key, None)
        if link is not None:
            link.close()
        self._resync.discard(key)
        if key in self._leases:
            self._releasing[key] = trio.current_time() + self._release_after
        removal = self._presence.withdraw(key)
        if removal is not None:
            # The room closed without handling its members' leaves (shutdown, admin close).
            self._push(key, AWARENESS, removal)

    def local_update(self, key: str, update: bytes) -> None:
        self._push(key, UPDATE, update)

    def local_awareness(self, key: str, frame: bytes) -> None:
        payload = awareness_payload(frame)
        if payload is None:
            return
        self._presence.apply(key, payload)
        self._push(key, AWARENESS, payload)

    def snapshot_allowed(self, key: str) -> bool:
        until = self._leases.get(key)
        allowed = until is not None and trio.current_time() < until
        link = self._links.get(key)
        if allowed and link is not None:
            link.trim_candidate = link.applied_below()
        return allowed

    def snapshot_written(self, key: str) -> None:
        link = self._links.get(key)
        if link is None or link.trim_candidate is None:
            return
        self._trims.append((trio.current_time() + self._trim_delay, key, link.trim_candidate))
        log.debug("cluster.trim_planned room=%s below=%s", key, format_id(link.trim_candidate))
        link.trim_candidate = None

    # -- revocations and limits ----------------------------------------------------------------

    def publish_revocation(
        self, user_id: str | None, token_id: str | None, reason: str, revoked_at: float
    ) -> None:
        """A revocation made (and stored) here: the other nodes close the same sessions."""
        fields = {
            NODE: self._me,
            USER: (user_id or "").encode(),
            TOKEN: (token_id or "").encode(),
            REASON: reason.encode(),
            REVOKED_AT: repr(revoked_at).encode(),
        }
        self._outbox.push(
            Outgoing(stream=self._keys.revocations, fields=fields, maxlen=REVOCATIONS_MAXLEN)
        )
        self._outbox_ready.set()

    async def add(self, user: str) -> int:
        """Count one more connection of `user` here; return their connections on all nodes.

        Fails open: while Redis is unreachable, only this node's count is known.
        """
        self._user_local[user] += 1
        count = self._user_local[user]
        client = self._client
        if client is None or self._reader_down:
            self._mark_user(user)
            return count
        try:
            with trio.fail_after(min(self._timeout, 2.0)):
                total = await client.eval(
                    COUNT_SCRIPT,
                    keys=[self._keys.user(user)],
                    args=[self._me, count, self._keys.node_prefix, USER_HASH_TTL_MS],
                )
        except REDIS_FAILURES as exc:
            log.warning("cluster.limit_check_failed user=%s error=%s", user, exc)
            self._mark_user(user)
            return self._user_local[user]
        except BaseException:
            self.remove(user)
            raise
        if self._user_local[user] != count:
            self._mark_user(user)  # changed meanwhile: write the current count
        return int(total) if isinstance(total, int) else count

    def remove(self, user: str) -> None:
        self._user_local[user] -= 1
        if self._user_local[user] <= 0:
            del self._user_local[user]
        self._mark_user(user)

    def _mark_user(self, user: str) -> None:
        self._user_dirty.add(user)
        self._users_ready.set()

    # -- publishing --------------------------------------------------------------------------

    def _push(self, key: str, kind: bytes, data: bytes) -> None:
        self._outbox.push(
            Outgoing(
                stream=self._keys.stream(key),
                fields={NODE: self._me, KIND: kind, DATA: data},
                room=key,
                maxlen=self._cfg.stream_maxlen,
                expire_ms=STREAM_IDLE_MS,
            )
        )
        self._outbox_ready.set()

    async def _publish_loop(self) -> None:
        backoff = _Backoff()
        while True:
            if not len(self._outbox):
                self._outbox_ready = trio.Event()
                await self._outbox_ready.wait()
            batch = self._outbox.take(PUBLISH_BATCH)
            try:
                await self._publish(batch)
            except REDIS_FAILURES as exc:
                self._outbox.give_back(batch)
                self.stats.publish_failures += 1
                self._failed("publish", exc)
                await backoff.sleep()
                continue
            except BaseException:
                self._outbox.give_back(batch)
                raise
            self._outbox.done(batch)
            self.stats.published += len(batch)
            self._succeeded("publish")
            backoff.reset()
            while self._outbox.dropped_rooms:
                self._push(self._outbox.dropped_rooms.pop(), RELOAD, b"")

    async def _publish(self, batch: list[Outgoing]) -> None:
        client = self._require_client()
        with trio.fail_after(self._timeout):
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

    # -- reading -----------------------------------------------------------------------------

    def _wake_reader(self) -> None:
        if self._wake_queued:
            return
        self._wake_queued = True
        self._outbox.push(
            Outgoing(
                stream=self._wake_stream,
                fields={NODE: self._me},
                maxlen=WAKE_MAXLEN,
                expire_ms=WAKE_IDLE_MS,
            )
        )
        self._outbox_ready.set()

    async def _read_loop(self) -> None:
        client = self._require_client()
        backoff = _Backoff()
        while True:
            streams, paused = self._streams_to_read()
            block = PAUSED_POLL_MS if paused else READ_BLOCK_MS
            try:
                with trio.fail_after(block / 1000 + self._timeout):
                    result: Any = await client.xread(streams, count=READ_COUNT, block=block)
            except REDIS_FAILURES as exc:
                self.stats.read_failures += 1
                self._reader_down = True
                self._failed("read", exc)
                await backoff.sleep()
                continue
            backoff.reset()
            if self._reader_down:
                self._reader_down = False
                self._succeeded("read")
                self._after_outage()
            if result:
                self._dispatch(result)

    def _streams_to_read(self) -> tuple[dict[bytes, bytes], bool]:
        now = trio.current_time()
        streams: dict[bytes, bytes] = {self._wake_stream: format_id(self._wake_id)}
        if self._revocations_id is not None:
            streams[self._keys.revocations] = format_id(self._revocations_id)
        paused = False
        for key, link in list(self._links.items()):
            if link.pending:
                link.flush()
            if not link.alive:
                self._links.pop(key, None)
                continue
            if link.pending:
                paused = True
                since = link.paused_since
                if since is not None and now - since > self._trim_delay / 2:
                    # Parked so long that its stream may have been trimmed past us.
                    link.paused_since = now
                    self._want_resync(key)
                continue
            if link.read_id is not None:
                streams[link.stream] = format_id(link.read_id)
        return streams, paused

    def _dispatch(self, result: dict[bytes, Any]) -> None:
        by_stream = {link.stream: link for link in self._links.values()}
        for stream, entries in result.items():
            if stream == self._wake_stream:
                self._wake_id = parse_id(entries[-1].identifier)
                self._wake_queued = False
                continue
            if stream == self._keys.revocations:
                for entry in entries:
                    self._revocations_id = parse_id(entry.identifier)
                    self._on_revocation(_fields(entry))
                continue
            link = by_stream.get(stream)
            if link is None:
                continue  # closed meanwhile
            for entry in entries:
                sid = parse_id(entry.identifier)
                link.read_id = sid
                self._on_entry(link, sid, _fields(entry))

    def _on_entry(self, link: RoomLink, sid: StreamId | None, fields: dict[bytes, bytes]) -> None:
        origin = fields.get(NODE, b"")
        if origin == self._me:
            return
        node = origin.decode(errors="replace")
        kind = fields.get(KIND)
        data = fields.get(DATA, b"")
        self._known_nodes.add(node)
        if kind == UPDATE:
            link.deliver(FromNode(node=node, update=data), sid)
            self.stats.delivered += 1
        elif kind == AWARENESS:
            link.remote_nodes.add(node)
            link.deliver(FromNode(node=node, awareness=data), sid)
            self.stats.delivered += 1
        elif kind == QUERY:
            everyone = self._presence.everyone(link.key)
            if everyone is not None:
                self._push(link.key, AWARENESS, everyone)
        elif kind == RELOAD:
            self._want_resync(link.key)

    def _on_revocation(self, fields: dict[bytes, bytes]) -> None:
        if fields.get(NODE) == self._me or self._target is None:
            return
        user_id = fields.get(USER, b"").decode(errors="replace") or None
        token_id = fields.get(TOKEN, b"").decode(errors="replace") or None
        reason = fields.get(REASON, b"").decode(errors="replace") or "revoked"
        if user_id is None and token_id is None:
            return
        try:
            revoked_at: float | None = float(fields.get(REVOKED_AT, b""))
        except ValueError:
            revoked_at = None  # from an older node: the local time will do
        if revoked_at is not None and not math.isfinite(revoked_at):
            revoked_at = None
        self._target.revoke(
            user_id=user_id, token_id=token_id, reason=reason, relayed=True, revoked_at=revoked_at
        )

    def _after_outage(self) -> None:
        """Redis answers again: it may have lost or trimmed what we did not read."""
        for key in self._links:
            self._want_resync(key)
        self._leases.clear()
        self._user_dirty |= set(self._user_local)
        self._users_ready.set()

    # -- resync ------------------------------------------------------------------------------

    def _want_resync(self, key: str) -> None:
        self._resync.add(key)
        self._resync_ready.set()

    async def _resync_loop(self) -> None:
        backoff = _Backoff()
        while True:
            if not self._resync:
                self._resync_ready = trio.Event()
                await self._resync_ready.wait()
            if self._reader_down:
                await trio.sleep(RETRY_INITIAL)
                continue
            key = self._resync.pop()
            link = self._links.get(key)
            if link is None or not link.alive:
                continue
            try:
                await self._resync_link(link)
            except (*REDIS_FAILURES, StoreError) as exc:
                log.warning("cluster.resync_failed room=%s error=%s", key, exc)
                if self._links.get(key) is link:
                    self._resync.add(key)
                await backoff.sleep()
                continue
            backoff.reset()

    async def _resync_link(self, link: RoomLink) -> None:
        """Stream first, then the store: what was trimmed before we read was stored."""
        client = self._require_client()
        if link.read_id is None:
            with trio.fail_after(self._timeout):
                tail = await client.xrange(link.stream, "-", "+")
            if not link.alive:
                return
            for entry in tail:
                sid = parse_id(entry.identifier)
                fields = _fields(entry)
                if fields.get(KIND) == UPDATE:
                    origin = fields.get(NODE, b"").decode(errors="replace")
                    link.deliver(FromNode(node=origin, update=fields.get(DATA, b"")), sid)
            link.read_id = parse_id(tail[-1].identifier) if tail else START
            self._wake_reader()
        if self._load_stored is not None:
            with trio.fail_after(STORE_LOAD_TIMEOUT):
                stored = list(await self._load_stored(link.key))
            if stored and link.alive:
                for update in _merged(stored):
                    link.deliver(FromNode(node=STORE_NODE, update=update), None)
        self.stats.resyncs += 1
        self._push(link.key, QUERY, b"")
        log.info("cluster.resynced room=%s", link.key)

    # -- heartbeat, leases, trims ----------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            await trio.sleep(self._cfg.heartbeat_interval)
            await self._beat()

    async def _beat(self) -> None:
        client = self._require_client()
        now = trio.current_time()
        rooms = [key for key, link in self._links.items() if link.alive]
        releases = [key for key, at in self._releasing.items() if at <= now]
        trims: list[tuple[float, str, StreamId]] = []
        while self._trims and self._trims[0][0] <= now:
            trims.append(self._trims.popleft())
        nodes = sorted(self._known_nodes)
        want_revocations = self._revocations_id is None
        try:
            with trio.fail_after(self._timeout):
                async with client.pipeline(transaction=False) as pipe:
                    pipe.set(self._keys.node(self.identity), b"1", px=self._ttl_ms)
                    alive = [pipe.exists([self._keys.node(node)]) for node in nodes]
                    leases = [
                        pipe.eval(
                            LEASE_SCRIPT,
                            keys=[self._keys.lease(key)],
                            args=[self._me, self._ttl_ms],
                        )
                        for key in rooms
                    ]
                    for key in releases:
                        pipe.eval(RELEASE_SCRIPT, keys=[self._keys.lease(key)], args=[self._me])
                    for _, key, sid in trims:
                        pipe.xtrim(
                            self._keys.stream(key),
                            PureToken.MINID,
                            format_id(sid),  # type: ignore[arg-type]  # an id, not a count
                        )
                    last_revocation = pipe.xrevrange(self._keys.revocations, count=1)
                alive_answers = [await request for request in alive]
                lease_answers = [await request for request in leases]
                revocation_tail = await last_revocation
        except REDIS_FAILURES as exc:
            self._failed("heartbeat", exc)
            self._leases.clear()  # no renewal: another node may take them
            self._trims.extendleft(reversed(trims))
            return
        self._succeeded("heartbeat")
        for key, held in zip(rooms, lease_answers, strict=True):
            if self._links.get(key) is not None:
                self._set_lease(key, held == 1, now)
        for key in releases:
            self._releasing.pop(key, None)
            if key not in self._links:
                self._leases.pop(key, None)
        for node, exists in zip(nodes, alive_answers, strict=True):
            if not exists:
                self._node_gone(node)
        if want_revocations and self._revocations_id is None:
            self._revocations_id = (
                parse_id(revocation_tail[0].identifier) if revocation_tail else START
            )
            self._wake_reader()
            self.revocations_tailing.set()
        if now - self._users_refreshed > USER_REFRESH_SECONDS:
            self._users_refreshed = now
            if self._user_local:
                self._user_dirty |= set(self._user_local)
                self._users_ready.set()

    def _set_lease(self, key: str, held: bool, asked_at: float) -> None:
        had = key in self._leases
        if held:
            # Counted from before the request, with a margin: we stop writing before
            # Redis could hand the lease to another node.
            self._leases[key] = asked_at + self._cfg.presence_ttl * 0.8
        else:
            self._leases.pop(key, None)
        if held != had:
            log.info("cluster.lease room=%s held=%s", key, held)

    def _node_gone(self, node: str) -> None:
        self._known_nodes.discard(node)
        rooms = 0
        for link in self._links.values():
            if node in link.remote_nodes:
                link.remote_nodes.discard(node)
                link.deliver(NodeGone(node=node), None)
                rooms += 1
        self.stats.nodes_gone += 1
        log.info("cluster.node_gone node=%s rooms=%d", node, rooms)

    # -- user counts -------------------------------------------------------------------------

    async def _users_loop(self) -> None:
        client = self._require_client()
        backoff = _Backoff()
        while True:
            if not self._user_dirty:
                self._users_ready = trio.Event()
                await self._users_ready.wait()
            users, self._user_dirty = self._user_dirty, set()
            try:
                with trio.fail_after(self._timeout):
                    async with client.pipeline(transaction=False) as pipe:
                        for user in users:
                            key = self._keys.user(user)
                            count = self._user_local.get(user, 0)
                            if count:
                                pipe.hset(key, {self._me: count})
                                pipe.pexpire(key, USER_HASH_TTL_MS)
                            else:
                                pipe.hdel(key, [self._me])
            except REDIS_FAILURES as exc:
                self._user_dirty |= users
                self._failed("limits", exc)
                await backoff.sleep()
                continue
            self._succeeded("limits")
            backoff.reset()


def _fields(entry: StreamEntry) -> dict[bytes, bytes]:
    return {_bytes(k): _bytes(v) for k, v in entry.field_values.items()}


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _merged(updates: list[bytes]) -> list[bytes]:
    if len(updates) < 2:
        return updates
    try:
        return [pycrdt.merge_updates(*updates)]
    except Exception:  # noqa: BLE001 - one bad update: deliver them one by one instead
        return updates


def _without_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return url
    user = credentials.partition(":")[0]
    return f"{scheme}{sep}{user + '@' if user else ''}{host}"
