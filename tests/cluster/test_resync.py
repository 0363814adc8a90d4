"""Resync (resync.py): a room's whole stream, then its stored state, against Redis."""

from __future__ import annotations

from collections.abc import Sequence

import trio

from civicrealtime.cluster.entries import QUERY, UPDATE
from civicrealtime.cluster.links import RoomLink, RoomLinks
from civicrealtime.cluster.publisher import Publisher
from civicrealtime.cluster.reader import Wake
from civicrealtime.cluster.resync import STORE_NODE, Resync
from civicrealtime.cluster.shared import ClusterStats, RedisAccess
from civicrealtime.rooms.messages import FromNode, RoomMessage


async def test_a_resync_reads_the_stream_from_its_start_then_the_store(
    redis_access: RedisAccess,
) -> None:
    client = redis_access.require()
    stream = redis_access.keys.stream("r")
    await client.xadd(stream, {b"n": b"b.1", b"k": UPDATE, b"d": b"\x01"})
    await client.xadd(stream, {b"n": b"b.1", b"k": b"a", b"d": b"presence"})
    last = await client.xadd(stream, {b"n": b"c.1", b"k": UPDATE, b"d": b"\x02"})
    loads: list[str] = []

    async def load_stored(key: str) -> Sequence[bytes]:
        loads.append(key)
        return [b"\x00\x00"]  # an empty update: merged alone, delivered as it is

    links, stats = RoomLinks(), ClusterStats()
    publisher = Publisher(redis_access, stats, limit=1 << 20, stream_maxlen=100)
    wake = Wake(redis_access, publisher)
    resync = Resync(redis_access, links, stats, publisher, wake, load_stored=load_stored)
    send, receive = trio.open_memory_channel[RoomMessage](8)
    link = RoomLink(key="r", stream=stream, mailbox=send)  # position unknown
    links.add(link)
    resync.want("r")
    resync.want("closed-meanwhile")
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(resync.run)
            got = [await receive.receive() for _ in range(3)]
            nursery.cancel_scope.cancel()
    assert got == [
        FromNode(node="b.1", update=b"\x01"),
        FromNode(node="c.1", update=b"\x02"),
        FromNode(node=STORE_NODE, update=b"\x00\x00"),
    ]
    assert link.read_id is not None and link.read_id == tuple(map(int, last.split(b"-")))
    assert loads == ["r"]
    assert stats.resyncs == 1
    published = publisher.buffer.take(10)
    # The reader is woken to read the stream on from there, and the other nodes are asked
    # for their presence again.
    assert [item.stream for item in published] == [wake.stream, stream]
    assert published[1].kind == QUERY
