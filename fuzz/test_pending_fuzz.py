"""Pending chains: updates whose dependencies arrive late, never, or as huge payloads.

Each example runs a program against an in-process server with small budgets: chains of
updates from one writer sent in a drawn order with some links withheld, fresh clients
whose updates build on a base the server never saw, and single payloads of up to 3 MiB.

Properties, checked at every scheduling point of the server's event loop by a watcher
task (a room drops what is over budget within the call that charged it, so no observer
can ever see more): the room's held bytes stay within `max_pending_bytes`, each
connection's within `max_pending_bytes_per_connection`, and held plus document bytes
within `max_document_bytes`. After the program: a chain delivered whole is in the
document, everything still held is dropped after `pending_timeout`, no room crashed,
nothing was logged at ERROR, and the room still relays an ordinary edit between two
other members. The worst held bytes per connection and the worst gap between two
wake-ups of the watcher (an upper bound of any one frame's cost to the loop) are printed.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.lowlevel
from hypothesis import given
from hypothesis import strategies as st
from pycrdt import Doc, Text
from tests.conftest import RunningServer, make_config
from tests.polling import eventually
from tests.ydoc_client import YClient
from trio_websocket import ConnectionClosed

from civicrealtime.app import RealtimeService
from civicrealtime.auth import DevelopmentAuthenticator
from civicrealtime.protocol import messages
from civicrealtime.rooms.room import Room

from .budget import fuzz_settings

KiB = 1024
MiB = 1024 * KiB
ROOM_BUDGET = 2 * MiB
CONNECTION_BUDGET = 512 * KiB
DOCUMENT_LIMIT = 6 * MiB
PENDING_TIMEOUT = 0.5
CONNECTIONS = 3
measured = {"worst_per_connection": 0, "worst_room": 0, "worst_gap": 0.0, "examples": 0}


class Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("civicrealtime"):
            self.records.append(record)


def _chain(steps: int, word: int) -> tuple[list[bytes], str]:
    """One writer's updates, each building on the one before; and the text they make."""
    doc: Doc[Any] = Doc()
    text = doc.get("t", type=Text)
    updates = []
    for i in range(steps):
        before = doc.get_state()
        text.insert(len(str(text)), chr(ord("a") + i % 26) * word)
        updates.append(doc.get_update(before))
    return updates, str(text)


def _fresh_on_missing_base(size: int) -> bytes:
    """A fresh client's update that builds on another client's change never sent."""
    base: Doc[Any] = Doc()
    base.get("t", type=Text).insert(0, "base")
    fresh: Doc[Any] = Doc()
    fresh.apply_update(base.get_update())
    fresh.get("t", type=Text).insert(4, "z" * size)
    return fresh.get_update(base.get_state())


def _step2s(client: YClient) -> int:
    return sum(1 for message in client.binary if isinstance(message, messages.SyncStep2))


async def _settled(client: YClient) -> None:
    """Return once the room has handled every frame the client sent (or it was closed)."""
    if client.closed is not None:
        return
    answered = _step2s(client)
    try:
        await client.send_step1()
    except ConnectionClosed:
        # Closed (4029 for what it held) before its own reader saw the close: wait until it
        # has, or the final check would take it for open and expect what it sent after.
        await client.wait_for(lambda: client.closed is not None)
        return
    await client.wait_for(lambda: client.closed is not None or _step2s(client) > answered)


chain_ops = st.tuples(
    st.just("chain"),
    st.integers(0, CONNECTIONS - 1),
    st.integers(2, 40),  # links
    st.integers(1, 4 * KiB),  # bytes per link
    st.randoms(use_true_random=False),  # the order and what is withheld
    st.floats(0, 0.5),  # the share of links withheld
)
huge_ops = st.tuples(
    st.just("huge"), st.integers(0, CONNECTIONS - 1), st.integers(64 * KiB, 3 * MiB)
)
fresh_ops = st.tuples(st.just("fresh"), st.integers(0, CONNECTIONS - 1), st.integers(1, 256 * KiB))
programs = st.lists(st.one_of(chain_ops, huge_ops, fresh_ops), min_size=1, max_size=6)


Sends = list[tuple[int, list[bytes], str | None]]


def _prepare(program: list[tuple[Any, ...]]) -> Sends:
    """Each op as (connection, frames in order, text that must end up in the room or None).

    Built before the server starts: encoding a 3 MiB payload here would otherwise count as
    a stall of the loop the server shares with this test.
    """
    sends: Sends = []
    for op in program:
        if op[0] == "chain":
            _, index, links, word, rng, withheld_share = op
            updates, text = _chain(links, word)
            order = list(range(links))
            rng.shuffle(order)
            withheld = set(order[: int(links * withheld_share)])
            frames = [updates[i] for i in order if i not in withheld]
            # Small enough never to be dropped for a budget, and whole: it must resolve,
            # unless its connection was closed for what it held before.
            must = not withheld and links * word < CONNECTION_BUDGET // 4
            sends.append((index, frames, text if must else None))
        elif op[0] == "huge":
            sends.append((op[1], [_chain(2, op[2])[0][1]], None))
        else:
            sends.append((op[1], [_fresh_on_missing_base(op[2])], None))
    return sends


