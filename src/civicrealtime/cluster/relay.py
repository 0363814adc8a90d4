"""The room relay through Redis: each room's stream, written and read (`RoomRelay`).

Rooms hand over their local clients' updates and presence (`local_update`,
`local_awareness`); they go on the room's stream through the publisher. The reader hands
over what it read of the rooms' streams (`received`): other nodes' entries become
`FromNode` messages in the room's mailbox (`send_nowait`; a full mailbox parks them and
holds that stream back), this node's own are skipped. A presence query is answered with
the local clients' presence; a reload asks for a resync.

Nothing here blocks a room: `local_update`, `local_awareness`, `snapshot_allowed`,
`snapshot_written` and `closed` never wait; `opened` waits for at most one round trip
(`cluster.redis_timeout`), and not at all while Redis is known to be unreachable.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import trio

from ..rooms.messages import FromNode, RoomMessage
from .entries import (
    AWARENESS,
    DATA,
    KIND,
    NODE,
    QUERY,
    RELOAD,
    UPDATE,
    StreamId,
    awareness_payload,
    format_id,
    parse_id,
)
from .leases import Leases
from .links import RoomLink, RoomLinks
from .nodes import NodePresence
from .presence import LocalPresence
from .publisher import Publisher
from .reader import Wake
from .resync import Resync
from .shared import REDIS_FAILURES, ClusterStats, RedisAccess, fields, last_id, updates_in

log = logging.getLogger("civicrealtime.cluster")


class RedisRelay:
    """The rooms' `RoomRelay` (rooms/relay.py) and a source of the stream reader."""

    def __init__(
        self,
        redis: RedisAccess,
        links: RoomLinks,
        stats: ClusterStats,
        *,
        publisher: Publisher,
        wake: Wake,
        leases: Leases,
        resync: Resync,
        nodes: NodePresence,
    ) -> None:
        self._redis = redis
        self._links = links
        self._stats = stats
        self._publisher = publisher
        self._wake = wake
        self._leases = leases
        self._resync = resync
        self._nodes = nodes
        self._presence = LocalPresence()

    # -- the rooms' side ---------------------------------------------------------------------

    async def opened(
        self, key: str, mailbox: trio.MemorySendChannel[RoomMessage]
    ) -> Sequence[bytes]:
        redis = self._redis
        link = RoomLink(key=key, stream=redis.keys.stream(key), mailbox=mailbox)
        self._links.add(link)
        self._leases.reopened(key)
        client = redis.usable()
        if client is None:
            self._resync.want(key)
            return ()
        started = trio.current_time()
        try:
            # Multiplexed commands, not a pipeline: a pipeline takes a connection of its
            # own, which coredis would open in this (the room's) cancel scope.
            with trio.fail_after(redis.timeout):
                tail = await client.xrange(link.stream, "-", "+")
                held = await self._leases.ask(client, key)
        except REDIS_FAILURES as exc:
            log.warning("cluster.open_failed room=%s error=%s", key, exc)
            self._resync.want(key)
            return ()
        updates = [found.update for found in updates_in(tail)]
        link.read_id = last_id(tail)
        self._leases.record(key, held, started)
        # Presence is not replayed from the tail (it may be stale): nodes holding the room
        # answer this with their clients' current states.
        self._publisher.push_room(key, QUERY, b"")
        self._wake.ring()
        log.debug("cluster.opened room=%s tail=%d updates=%d", key, len(tail), len(updates))
        return updates

    def closed(self, key: str) -> None:
        self._links.remove(key)
        self._resync.discard(key)
        self._leases.closed(key)
        removal = self._presence.withdraw(key)
        if removal is not None:
            # The room closed without handling its members' leaves (shutdown, admin close).
            self._publisher.push_room(key, AWARENESS, removal)

    def close_all(self) -> None:
        """Every room stops being delivered to (a graceful stop, once they have closed)."""
        for key in self._links:
            self.closed(key)

    def local_update(self, key: str, update: bytes) -> None:
        self._publisher.push_room(key, UPDATE, update)

    def local_awareness(self, key: str, frame: bytes) -> None:
        payload = awareness_payload(frame)
        if payload is None:
            return
        self._presence.apply(key, payload)
        self._publisher.push_room(key, AWARENESS, payload)

    def snapshot_allowed(self, key: str) -> bool:
        allowed = self._leases.allowed(key)
        link = self._links.get(key)
        if allowed and link is not None:
            link.trim_candidate = link.applied_below()
        return allowed

    def snapshot_written(self, key: str) -> None:
        link = self._links.get(key)
        if link is None or link.trim_candidate is None:
            return
        self._leases.plan_trim(key, link.trim_candidate)
        link.trim_candidate = None

    # -- the reader's side -------------------------------------------------------------------

    def positions(self, now: float) -> tuple[dict[bytes, bytes], bool]:
        streams: dict[bytes, bytes] = {}
        paused = False
        for key, link in self._links.items():
            if link.pending:
                link.flush()
            if not link.alive:
                self._links.forget(key)
                continue
            if link.pending:
                paused = True
                since = link.paused_since
                if since is not None and now - since > self._leases.trim_delay / 2:
                    # Parked so long that its stream may have been trimmed past us.
                    link.paused_since = now
                    self._resync.want(key)
                continue
            if link.read_id is not None:
                streams[link.stream] = format_id(link.read_id)
        return streams, paused

    def received(self, result: dict[bytes, Any]) -> None:
        by_stream = self._links.by_stream()
        for stream, entries in result.items():
            link = by_stream.get(stream)
            if link is None:
                continue  # closed meanwhile, or not a room's stream
            for entry in entries:
                sid = parse_id(entry.identifier)
                link.read_id = sid
                self._on_entry(link, sid, fields(entry))

    def _on_entry(self, link: RoomLink, sid: StreamId | None, entry: dict[bytes, bytes]) -> None:
        origin = entry.get(NODE, b"")
        if origin == self._redis.me:
            return
        node = origin.decode(errors="replace")
        kind = entry.get(KIND)
        data = entry.get(DATA, b"")
        self._nodes.seen(node)
        if kind == UPDATE:
            link.deliver(FromNode(node=node, update=data), sid)
            self._stats.delivered += 1
        elif kind == AWARENESS:
            link.remote_nodes.add(node)
            link.deliver(FromNode(node=node, awareness=data), sid)
            self._stats.delivered += 1
        elif kind == QUERY:
            everyone = self._presence.everyone(link.key)
            if everyone is not None:
                self._publisher.push_room(link.key, AWARENESS, everyone)
        elif kind == RELOAD:
            self._resync.want(link.key)
