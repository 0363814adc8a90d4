"""Per-user connection counts over every node (counts.py), against the local Redis."""

from __future__ import annotations

import coredis
import trio

from civicrealtime.cluster.counts import UserCounts
from civicrealtime.cluster.shared import RedisAccess

from ..polling import eventually
from .conftest import other_node


async def alive(access: RedisAccess) -> None:
    await access.require().set(access.keys.node(access.identity), b"1", px=60_000)


async def test_a_check_sums_the_live_nodes_counts(redis_access: RedisAccess) -> None:
    b = other_node(redis_access, "b.1")
    await alive(redis_access)
    await alive(b)
    on_a, on_b = UserCounts(redis_access), UserCounts(b)
    assert await on_a.add("dora") == 1
    assert await on_b.add("dora") == 2
    assert await on_b.add("dora") == 3
    # Node a's heartbeat key expires: its count no longer holds anyone back.
    client = redis_access.require()
    await client.delete([redis_access.keys.node(redis_access.identity)])
    on_b.remove("dora")
    assert await on_b.add("dora") == 2
    assert await client.hgetall(redis_access.keys.user("dora")) == {b"b.1": b"2"}


async def test_without_redis_the_local_count_holds_and_is_written_later(
    redis_access: RedisAccess,
) -> None:
    counts = UserCounts(redis_access)
    redis_access.reader_down = True  # Redis known to be unreachable: fail open, no wait
    assert await counts.add("eve") == 1
    assert await counts.add("eve") == 2
    counts.remove("eve")
    client = redis_access.require()
    key = redis_access.keys.user("eve")
    assert await client.hgetall(key) == {}
    redis_access.reader_down = False
    async with trio.open_nursery() as nursery:
        nursery.start_soon(counts.run)
        await eventually(lambda: "limits" not in redis_access.failing)
        await _until_written(client, key, {b"a.1": b"1"})
        counts.remove("eve")
        await _until_written(client, key, {})
        nursery.cancel_scope.cancel()


async def _until_written(
    client: coredis.Redis[bytes], key: bytes, expected: dict[bytes, bytes]
) -> None:
    with trio.fail_after(5):
        # The writer task announces nothing: poll Redis itself, under a deadline.
        while await client.hgetall(key) != expected:  # noqa: ASYNC110
            await trio.sleep(0.01)


async def test_leaving_removes_this_nodes_counts(redis_access: RedisAccess) -> None:
    await alive(redis_access)
    counts = UserCounts(redis_access)
    await counts.add("dora")
    client = redis_access.require()
    async with client.pipeline(transaction=False) as pipe:
        counts.leave(pipe)
    assert await client.hgetall(redis_access.keys.user("dora")) == {}
