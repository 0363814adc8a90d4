"""Protocol fuzzing: many connections send hostile frames at once to a live server.

Properties: no exception escapes a connection or a room (no crash is counted), the server
keeps serving every connection that behaves, and a bystander room's round trip stays
within a stated bound while the storm runs (the worst case is printed).
"""

from __future__ import annotations

import gc
import logging

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from pycrdt import Text
from tests.conftest import RunningServer, make_config
from trio_websocket import ConnectionClosed

from civicrealtime.app import RealtimeService
from civicrealtime.auth import DevelopmentAuthenticator

from .budget import fuzz_settings
from .frames import hostile_frames

# A room unrelated to the storm must answer a ping within this bound (seconds).
BYSTANDER_BOUND = 1.0
measured = {"worst_roundtrip": 0.0}


class NoEscapes(logging.Handler):
    """Fails the test on any traceback logged by the server's isolation boundaries."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("civicrealtime"):
            self.records.append(record)


async def _storm(running: RunningServer, batches: list[list[bytes | str]]) -> float:
    """Send each batch on its own connection, concurrently; return the bystander's worst RTT."""
    bystander = await running.client("bystander")
    await bystander.wait_for(lambda: len(bystander.binary) >= 2)
    worst = 0.0

    async def attacker(index: int, frames: list[bytes | str]) -> None:
        client = await running.client(f"storm{index % 3}")
        for frame in frames:
            if client.closed is not None:
                return
            try:
                await client.ws.send_message(frame)
            except ConnectionClosed:  # the server may close an attacker (1009): allowed
                return
        await client.ws.aclose()

    async def probe() -> None:
        nonlocal worst
        for i in range(5):
            pongs = sum(1 for f in bystander.text_frames if f.get("type") == "pong")
            started = trio.current_time()
            await bystander.ws.send_message('{"type":"ping"}')
            await bystander.wait_for(
                lambda p=pongs: (
                    sum(1 for f in bystander.text_frames if f.get("type") == "pong") > p
                ),
                within=10,
            )
            worst = max(worst, trio.current_time() - started)
            await bystander.edit(lambda d, i=i: d.get("t", type=Text).insert(0, str(i)))

    async with trio.open_nursery() as nursery:
        for index, frames in enumerate(batches):
            nursery.start_soon(attacker, index, frames)
        nursery.start_soon(probe)
    await bystander.ws.aclose()
    return worst


@fuzz_settings()
@given(batches=st.lists(st.lists(hostile_frames, min_size=1, max_size=8), min_size=1, max_size=8))
def test_hostile_frames_never_escape_and_never_stall_others(
    batches: list[list[bytes | str]],
) -> None:
    handler = NoEscapes()
    logging.getLogger().addHandler(handler)
    # The bystander's round trip must measure the daemon, not this process's own heap:
    # hypothesis keeps every example's choices (its tree of examples grows for the whole
    # run), and a gen-2 collection over it took 0.3 s by a few thousand examples, which
    # the bystander then saw as a stall. Collect the last example's garbage here, outside
    # the timed part, and freeze the survivors so that collections during the storm scan
    # only what this example allocates, as they would in a daemon's own process.
    gc.collect()
    gc.freeze()
    try:

        async def main() -> float:
            config = make_config(connection={"max_message_size": 65536})
            service = RealtimeService(config, authenticator=DevelopmentAuthenticator())
            async with trio.open_nursery() as nursery:
                port = await nursery.start(service.run)
                running = RunningServer(service=service, port=port, nursery=nursery)
                with trio.fail_after(30):
                    worst = await _storm(running, batches)
                assert service.rooms.crashes == 0
                service.shutdown()
                with trio.fail_after(10):
                    await service.stopped.wait()
                nursery.cancel_scope.cancel()
            return worst

        worst = trio.run(main)
    finally:
        logging.getLogger().removeHandler(handler)
    assert not handler.records, [r.getMessage() for r in handler.records]
    measured["worst_roundtrip"] = max(measured["worst_roundtrip"], worst)
    assert worst < BYSTANDER_BOUND, f"bystander round trip {worst:.3f} s"


@pytest.fixture(scope="module", autouse=True)
def report_worst() -> object:
    yield
    gc.unfreeze()  # later tests in the same process collect as usual
    worst = measured["worst_roundtrip"] * 1000
    print(f"\nworst bystander round trip during the storms: {worst:.1f} ms")
