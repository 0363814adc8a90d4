"""Room lifecycle and isolation, through the real server.

The same behaviours one level down, a `Room` and a `RoomManager` fed through their mailboxes
without a network, are in tests/rooms/.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio
from pycrdt import Doc, Text
from trio_websocket import open_websocket_url
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request

from civicrealtime.app import RealtimeService
from civicrealtime.auth import DevelopmentAuthenticator
from civicrealtime.protocol import messages
from civicrealtime.protocol.closecodes import CloseCode
from civicrealtime.protocol.control import CONTROL_SUBPROTOCOL
from civicrealtime.rooms import MemoryOnly, RoomType, RoomTypeRegistry

from .conftest import RunningServer, StartServer, make_config
from .polling import eventually
from .ydoc_client import YClient


async def test_rejoin_within_grace_reuses_the_live_room(start_server: StartServer) -> None:
    running = await start_server(make_config(rooms={"cleanup_timeout": 30}))
    a = await running.client("grace")
    await a.edit(lambda d: d.get("t", type=Text).insert(0, "kept"))
    handle = running.service.rooms.get("records:grace")
    await eventually(lambda: handle is not None and handle.room.updates_applied == 1)
    await a.ws.aclose()
    await eventually(lambda: handle is not None and handle.members == 0)
    b = await running.client("grace")
    await b.wait_for(lambda: b.text("t") == "kept")
    assert running.service.rooms.get("records:grace") is handle


async def test_empty_room_is_evicted_after_the_grace_period(start_server: StartServer) -> None:
    running = await start_server(make_config(rooms={"cleanup_timeout": 0.2}))
    a = await running.client("short")
    await a.wait_for(lambda: len(a.binary) >= 2)
    await a.ws.aclose()
    await eventually(lambda: running.service.rooms.get("records:short") is None)
    b = await running.client("short")
    await b.wait_for(lambda: len(b.binary) >= 2)
    assert b.text("t") == ""  # memory-only rooms start afresh


async def test_grace_period_ms_of_the_original_is_honoured(start_server: StartServer) -> None:
    running = await start_server(
        make_config(rooms={"cleanup_timeout": 3600, "grace_period_ms": 100})
    )
    a = await running.client("ms")
    await a.wait_for(lambda: len(a.binary) >= 2)
    await a.ws.aclose()
    await eventually(lambda: running.service.rooms.get("records:ms") is None)


async def test_least_recently_used_empty_room_is_evicted_at_max_rooms(
    start_server: StartServer,
) -> None:
    running = await start_server(make_config(rooms={"max_rooms": 2, "cleanup_timeout": 60}))
    rooms = running.service.rooms
    for name in ("old", "newer"):
        c = await running.client(name)
        await c.wait_for(lambda c=c: len(c.binary) >= 2)
        await c.ws.aclose()
        await eventually(lambda name=name: rooms.get(f"records:{name}").members == 0)
    third = await running.client("third")
    await third.wait_for(lambda: len(third.binary) >= 2)
    assert rooms.get("records:old") is None
    assert rooms.get("records:newer") is not None
    assert rooms.get("records:third") is not None


async def test_new_room_refused_when_every_room_has_connections(
    start_server: StartServer,
) -> None:
    running = await start_server(make_config(rooms={"max_rooms": 2}))
    held = [await running.client(name) for name in ("r1", "r2")]
    for c in held:
        await c.wait_for(lambda c=c: len(c.binary) >= 2)
    refused = await running.client("r3")
    await refused.wait_for(lambda: refused.closed is not None)
    assert refused.closed is not None
    assert refused.closed[0] == CloseCode.LIMIT_EXCEEDED
    assert refused.events("error")[0]["error"]["code"] == "ROOM_LIMIT_EXCEEDED"
    # An existing room still takes joiners at the limit.
    more = await running.client("r1")
    await more.wait_for(lambda: len(more.binary) >= 2)


class SlowLoad(MemoryOnly):
    def __init__(self) -> None:
        self.loads = 0

    async def load(self, key: str) -> Sequence[bytes]:
        self.loads += 1
        await trio.sleep(0.2)  # widen the window in which joiners race
        doc = Doc()
        doc.get("t", type=Text).insert(0, "loaded once")
        return [doc.get_update()]


async def test_concurrent_first_joins_share_one_actor(start_server: StartServer) -> None:
    hooks = SlowLoad()
    running = await start_server(
        room_types=RoomTypeRegistry([RoomType(name="records", hooks=hooks)])
    )
    clients = []

    async def join() -> None:
        c = await running.client("crowd")
        await c.wait_for(lambda: c.text("t") == "loaded once")
        clients.append(c)

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(join)
    assert hooks.loads == 1
    assert len(clients) == 20
    handle = running.service.rooms.get("records:crowd")
    assert handle is not None
    assert handle.members == 20
    assert handle.pending_joins == 0


async def test_slow_reader_is_closed_with_1013_and_others_keep_receiving(
    start_server: StartServer,
) -> None:
    running = await start_server(make_config(connection={"outbound_queue": 8, "send_timeout": 30}))
    server = running.service.server
    writer = await running.client("slow")
    fast = await running.client("slow")
    await running.client("slow", read=False)  # never reads a byte
    await fast.wait_for(lambda: len(fast.binary) >= 2)
    await eventually(lambda: running.service.rooms.get("records:slow").members == 3)
    chunk = "x" * 16384
    rounds = 0
    # In lockstep with the fast reader, so only the slow one falls behind; loopback socket
    # buffers can hold megabytes, so keep writing until the server gives up on it.
    while server.stats.closes[CloseCode.TRY_AGAIN_LATER] == 0:
        rounds += 1
        assert rounds <= 2000, "the slow reader was never closed"
        seen = fast.updates_received
        await writer.edit(lambda d: d.get("t", type=Text).insert(0, chunk))
        await fast.wait_for(lambda seen=seen: fast.updates_received > seen)
    await eventually(lambda: running.service.rooms.get("records:slow").members == 2)
    # The others carry on: one more edit reaches the fast reader.
    await writer.edit(lambda d: d.get("t", type=Text).insert(0, "after"))
    await fast.wait_for(lambda: fast.text("t").startswith("after"))
    assert fast.closed is None


class CrashOnMarker(MemoryOnly):
    def received(self, key: str, update: bytes, origin: object = None) -> None:
        if b"BOOM" in update:
            raise RuntimeError("simulated room failure")


async def test_crashing_room_is_isolated(start_server: StartServer) -> None:
    registry = RoomTypeRegistry(
        [RoomType(name="records"), RoomType(name="fragile", hooks=CrashOnMarker())]
    )
    running = await start_server(room_types=registry)
    doomed = await _client(running, "fragile", "x")
    doomed_peer = await _client(running, "fragile", "x")
    survivor_a = await running.client("safe")
    survivor_b = await running.client("safe")
    await doomed_peer.wait_for(lambda: len(doomed_peer.binary) >= 2)
    await survivor_b.wait_for(lambda: len(survivor_b.binary) >= 2)
    await doomed.edit(lambda d: d.get("t", type=Text).insert(0, "BOOM"))
    await doomed_peer.wait_for(lambda: doomed_peer.closed is not None)
    assert doomed_peer.closed is not None
    assert doomed_peer.closed[0] == CloseCode.ROOM_FAILED
    await doomed.wait_for(lambda: doomed.closed is not None)
    assert running.service.rooms.crashes == 1
    await survivor_a.edit(lambda d: d.get("t", type=Text).insert(0, "alive"))
    await survivor_b.wait_for(lambda: survivor_b.text("t") == "alive")
    # The crashed room's key is free again: a reconnect gets a fresh actor.
    again = await _client(running, "fragile", "x")
    await again.wait_for(lambda: len(again.binary) >= 2)


async def _client(running: RunningServer, room_type: str, room: str) -> YClient:
    return await YClient.connect(running.nursery, running.url(room, room_type=room_type))


class FailingLoad(MemoryOnly):
    async def load(self, key: str) -> Sequence[bytes]:
        raise OSError("store unreachable")


async def test_room_that_fails_to_load_refuses_with_4500(start_server: StartServer) -> None:
    registry = RoomTypeRegistry([RoomType(name="records", hooks=FailingLoad())])
    running = await start_server(room_types=registry)
    c = await running.client("unloadable")
    await c.wait_for(lambda: c.closed is not None)
    assert c.closed is not None
    assert c.closed[0] == CloseCode.ROOM_FAILED
    assert not c.binary  # never an empty document in place of the real one


async def _raw_upgrade(port: int, target: str) -> trio.SocketStream:
    """A client that completes the WebSocket handshake and then never reads again."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    client = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(client.send(Request(host="127.0.0.1", target=target)))
    with trio.fail_after(5):
        while not any(isinstance(e, AcceptConnection) for e in client.events()):
            client.receive_data(await stream.receive_some(65536))
    return stream


