"""Snapshot leases and trims (leases.py), against the local Redis."""

from __future__ import annotations

import trio

from civicrealtime.cluster.entries import Keys, parse_id
from civicrealtime.cluster.leases import Leases
from civicrealtime.cluster.links import RoomLink, RoomLinks
from civicrealtime.cluster.shared import RedisAccess
from civicrealtime.rooms.messages import RoomMessage

from .conftest import RecordingPipe, other_node, run_beat

TTL = 1.0
RELEASE_AFTER = 3.0


def leases_of(access: RedisAccess, *rooms: str) -> tuple[Leases, RoomLinks]:
    links = RoomLinks()
    for key in rooms:
        send, _ = trio.open_memory_channel[RoomMessage](8)
        links.add(RoomLink(key=key, stream=access.keys.stream(key), mailbox=send))
    leases = Leases(access, links, presence_ttl=TTL, release_after=RELEASE_AFTER)
    return leases, links


async def test_one_node_holds_a_room_lease_until_it_releases_it(
    redis_access: RedisAccess,
) -> None:
    b = other_node(redis_access, "b.1")
    on_a, links_a = leases_of(redis_access, "r")
    on_b, _ = leases_of(b, "r")
    client = redis_access.require()
    now = trio.current_time()
    assert await on_a.ask(client, "r")
    assert not await on_b.ask(client, "r")
    on_a.record("r", True, now)
    on_b.record("r", False, now)
    assert on_a.allowed("r") and not on_b.allowed("r")
    await run_beat(redis_access, now, on_a)  # renewed
    assert on_a.held == {"r"}

    links_a.remove("r")
    on_a.closed("r")
    await run_beat(redis_access, now + 1, on_a)  # not yet: its last snapshot may be coming
    assert not await on_b.ask(client, "r")
    await run_beat(redis_access, now + RELEASE_AFTER + 1, on_a)
    assert on_a.held == frozenset()
    assert await on_b.ask(client, "r")


async def test_a_lease_stops_before_redis_could_give_it_away() -> None:
    leases, _ = leases_of(RedisAccess(identity="a.1", keys=Keys("unused"), timeout=1.0), "r")
    leases.record("r", True, trio.current_time() - TTL * 0.8 - 0.01)
    assert not leases.allowed("r")
    leases.record("r", True, trio.current_time())
    assert leases.allowed("r")
    leases.forget()  # Redis was unreachable: not renewed
    assert not leases.allowed("r")


async def test_a_trim_waits_its_delay_and_survives_an_unanswered_beat(
    redis_access: RedisAccess,
) -> None:
    leases, _ = leases_of(redis_access, "r")
    client = redis_access.require()
    stream = redis_access.keys.stream("r")
    ids = [await client.xadd(stream, {b"k": b"u"}) for _ in range(5)]
    now = trio.current_time()
    leases.record("r", True, now)
    leases.plan_trim("r", parse_id(ids[3]))

    pipe = RecordingPipe()
    early = leases.beat(now + 1)
    early.queue(pipe)  # type: ignore[arg-type]
    assert "xtrim" not in pipe.names()
    due = leases.beat(now + leases.trim_delay + 1)
    due.unanswered()  # Redis did not answer: lease gone, trim kept
    assert leases.held == frozenset()
    await run_beat(redis_access, now + leases.trim_delay + 2, leases)
    assert await client.xlen(stream) == 2


async def test_leaving_releases_every_lease_held(redis_access: RedisAccess) -> None:
    leases, _ = leases_of(redis_access, "r", "s")
    client = redis_access.require()
    for key in ("r", "s"):
        leases.record(key, await leases.ask(client, key), trio.current_time())
    async with client.pipeline(transaction=False) as pipe:
        leases.leave(pipe)
    assert await client.exists([redis_access.keys.lease("r"), redis_access.keys.lease("s")]) == 0
