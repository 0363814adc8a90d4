"""A client that never reads: closed with 1013, without stalling its room or any other.

The room never waits on a socket: frames for a member that does not read pile up in its
outbound queue until the queue is full, and then it is closed with 1013 (SLOW_CONSUMER).
Meanwhile its room's other members, and other rooms, keep receiving every edit, each
within a bound we measure. A second test reads what such a client is sent after it
resumes reading: every frame must be whole (a close must never cut one short).
"""

from __future__ import annotations

import trio
from pycrdt import Doc, Text
from wsproto.events import BytesMessage

from civicrealtime.protocol import messages
from civicrealtime.protocol.closecodes import CloseCode

from ..conftest import StartServer, make_config
from ..polling import eventually
from ..ydoc_client import YClient
from .support import RawClient, catch_tracebacks

# A member's edit must reach the other members within this bound, never-reader or not.
DELIVERY_BOUND = 1.0
CHUNK = "x" * 8192
CLOSE_REASON = b'{"code":"SLOW_CONSUMER"}'


def _append(text: str) -> object:
    def change(doc: Doc) -> None:  # type: ignore[type-arg]
        t = doc.get("t", type=Text)
        t.insert(len(str(t)), text)

    return change


async def test_a_client_that_never_reads_is_closed_1013_and_stalls_nothing(
    start_server: StartServer,
) -> None:
    running = await start_server(make_config(connection={"outbound_queue": 16, "send_timeout": 30}))
    server = running.service.server
    worst = 0.0
    with catch_tracebacks() as caught, trio.fail_after(60):
        writer = await running.client("busy")
        reader = await running.client("busy")
        other_writer = await running.client("other")
        other_reader = await running.client("other")
        for client in (writer, reader, other_writer, other_reader):
            await client.wait_for(lambda c=client: len(c.binary) >= 2)
        stuck = await RawClient.connect(running.port, "/realtime/records/busy", rcvbuf=4096)
        await eventually(lambda: running.service.rooms.get("records:busy").members == 3)

        async def edit_and_time(source: YClient, sink: YClient, tag: str) -> float:
            started = trio.current_time()
            await source.edit(_append(f"<{tag}>{CHUNK}"))
            await sink.wait_for(lambda: f"<{tag}>" in sink.text("t"), within=DELIVERY_BOUND * 5)
            return trio.current_time() - started

        rounds = 0
        while server.stats.closes[CloseCode.TRY_AGAIN_LATER] == 0:
            rounds += 1
            assert rounds <= 200, "the never-reading client was never closed"
            worst = max(worst, await edit_and_time(writer, reader, f"b{rounds}"))
            worst = max(worst, await edit_and_time(other_writer, other_reader, f"o{rounds}"))
        # Closed as a slow consumer, and gone from the room; the others carry on.
        await eventually(lambda: running.service.rooms.get("records:busy").members == 2)
        for i in range(5):
            worst = max(worst, await edit_and_time(writer, reader, f"after{i}"))
        assert reader.closed is None
        assert other_reader.closed is None
        assert running.service.stats.slow_consumer_closes == 1
        await stuck.stream.aclose()
        await eventually(lambda: len(server.connections) == 4)
    print(f"\nworst delivery with a never-reading member: {worst * 1000:.0f} ms")
    assert worst < DELIVERY_BOUND, f"an edit took {worst:.3f} s to reach the other member"
    assert not caught.records, caught.lines()


async def test_a_slow_consumer_close_never_tears_a_frame(start_server: StartServer) -> None:
    running = await start_server(
        make_config(connection={"outbound_queue": 4, "send_timeout": 30, "close_timeout": 1})
    )
    server = running.service.server
    torn = []
    with trio.fail_after(60):
        writer = await running.client("tear")
        await writer.wait_for(lambda: len(writer.binary) >= 2)
        for attempt in range(3):
            closed = server.stats.closes[CloseCode.TRY_AGAIN_LATER]
            slow = await RawClient.connect(running.port, "/realtime/records/tear", rcvbuf=4096)
            await eventually(lambda: running.service.rooms.get("records:tear").members == 2)
            sent = 0
            while server.stats.closes[CloseCode.TRY_AGAIN_LATER] == closed:
                sent += 1
                assert sent <= 500, "the slow client was never closed"
                await writer.edit(_append(f"<{attempt}.{sent}>{'y' * 4000}"))
                await trio.sleep(0.002)
            # It reads again: everything it is sent must be whole frames.
            doc: Doc = Doc()  # type: ignore[type-arg]
            parts: list[bytes] = []
            for event in await slow.read_until_closed():
                if not isinstance(event, BytesMessage):
                    continue
                parts.append(bytes(event.data))
                if not event.message_finished:
                    continue
                frame, parts = b"".join(parts), []
                try:
                    message = messages.decode(frame)
                    if isinstance(message, messages.SyncStep2 | messages.SyncUpdate):
                        doc.apply_update(message.update)
                except Exception as exc:
                    torn.append(f"attempt {attempt}: unusable frame {exc!r}: ...{frame[-40:]!r}")
            # A message cut short, that swallowed the close frame (the connection then
            # ended before the declared length was reached).
            rest = b"".join(parts)
            if CLOSE_REASON in rest:
                torn.append(f"attempt {attempt}: close frame inside a frame: ...{rest[-40:]!r}")
    assert not torn, torn