async def test_stale_connection_is_swept(start_server: StartServer) -> None:
    running = await start_server(
        make_config(connection_cleanup={"check_interval": 0.05, "stale_threshold": 0.3})
    )
    stream = await _raw_upgrade(running.port, "/realtime/records/stale")
    async with stream:
        await eventually(
            lambda: running.service.server.stats.closes[CloseCode.GOING_AWAY] == 1, within=10
        )
    assert running.service.rooms.get("records:stale").members == 0


async def test_graceful_shutdown_closes_with_4503(nursery: trio.Nursery) -> None:
    service = RealtimeService(make_config(), authenticator=DevelopmentAuthenticator())
    port = await nursery.start(service.run)
    async with open_websocket_url(
        f"ws://127.0.0.1:{port}/realtime/records/bye", subprotocols=[CONTROL_SUBPROTOCOL]
    ) as ws:
        for _ in range(3):
            await ws.get_message()
        await ws.send_message(messages.encode_sync_update(_doc_with("pending edit")))
        with trio.fail_after(5):
            service.shutdown()
            frames = []
            try:
                while True:
                    frames.append(await ws.get_message())
            except Exception as exc:  # ConnectionClosed
                code = exc.reason.code  # type: ignore[attr-defined]
        assert code == CloseCode.SHUTTING_DOWN
    with trio.fail_after(5):
        await service.stopped.wait()
    assert service.server.stats.closes[CloseCode.SHUTTING_DOWN] == 1


def _doc_with(text: str) -> bytes:
    doc = Doc()
    doc.get("t", type=Text).insert(0, text)
    return doc.get_update()


async def test_service_runs_inside_a_host_applications_nursery() -> None:
    """The bundled mode of the seed: a host program owns the nursery the service runs in."""
    async with trio.open_nursery() as host:
        service = RealtimeService(make_config(), authenticator=DevelopmentAuthenticator())
        port = await host.start(service.run)
        async with open_websocket_url(
            f"ws://127.0.0.1:{port}/realtime/records/host", subprotocols=[CONTROL_SUBPROTOCOL]
        ) as ws:
            assert "connection.ack" in await ws.get_message()
        service.shutdown()
    assert service.stopped.is_set()
