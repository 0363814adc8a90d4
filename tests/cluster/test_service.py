"""The assembled `ClusterService` (service.py): running, leaving, health, statistics."""

from __future__ import annotations

import coredis
import trio

from civicrealtime.cluster import ClusterService
from civicrealtime.cluster.entries import QUERY, UPDATE
from civicrealtime.rooms.messages import RoomMessage

from ..conftest import make_config
from .conftest import REDIS_URL, free_port


def cluster(prefix: str, redis_url: str = REDIS_URL) -> ClusterService:
    config = make_config(
        cluster={"enabled": True, "redis_url": redis_url, "key_prefix": prefix, "node_id": "a"}
    )
    return ClusterService(config)


async def test_leaving_publishes_what_is_left_then_takes_the_node_out(
    redis_prefix: str,
) -> None:
    service = cluster(redis_prefix)
    client: coredis.Redis[bytes] = coredis.Redis.from_url(REDIS_URL, decode_responses=False)
    node_key = service.keys.node(service.identity)
    async with client, trio.open_nursery() as nursery:
        await nursery.start(service.run)
        assert await client.exists([node_key]) == 1
        send, _ = trio.open_memory_channel[RoomMessage](8)
        assert list(await service.relay.opened("r", send)) == []  # an empty stream
        assert service.leases.held == {"r"}
        await service.counts.add("dora")
        service.relay.local_update("r", b"\x01")
        await service.leave()
        written = await client.xrange(service.keys.stream("r"), "-", "+")
        gone = [node_key, service.keys.lease("r"), service.keys.user("dora")]
        left = await client.exists(gone)
        nursery.cancel_scope.cancel()
    # At least once: a batch in flight when the publisher stopped is published again.
    kinds = [e.field_values[b"k"] for e in written]
    assert kinds[-1] == UPDATE and set(kinds[:-1]) == {QUERY}
    assert written[-1].field_values[b"d"] == b"\x01"
    assert left == 0
    assert service.health() is None
    assert service.statistics()["rooms"] == 0


async def test_without_redis_it_starts_degraded_and_says_why() -> None:
    service = cluster("t", f"redis://127.0.0.1:{free_port()}")
    assert service.health() is None
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        health = service.health()
        stats = service.statistics()
        send, _ = trio.open_memory_channel[RoomMessage](8)
        with trio.fail_after(0.1):  # known to be unreachable: the room does not wait
            tail = await service.relay.opened("r", send)
        nursery.cancel_scope.cancel()
    assert tail == ()
    assert health is not None and "heartbeat" in health
    assert stats["redis_up"] == 0
