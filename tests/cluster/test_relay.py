"""The room relay (relay.py) without Redis: what rooms hand over, what reaches them.

The service is built but not run: its parts are wired, its client is None (Redis counts
as unreachable), so everything published stays in the publish buffer to be looked at.
"""

from __future__ import annotations

import json

import pytest
import trio

from civicrealtime.cluster import ClusterService
from civicrealtime.cluster.entries import (
    AWARENESS,
    DATA,
    NODE,
    QUERY,
    RELOAD,
    UPDATE,
    format_id,
)
from civicrealtime.cluster.outbox import Outgoing
from civicrealtime.protocol.awareness import (
    AwarenessEntry,
    decode_awareness_update,
    encode_awareness_update,
)
from civicrealtime.protocol.messages import encode_awareness
from civicrealtime.rooms.messages import FromNode, NodeGone, RoomMessage

from ..conftest import make_config
from .conftest import RecordingPipe, entry

Mailbox = tuple[trio.MemorySendChannel[RoomMessage], trio.MemoryReceiveChannel[RoomMessage]]


@pytest.fixture
def service() -> ClusterService:
    return ClusterService(make_config(cluster={"enabled": True, "key_prefix": "t"}))


def published(service: ClusterService) -> list[Outgoing]:
    return service.publisher.buffer.take(1000)


async def open_room(service: ClusterService, key: str, size: int = 8) -> Mailbox:
    send, receive = trio.open_memory_channel[RoomMessage](size)
    assert await service.relay.opened(key, send) == ()  # Redis unreachable: nothing yet
    return send, receive


def presence(client: int, clock: int, state: object) -> bytes:
    return encode_awareness_update(
        [AwarenessEntry(client_id=client, clock=clock, state=json.dumps(state))]
    )


async def test_a_room_opened_without_redis_is_read_only_after_a_resync(
    service: ClusterService,
) -> None:
    await open_room(service, "r")
    # Its stream position is unknown until a resync finds it: not read before.
    assert service.relay.positions(trio.current_time()) == ({}, False)
    assert service.statistics()["rooms"] == 1


async def test_other_nodes_entries_reach_the_room_and_its_own_do_not(
    service: ClusterService,
) -> None:
    _, receive = await open_room(service, "r")
    stream = service.keys.stream("r")
    me = service.identity.encode()
    service.relay.received(
        {
            stream: [
                entry("1-0", n=b"b.1", k=UPDATE, d=b"\x01"),
                entry("1-1", n=me, k=UPDATE, d=b"\x02"),
                entry("1-2", n=b"b.1", k=AWARENESS, d=b"\x03"),
            ],
            b"t:room:closed-meanwhile:stream": [entry("1-3", n=b"b.1", k=UPDATE, d=b"\x04")],
        }
    )
    got = [receive.receive_nowait(), receive.receive_nowait()]
    assert got == [FromNode(node="b.1", update=b"\x01"), FromNode(node="b.1", awareness=b"\x03")]
    with pytest.raises(trio.WouldBlock):
        receive.receive_nowait()
    assert service.stats.delivered == 2
    # Read on from the last entry, whoever wrote it.
    assert service.relay.positions(trio.current_time()) == ({stream: b"1-2"}, False)


async def test_a_presence_query_is_answered_with_the_local_clients(
    service: ClusterService,
) -> None:
    await open_room(service, "r")
    service.relay.local_awareness("r", encode_awareness(presence(7, 1, {"name": "a"})))
    service.relay.local_update("r", b"\x09")
    published(service)
    service.relay.received({service.keys.stream("r"): [entry("1-0", n=b"b.1", k=QUERY, d=b"")]})
    [answer] = published(service)
    assert (answer.stream, answer.kind, answer.fields[NODE]) == (
        service.keys.stream("r"),
        AWARENESS,
        service.identity.encode(),
    )
    assert [e.client_id for e in decode_awareness_update(answer.fields[DATA])] == [7]


async def test_a_room_closing_withdraws_its_clients_presence(service: ClusterService) -> None:
    send, _ = await open_room(service, "r")
    service.relay.local_awareness("r", encode_awareness(presence(7, 4, {"name": "a"})))
    assert [item.kind for item in published(service)] == [AWARENESS]
    service.relay.closed("r")
    [removal] = published(service)
    assert removal.kind == AWARENESS
    assert decode_awareness_update(removal.fields[DATA]) == [
        AwarenessEntry(client_id=7, clock=5, state="null")
    ]
    with pytest.raises(trio.ClosedResourceError):
        send.send_nowait(NodeGone(node="x"))
    assert service.statistics()["rooms"] == 0


async def test_snapshots_need_the_lease_and_plan_a_trim(service: ClusterService) -> None:
    await open_room(service, "r")
    service.relay.received({service.keys.stream("r"): [entry("5-0", n=b"b.1", k=QUERY, d=b"")]})
    assert not service.relay.snapshot_allowed("r")
    service.leases.record("r", True, trio.current_time())
    assert service.relay.snapshot_allowed("r")
    service.relay.snapshot_written("r")
    pipe = RecordingPipe()
    later = trio.current_time() + service.leases.trim_delay + 1
    service.leases.beat(later).queue(pipe)  # type: ignore[arg-type]
    trims = [(args[0], args[2]) for name, args in pipe.commands if name == "xtrim"]
    # Nothing was delivered: every entry read so far is in the snapshot.
    assert trims == [(service.keys.stream("r"), format_id((5, 1)))]


async def test_a_reload_entry_asks_for_a_resync(service: ClusterService) -> None:
    await open_room(service, "r")
    service.relay.received({service.keys.stream("r"): [entry("1-0", n=b"b.1", k=RELOAD, d=b"")]})
    assert "r" in service.resync._wanted


async def test_a_full_mailbox_holds_its_stream_back_and_a_gone_room_is_dropped(
    service: ClusterService,
) -> None:
    _, receive = await open_room(service, "full", size=1)
    _, gone = await open_room(service, "gone")
    stream = service.keys.stream("full")
    updates = [entry(f"1-{i}", n=b"b.1", k=UPDATE, d=bytes([i])) for i in range(3)]
    service.relay.received({stream: updates})
    assert service.relay.positions(trio.current_time()) == ({}, True)
    gone.close()
    service.relay.received({service.keys.stream("gone"): [entry("1-0", n=b"b.1", k=UPDATE)]})
    for i in range(3):
        assert receive.receive_nowait() == FromNode(node="b.1", update=bytes([i]))
        service.relay.positions(trio.current_time())  # hands over what was parked
    assert service.relay.positions(trio.current_time()) == ({stream: b"1-2"}, False)
    assert service.statistics()["rooms"] == 1
