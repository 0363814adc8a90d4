"""This node's heartbeat and the other nodes' deaths (nodes.py), against the local Redis."""

from __future__ import annotations

import coredis
import trio

from civicrealtime.cluster.entries import Keys
from civicrealtime.cluster.leases import Leases
from civicrealtime.cluster.links import RoomLink, RoomLinks
from civicrealtime.cluster.nodes import NodePresence
from civicrealtime.cluster.shared import ClusterStats, RedisAccess
from civicrealtime.rooms.messages import NodeGone, RoomMessage

from .conftest import free_port


async def test_a_beat_keeps_this_node_alive_and_finds_the_dead(
    redis_access: RedisAccess,
) -> None:
    links, stats = RoomLinks(), ClusterStats()
    nodes = NodePresence(redis_access, links, stats, interval=0.2, ttl=1.0, shares=())
    send, holds_b = trio.open_memory_channel[RoomMessage](8)
    shows_b = RoomLink(key="r", stream=b"r", mailbox=send)
    shows_b.remote_nodes.add("b.1")
    links.add(shows_b)
    send_other, holds_nobody = trio.open_memory_channel[RoomMessage](8)
    links.add(RoomLink(key="s", stream=b"s", mailbox=send_other))
    client = redis_access.require()
    await client.set(redis_access.keys.node("b.1"), b"1", px=60_000)
    nodes.seen("b.1")

    await nodes.beat()
    ttl = await client.pttl(redis_access.keys.node("a.1"))
    assert 0 < ttl <= 1000
    assert holds_b.statistics().current_buffer_used == 0  # b is alive

    await client.delete([redis_access.keys.node("b.1")])
    await nodes.beat()
    assert holds_b.receive_nowait() == NodeGone(node="b.1")
    assert holds_nobody.statistics().current_buffer_used == 0
    assert stats.nodes_gone == 1 and not shows_b.remote_nodes
    await nodes.beat()  # told once
    assert stats.nodes_gone == 1


async def test_a_beat_redis_does_not_answer_is_reported_and_forgets_the_leases() -> None:
    access = RedisAccess(identity="a.1", keys=Keys("t"), timeout=1.0)
    links = RoomLinks()
    leases = Leases(access, links, presence_ttl=1.0, release_after=1.0)
    leases.record("r", True, trio.current_time())
    nodes = NodePresence(access, links, ClusterStats(), interval=0.2, ttl=1.0, shares=(leases,))
    dead = f"redis://127.0.0.1:{free_port()}"
    client: coredis.Redis[bytes] = coredis.Redis.from_url(dead, connect_timeout=0.5)
    async with client:
        access.client = client
        await nodes.beat()
    assert "heartbeat" in access.failing
    assert leases.held == frozenset()


async def test_leaving_takes_this_node_out(redis_access: RedisAccess) -> None:
    links = RoomLinks()
    leases = Leases(redis_access, links, presence_ttl=1.0, release_after=1.0)
    client = redis_access.require()
    leases.record("r", await leases.ask(client, "r"), trio.current_time())
    nodes = NodePresence(
        redis_access, links, ClusterStats(), interval=0.2, ttl=1.0, shares=(leases,)
    )
    await nodes.beat()
    await nodes.leave()
    keys = [redis_access.keys.node("a.1"), redis_access.keys.lease("r")]
    assert await client.exists(keys) == 0
