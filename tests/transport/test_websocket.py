"""The server-side WebSocket (transport/websocket.py), driven by a wsproto client over an
in-memory stream: the upgrade, whole messages per read, pings, the size limit, protocol
violations and both closing handshakes, with no network."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from civicrealtime.protocol import closecodes
from civicrealtime.transport.websocket import (
    PeerClosed,
    ProtocolViolation,
    ServerWebSocket,
    request_headers,
)


class Client:
    """A wsproto client on one end of a memory stream pair."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)

    async def send(self, *events: Event) -> None:
        await self.stream.send_all(b"".join(self.ws.send(event) for event in events))

    async def events(self) -> list[Event]:
        """What the server sent so far (waits for at least one read)."""
        data = await self.stream.receive_some(65536)
        self.ws.receive_data(data or None)
        return list(self.ws.events())


async def upgraded(
    max_message_size: int = 1024, subprotocols: tuple[str, ...] = ()
) -> tuple[ServerWebSocket, Client]:
    client_end, server_end = trio.testing.memory_stream_pair()
    server = ServerWebSocket(server_end, max_message_size=max_message_size)
    client = Client(client_end)
    await client.send(
        Request(
            host="localhost",
            target="/realtime/records/a?x=1",
            subprotocols=list(subprotocols),
            extra_headers=[(b"Origin", b"https://civic.example")],
        )
    )
    request = await server.handshake()
    assert request is not None
    assert request.target == "/realtime/records/a?x=1"
    assert request.subprotocols == list(subprotocols)
    assert ("origin", "https://civic.example") in request_headers(request)
    chosen = subprotocols[0] if subprotocols else None
    assert await server.accept(chosen)
    [accepted] = await client.events()
    assert isinstance(accepted, AcceptConnection)
    assert accepted.subprotocol == chosen
    return server, client


async def test_the_upgrade_selects_the_offered_subprotocol() -> None:
    await upgraded(subprotocols=("civicrealtime.control.v1", "auth.x"))


async def test_every_message_of_one_read_comes_back_from_one_receive() -> None:
    server, client = await upgraded()
    await client.send(
        BytesMessage(data=b"\x00\x02\x01"), TextMessage(data="{}"), BytesMessage(data=b"\x01")
    )
    assert await server.receive() == [b"\x00\x02\x01", "{}", b"\x01"]


async def test_a_fragmented_message_is_whole_once_its_last_part_arrives() -> None:
    server, client = await upgraded()
    await client.send(BytesMessage(data=b"ab", message_finished=False))
    assert await server.receive() == []
    await client.send(BytesMessage(data=b"cd", message_finished=True))
    assert await server.receive() == [b"abcd"]
    await client.send(TextMessage(data="é", message_finished=False), TextMessage(data="😀"))
    assert await server.receive() == ["é😀"]


async def test_a_message_over_the_limit_ends_with_1009_after_the_ones_before_it() -> None:
    server, client = await upgraded(max_message_size=1024)
    await client.send(BytesMessage(data=b"ok"), BytesMessage(data=b"x" * 2000))
    assert await server.receive() == [b"ok"]
    with pytest.raises(ProtocolViolation) as refused:
        await server.receive()
    assert refused.value.close is closecodes.MESSAGE_TOO_BIG
    # Also when the parts of a fragmented message add up past it.
    server, client = await upgraded(max_message_size=1024)
    for _ in range(3):
        await client.send(BytesMessage(data=b"y" * 400, message_finished=False))
    with pytest.raises(ProtocolViolation):
        for _ in range(3):
            await server.receive()


async def test_text_that_is_not_utf8_closes_1007() -> None:
    server, client = await upgraded()
    # A masked text frame whose payload is invalid UTF-8 (mask of zeros: the bytes as is).
    await client.stream.send_all(b"\x81\x82\x00\x00\x00\x00\xff\xfe")
    with pytest.raises(ProtocolViolation) as refused:
        await server.receive()
    assert refused.value.close is closecodes.INVALID_PAYLOAD


async def test_an_unmasked_frame_closes_1002() -> None:
    server, client = await upgraded()
    server_framing = Connection(ConnectionType.SERVER)  # servers do not mask
    await client.stream.send_all(server_framing.send(BytesMessage(data=b"hi")))
    with pytest.raises(ProtocolViolation) as refused:
        await server.receive()
    assert refused.value.close is closecodes.PROTOCOL_ERROR