async def _synced(client: YClient) -> None:
    await client.wait_for(lambda: len(client.binary) >= 2)


async def _run(running: RunningServer, program: Sends) -> None:
    service = running.service
    editor = await running.client("chains")
    watcher = await running.client("chains")
    await _synced(editor)
    await _synced(watcher)
    handle = service.rooms.get("records:chains")
    assert handle is not None
    room: Room = handle.room
    senders: dict[int, YClient] = {}
    expected: list[tuple[str, YClient]] = []
    done = trio.Event()

    async def watch() -> None:
        rooms = service.config.rooms
        last = trio.current_time()
        while not done.is_set():
            now = trio.current_time()
            measured["worst_gap"] = max(measured["worst_gap"], now - last)
            last = now
            held = room.pending
            assert held.total <= rooms.max_pending_bytes
            assert room.size_estimate + held.total <= rooms.max_document_bytes
            for member in room.members.values():
                assert held.of(member.conn_id) <= rooms.max_pending_bytes_per_connection
                measured["worst_per_connection"] = max(
                    measured["worst_per_connection"], held.of(member.conn_id)
                )
            measured["worst_room"] = max(measured["worst_room"], held.total)
            await trio.lowlevel.checkpoint()

    async def sender(index: int) -> YClient:
        client = senders.get(index)
        if client is None or client.closed is not None:
            client = await running.client("chains")
            await client.wait_for(lambda: len(client.binary) >= 2)
            senders[index] = client
        return client

    async def send(client: YClient, update: bytes) -> None:
        if client.closed is None:
            try:
                await client.ws.send_message(messages.encode_sync_update(update))
            except ConnectionClosed:
                return  # closed for its pending budget while sending: allowed

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        for index, frames, text in program:
            client = await sender(index)
            for update in frames:
                await send(client, update)
            if text is not None:
                expected.append((text, client))
        # Whatever waits for a link never sent is dropped after the timeout.
        # A barrier: the room answers a sync step 1 after everything sent before it.
        for client in senders.values():
            await _settled(client)
        await eventually(lambda: not room.pending, within=10 + PENDING_TIMEOUT)
        done.set()
    document = str(room.doc.get("t", type=Text))
    for text, client in expected:
        if client.closed is None:
            assert text in document
    # The room still relays between two members that behave.
    await editor.edit(lambda d: d.get("t", type=Text).insert(0, "still here"))
    await watcher.wait_for(lambda: watcher.text("t").startswith("still here"))
    assert service.rooms.crashes == 0


@fuzz_settings(scale=0.6)
@given(program=programs)
def test_pending_chains_stay_within_their_budgets(program: list[tuple[Any, ...]]) -> None:
    sends = _prepare(program)
    handler = Errors()
    logging.getLogger().addHandler(handler)
    try:

        async def main() -> None:
            config = make_config(
                rooms={
                    "max_pending_bytes": ROOM_BUDGET,
                    "max_pending_bytes_per_connection": CONNECTION_BUDGET,
                    "max_document_bytes": DOCUMENT_LIMIT,
                    "pending_timeout": PENDING_TIMEOUT,
                },
                rate_limiting={"burst": 1000, "messages_per_second": 1000},
            )
            service = RealtimeService(config, authenticator=DevelopmentAuthenticator())
            async with trio.open_nursery() as nursery:
                port = await nursery.start(service.run)
                running = RunningServer(service=service, port=port, nursery=nursery)
                with trio.fail_after(60):
                    await _run(running, sends)
                service.shutdown()
                with trio.fail_after(10):
                    await service.stopped.wait()
                nursery.cancel_scope.cancel()

        trio.run(main)
    finally:
        logging.getLogger().removeHandler(handler)
    assert not handler.records, [r.getMessage() for r in handler.records]
    measured["examples"] += 1


@pytest.fixture(scope="module", autouse=True)
def report_worst() -> object:
    yield
    print(
        f"\npending fuzz: {measured['examples']} programs; worst held per connection "
        f"{measured['worst_per_connection'] / KiB:.0f} KiB (budget {CONNECTION_BUDGET / KiB:.0f}),"
        f" per room {measured['worst_room'] / KiB:.0f} KiB (budget {ROOM_BUDGET / KiB:.0f}); "
        f"worst gap between two wake-ups of the loop {measured['worst_gap'] * 1000:.1f} ms"
    )
