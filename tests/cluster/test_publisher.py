"""The publisher (publisher.py): entries written in order, kept while Redis is away."""

from __future__ import annotations

import coredis

from civicrealtime.cluster.entries import DATA, KIND, NODE, UPDATE, Keys
from civicrealtime.cluster.publisher import Publisher
from civicrealtime.cluster.shared import ClusterStats, RedisAccess

from .conftest import free_port


async def test_entries_are_written_in_order_and_their_streams_expire(
    redis_access: RedisAccess,
) -> None:
    publisher = Publisher(redis_access, ClusterStats(), limit=1 << 20, stream_maxlen=100)
    for i in range(3):
        publisher.push_room("r", UPDATE, bytes([i]))
    assert await publisher.drain()
    client = redis_access.require()
    stream = redis_access.keys.stream("r")
    written = await client.xrange(stream, "-", "+")
    assert [dict(e.field_values) for e in written] == [
        {NODE: b"a.1", KIND: UPDATE, DATA: bytes([i])} for i in range(3)
    ]
    assert await client.pttl(stream) > 0
    assert publisher.buffer.bytes == 0


async def test_what_redis_does_not_take_stays_for_later() -> None:
    access = RedisAccess(identity="a.1", keys=Keys("t"), timeout=1.0)
    publisher = Publisher(access, ClusterStats(), limit=1 << 20, stream_maxlen=100)
    publisher.push_room("r", UPDATE, b"\x01")
    dead = f"redis://127.0.0.1:{free_port()}"
    client: coredis.Redis[bytes] = coredis.Redis.from_url(dead, connect_timeout=0.5)
    async with client:
        access.client = client
        assert not await publisher.drain()
    [kept] = publisher.buffer.take(10)
    assert kept.fields[DATA] == b"\x01"
