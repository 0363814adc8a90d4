"""A storm of connections that drop right after the handshake (it crashes pycrdt-websocket).

Hundreds of clients send the upgrade and vanish: before the 101 arrives, right after it,
with a FIN or with a reset, while their join is still in progress. The daemon keeps
serving a room that edits throughout, and every counter returns to zero: open
connections, sockets, per-IP and per-user limits, room members, rooms. Nothing may be
logged as a failure: a client that leaves is not an error.
"""

from __future__ import annotations

import trio
from pycrdt import Text

from civicrealtime.config import RealtimeConfig

from ..conftest import RunningServer, StartServer, make_config
from ..polling import eventually
from .support import catch_tracebacks, raw_upgrade, reset_on_close

BATCHES = 6
PER_BATCH = 50  # 300 connections in all, 50 at a time
STORM_ROOMS = 5


def storm_config() -> RealtimeConfig:
    return make_config(
        rooms={"cleanup_timeout": 0.2},
        rate_limiting={"connections_per_ip": 1000, "connections_per_user": 1000},
    )


async def _drop(port: int, index: int, mode: int | None = None) -> None:
    """0: close before the 101; 1: reset after it; 2: close after it; 3: reset before it."""
    mode = index % 4 if mode is None else mode
    target = f"/realtime/records/storm{index % STORM_ROOMS}"
    stream = await raw_upgrade(port, target, wait_for_101=mode in (1, 2))
    if mode in (1, 3):
        reset_on_close(stream)
    await stream.aclose()


async def test_handshake_storm_keeps_serving_and_counters_return_to_zero(
    start_server: StartServer,
) -> None:
    running: RunningServer = await start_server(storm_config())
    service = running.service
    server = service.server
    with catch_tracebacks() as caught, trio.fail_after(60):
        editor = await running.client("steady")
        watcher = await running.client("steady")
        await watcher.wait_for(lambda: len(watcher.binary) >= 2)
        for batch in range(BATCHES):
            async with trio.open_nursery() as storm:
                for i in range(PER_BATCH):
                    storm.start_soon(_drop, running.port, batch * PER_BATCH + i)
                # The daemon keeps serving while the storm runs.
                word = f"<{batch}>"
                await editor.edit(
                    lambda d, w=word: d.get("t", type=Text).insert(
                        len(str(d.get("t", type=Text))), w
                    )
                )
                await watcher.wait_for(lambda w=word: watcher.text("t").endswith(w))
        assert watcher.text("t") == "".join(f"<{b}>" for b in range(BATCHES))
        # Everything the storm opened is gone again.
        await eventually(lambda: len(server.connections) == 2, within=10)
        await eventually(
            lambda: all(service.rooms.get(f"records:storm{k}") is None for k in range(STORM_ROOMS)),
            within=10,
        )
        assert server.limits.tracked == 3  # the two steady clients: one IP, two users
        await editor.ws.aclose()
        await watcher.ws.aclose()
        await eventually(lambda: server.limits.tracked == 0 and not server.connections, 10)
        await eventually(lambda: server._open_sockets == 0, 10)
        await eventually(lambda: service.rooms.statistics().live == 0, 10)
        assert service.rooms.statistics().connections == 0
        assert service.rooms.crashes == 0
    assert not caught.records, caught.lines()


async def test_handshake_storm_logs_no_traceback(start_server: StartServer) -> None:
    running = await start_server(storm_config())
    with catch_tracebacks() as caught, trio.fail_after(30):
        async with trio.open_nursery() as storm:
            for i in range(100):
                storm.start_soon(_drop, running.port, i, 1 + 2 * (i % 2))
        await eventually(lambda: running.service.server._open_sockets == 0, 10)
        await eventually(lambda: running.service.rooms.statistics().live == 0, 10)
    assert not caught.records, caught.lines()


async def test_a_client_too_slow_to_send_its_upgrade_is_dropped_without_a_failure(
    start_server: StartServer,
) -> None:
    """A slow loris: half a request line, then nothing. It is cut at `handshake_timeout`,
    quietly: being slow is not a server failure."""
    running: RunningServer = await start_server(make_config(connection={"handshake_timeout": 0.2}))
    with catch_tracebacks() as tracebacks:
        stream = await trio.open_tcp_stream("127.0.0.1", running.port)
        await stream.send_all(b"GET /realtime/records/slow HTTP/1.1\r\nHost: x\r\n")
        with trio.fail_after(5):
            assert await stream.receive_some(1024) == b""  # TCP closed by the server
        await stream.aclose()
        await eventually(lambda: running.service.server._open_sockets == 0, within=5)
    assert not tracebacks.records, [r.getMessage() for r in tracebacks.records]