async def test_pings_are_answered_and_a_pong_ends_our_ping() -> None:
    server, client = await upgraded()
    await client.send(Ping(payload=b"p1"))
    assert await server.receive() == []
    [pong] = await client.events()
    assert pong == Pong(payload=b"p1")

    async def answer_ping() -> None:
        [ping] = await client.events()
        assert isinstance(ping, Ping)
        await client.send(ping.response())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(answer_ping)
        got_pong = trio.Event()

        async def read() -> None:
            assert await server.receive() == []
            got_pong.set()

        nursery.start_soon(read)
        assert await server.ping()
        await got_pong.wait()


async def test_the_peers_close_is_answered_and_ends_the_connection() -> None:
    server, client = await upgraded()
    await client.send(BytesMessage(data=b"last"), CloseConnection(code=1000, reason="bye"))
    assert await server.receive() == [b"last"]
    with pytest.raises(PeerClosed) as closed:
        await server.receive()
    assert (closed.value.code, closed.value.reason) == (1000, "bye")
    events = await client.events()
    assert isinstance(events[0], CloseConnection) and events[0].code == 1000
    assert server.closed == (1000, "bye")
    assert await server.write(b"x") is False
    assert server.write_now(b"x") == -1


async def test_tcp_ending_without_a_close_frame_is_1006() -> None:
    server, client = await upgraded()
    await client.stream.aclose()
    with pytest.raises(PeerClosed) as closed:
        await server.receive()
    assert closed.value.code == 1006


async def test_our_close_waits_for_the_peers_reply_then_ends_tcp() -> None:
    server, client = await upgraded()

    async def reply() -> None:
        [close] = await client.events()
        assert isinstance(close, CloseConnection)
        assert (close.code, close.reason) == (4001, '{"code":"AUTH_FAILED"}')
        await client.send(close.response())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reply)
        with trio.fail_after(5):
            await server.aclose(4001, '{"code":"AUTH_FAILED"}')
    assert server.closed == (4001, '{"code":"AUTH_FAILED"}')
    assert await client.stream.receive_some(10) == b""  # TCP ended


async def test_messages_we_send_are_framed_for_the_client() -> None:
    server, client = await upgraded()
    assert await server.send_message('{"type":"error"}')
    assert await server.write(b"\x82\x01\x07")  # a pre-framed broadcast
    events = await client.events()
    assert events == [TextMessage(data='{"type":"error"}'), BytesMessage(data=b"\x07")]
    # A memory stream has no descriptor: the direct write defers to the awaited one.
    assert server.write_now(b"\x82\x01\x07") == 0


async def test_a_request_that_is_not_an_upgrade_gets_400_and_tcp_ends() -> None:
    client_end, server_end = trio.testing.memory_stream_pair()
    server = ServerWebSocket(server_end, max_message_size=1024)
    await client_end.send_all(b"GET /realtime/records/a HTTP/1.1\r\nHost: x\r\n\r\n")
    assert await server.handshake() is None
    answer = b""
    while chunk := await client_end.receive_some(4096):
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 ")


async def test_a_rejection_carries_its_status_and_body() -> None:
    client_end, server_end = trio.testing.memory_stream_pair()
    server = ServerWebSocket(server_end, max_message_size=1024)
    client = Client(client_end)
    await client.send(Request(host="localhost", target="/elsewhere"))
    request = await server.handshake()
    assert request is not None
    await server.reject(404, b"not a realtime endpoint\n")
    events = await client.events()
    assert isinstance(events[0], RejectConnection) and events[0].status_code == 404
    body = b"".join(e.data for e in events if isinstance(e, RejectData))
    assert body == b"not a realtime endpoint\n"


async def test_frames_sent_with_the_upgrade_request_are_not_lost() -> None:
    """A client may pipeline its first frames behind the request: they are read after the
    101, not handed to the HTTP parser."""
    client_end, server_end = trio.testing.memory_stream_pair()
    server = ServerWebSocket(server_end, max_message_size=1024)
    client = Client(client_end)
    request = client.ws.send(Request(host="localhost", target="/realtime/records/a"))
    client_frames = Connection(ConnectionType.CLIENT)
    first = client_frames.send(BytesMessage(data=b"\x00\x00\x01\x00"))
    await client_end.send_all(request + first)
    assert await server.handshake() is not None
    assert await server.accept(None)
    assert await server.receive() == [b"\x00\x00\x01\x00"]


async def test_a_request_head_over_the_bound_gets_431() -> None:
    client_end, server_end = trio.testing.memory_stream_pair()
    server = ServerWebSocket(server_end, max_message_size=1024)
    await client_end.send_all(b"GET / HTTP/1.1\r\nX-Pad: " + b"a" * 20_000)
    assert await server.handshake() is None
    answer = b""
    while chunk := await client_end.receive_some(4096):
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 431 ")
