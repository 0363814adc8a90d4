"""Hostile members (issue #20): a viewer must not crash a room, freeze it, or fake presence.

Each test is one reproduction from the issue, run against the real server: awareness
clocks at the top of lib0's range, oversized awareness frames, presence for client ids
another connection owns, ping floods, and a slow reader fed large frames.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import trio
from pycrdt import Text
from trio_websocket import ConnectionClosed

from civicrealtime.protocol import messages
from civicrealtime.protocol.awareness import (
    AwarenessEntry,
    decode_awareness_update,
    encode_awareness_update,
)
from civicrealtime.protocol.closecodes import CloseCode
from civicrealtime.protocol.varint import MAX_SAFE_INTEGER, encode_var_bytes, encode_var_uint

from . import processes
from .conftest import StartServer, make_config
from .faults.support import RawClient, catch_tracebacks
from .polling import eventually
from .test_access import joined, start_with_tokens, token
from .ydoc_client import YClient


def top_clock_frame(client_id: int = 4242) -> bytes:
    """The issue's frame: this client at clock 2**53 - 1, state "{}"."""
    return b"\x01" + encode_var_bytes(
        b"\x01" + encode_var_uint(client_id) + bytes.fromhex("ffffffffffffff0f") + b"\x02{}"
    )


def awareness_frame(*entries: tuple[int, int, Any]) -> bytes:
    payload = encode_awareness_update(
        AwarenessEntry(client_id=cid, clock=clock, state=json.dumps(state))
        for cid, clock, state in entries
    )
    return messages.encode_awareness(payload)


def entries_seen(client: YClient) -> list[AwarenessEntry]:
    return [
        entry
        for message in client.binary
        if isinstance(message, messages.AwarenessMessage)
        for entry in decode_awareness_update(message.payload)
    ]


def errors(client: YClient, code: str) -> list[dict[str, Any]]:
    return [e for e in client.events("error") if e["error"]["code"] == code]


async def marker(sender: YClient, watchers: list[YClient], client_id: int) -> None:
    """A round trip through the room: what `sender` sent before has been handled."""
    await sender.ws.send_message(awareness_frame((client_id, 1, {"marker": True})))
    for watcher in watchers:
        await watcher.wait_for(lambda w=watcher: client_id in w.awareness)


# -- 1. clocks at the top of the range -------------------------------------------------------


async def test_a_clock_at_the_top_of_the_range_then_a_leave_never_crashes_the_room(
    start_server: StartServer,
) -> None:
    running = await start_server()
    editor = await running.client("top")
    await editor.wait_for(lambda: len(editor.binary) >= 2)
    with catch_tracebacks() as caught:
        for victim in (4242, 4243, 4244):
            attacker = await running.client("top")
            await attacker.ws.send_message(top_clock_frame(victim))
            await editor.wait_for(lambda v=victim: v in editor.awareness)
            await attacker.ws.aclose()
            # Removed at the same clock (it cannot go higher), which peers accept.
            await editor.wait_for(lambda v=victim: v not in editor.awareness)
            assert entries_seen(editor)[-1] == AwarenessEntry(
                client_id=victim, clock=MAX_SAFE_INTEGER, state="null"
            )
        # Stuck at the top, as in y-protocols: the same clock again changes nothing.
        again = await running.client("top")
        await again.ws.send_message(top_clock_frame(4242))
        await marker(again, [editor], 8)
        assert 4242 not in editor.awareness
        await editor.edit(lambda d: d.get("t", type=Text).insert(0, "still here"))
        await marker(editor, [editor], 7)
    assert editor.closed is None
    assert running.service.rooms.crashes == 0
    assert not caught.records, caught.lines()


def test_a_clock_at_the_top_of_the_range_through_the_daemon(tmp_path: Path) -> None:
    port = processes.free_port()
    config = f"host: 127.0.0.1\nport: {port}\nhttp: {{port: 0}}\nauth: {{mode: development}}\n"
    proc = processes.spawn(tmp_path, config, port=port)
    url = f"ws://127.0.0.1:{port}/realtime/records/top"
    try:

        async def attack() -> tuple[int, int, Any]:
            async with trio.open_nursery() as nursery:
                editor = await YClient.connect(nursery, url, token="editor")
                await editor.wait_for(lambda: len(editor.binary) >= 2)
                for victim in (4242, 4243, 4244):
                    attacker = await YClient.connect(nursery, url, token="viewer")
                    await attacker.ws.send_message(top_clock_frame(victim))
                    await editor.wait_for(lambda v=victim: v in editor.awareness)
                    await attacker.ws.aclose()
                    await editor.wait_for(lambda v=victim: v not in editor.awareness)
                await marker(editor, [editor], 7)
                removals = sum(1 for e in entries_seen(editor) if e.state == "null")
                nursery.cancel_scope.cancel()
                return removals, len(editor.events("error")), editor.closed

        removals, error_frames, closed = trio.run(attack)
        assert processes.terminate(proc) == 0
    finally:
        processes.stop(proc)
    assert proc.stderr is not None
    log = proc.stderr.read()
    assert (removals, error_frames, closed) == (3, 0, None)
    assert "room.crashed" not in log and "Traceback" not in log, log[-3000:]


# -- 2. huge awareness frames ----------------------------------------------------------------


def _many_entries(count: int) -> bytes:
    payload = encode_var_uint(count) + b"".join(
        encode_var_uint(1_000_000 + i) + b"\x01\x02{}" for i in range(count)
    )
    return messages.encode_awareness(payload)


async def test_a_frame_with_more_entries_than_a_room_holds_is_refused_unread(
    start_server: StartServer,
) -> None:
    running = await start_server()
    watcher = await running.client("huge")
    attacker = await running.client("huge")
    await watcher.wait_for(lambda: len(watcher.binary) >= 2)
    await attacker.ws.send_message(_many_entries(100_000))  # 600 KB, well under 10 MiB
    await attacker.wait_for(lambda: bool(errors(attacker, "INVALID_MESSAGE")))
    assert "100000 entries" in errors(attacker, "INVALID_MESSAGE")[0]["error"]["message"]
    await marker(attacker, [watcher], 9)
    assert set(watcher.awareness) == {9}
    handle = running.service.rooms.get("records:huge")
    assert handle is not None and len(handle.room.awareness) == 1
    assert running.service.stats.awareness_refused["too_many_entries"] == 1


async def test_one_state_over_its_limit_is_refused(start_server: StartServer) -> None:
    running = await start_server(make_config(awareness={"max_state_bytes": 1024}))
    watcher = await running.client("big-state")
    attacker = await running.client("big-state")
    await attacker.ws.send_message(awareness_frame((5, 1, {"blob": "x" * 2000})))
    await attacker.wait_for(lambda: bool(errors(attacker, "INVALID_MESSAGE")))
    await marker(attacker, [watcher], 6)
    assert 5 not in watcher.awareness
    assert running.service.stats.awareness_refused["state_too_large"] == 1


async def test_a_connection_publishes_a_bounded_number_of_client_ids(
    start_server: StartServer,
) -> None:
    running = await start_server(make_config(awareness={"max_client_ids_per_connection": 2}))
    watcher = await running.client("ids")
    attacker = await running.client("ids")
    await attacker.ws.send_message(awareness_frame(*((100 + i, 1, {"i": i}) for i in range(6))))
    await attacker.ws.send_message(awareness_frame((200, 1, {})))
    await attacker.ws.send_message(awareness_frame((101, 2, {"still": "mine"})))
    await watcher.wait_for(lambda: watcher.awareness.get(101) == {"still": "mine"})
    assert set(watcher.awareness) == {100, 101}
    # Its own socket may be read after the watcher's: wait for the error, then count it
    # (the room handled all three frames in one step, so any second error would have
    # left in the same write).
    await attacker.wait_for(lambda: bool(errors(attacker, "AWARENESS_REFUSED")))
    assert len(errors(attacker, "AWARENESS_REFUSED")) == 1  # told once
    assert running.service.stats.awareness_refused["client_id_limit"] == 5
    # Its leave removes exactly what it owned.
    await attacker.ws.aclose()
    await watcher.wait_for(lambda: not watcher.awareness)


async def test_a_room_holds_a_bounded_amount_of_presence(start_server: StartServer) -> None:
    running = await start_server(make_config(awareness={"max_room_states": 2}))
    first, second, third = [await running.client("full") for _ in range(3)]
    await first.ws.send_message(awareness_frame((1, 1, {})))
    await second.ws.send_message(awareness_frame((2, 1, {})))
    await first.wait_for(lambda: {1, 2} <= set(first.awareness))
    await third.ws.send_message(awareness_frame((3, 1, {})))
    await third.wait_for(lambda: bool(errors(third, "AWARENESS_REFUSED")))
    assert 3 not in first.awareness
    assert running.service.stats.awareness_refused["room_full"] == 1
    await second.ws.aclose()  # room for one more: the third's next state fits
    await first.wait_for(lambda: 2 not in first.awareness)
    await third.ws.send_message(awareness_frame((3, 2, {"now": True})))
    await first.wait_for(lambda: first.awareness.get(3) == {"now": True})


# -- 4. foreign client ids -------------------------------------------------------------------


async def test_a_viewer_can_neither_fake_nor_erase_anothers_presence(
    start_server: StartServer,
) -> None:
    running = await start_with_tokens(start_server)
    editor = await joined(running, "fake", token=token("ed"))
    watcher = await joined(running, "fake", token=token("wa", role="public"))
    viewer = await joined(running, "fake", token=token("vi", role="public"))
    await editor.ws.send_message(awareness_frame((111, 1, {"user": "editor"})))
    await watcher.wait_for(lambda: 111 in watcher.awareness)
    await viewer.wait_for(lambda: 111 in viewer.awareness)
    # The attack: a state for the editor's id, then its removal.
    await viewer.ws.send_message(awareness_frame((111, 5, {"user": "fake"})))
    await viewer.ws.send_message(awareness_frame((111, 6, None)))
    await marker(viewer, [watcher, editor], 222)
    assert watcher.awareness[111] == {"user": "editor"}
    assert editor.awareness[111] == {"user": "editor"}
    assert not [e for e in entries_seen(watcher) if e.client_id == 111 and e.clock > 1]
    assert len(errors(viewer, "AWARENESS_REFUSED")) == 1
    assert running.service.stats.awareness_refused["foreign_client"] == 2
    # The editor's own presence carries on.
    await editor.ws.send_message(awareness_frame((111, 2, {"user": "editor", "moved": 1})))
    await watcher.wait_for(lambda: watcher.awareness[111] == {"user": "editor", "moved": 1})


async def test_echoes_of_what_the_room_holds_are_dropped_quietly(
    start_server: StartServer,
) -> None:
    """y-websocket clients echo each update they apply, and their own 30 s timeout of
    another client is a removal at the clock they hold: none of it is an attack."""
    running = await start_server()
    owner = await running.client("echoes")
    await owner.ws.send_message(awareness_frame((111, 3, {"user": "owner"})))
    echoer = await running.client("echoes")
    await echoer.wait_for(lambda: 111 in echoer.awareness)
    await echoer.ws.send_message(awareness_frame((111, 3, {"user": "owner"})))  # echo
    await echoer.ws.send_message(awareness_frame((111, 2, {"user": "older"})))  # late echo
    await echoer.ws.send_message(awareness_frame((111, 3, None)))  # its local timeout
    await marker(echoer, [owner], 333)
    assert owner.awareness[111] == {"user": "owner"}
    assert not errors(echoer, "AWARENESS_REFUSED")
    assert not running.service.stats.awareness_refused
    # Echoes of a removal the room applied: also quiet.
    await owner.ws.aclose()
    await echoer.wait_for(lambda: 111 not in echoer.awareness)
    await echoer.ws.send_message(awareness_frame((111, 4, None)))
    await marker(echoer, [echoer], 334)
    assert not errors(echoer, "AWARENESS_REFUSED")
    assert not running.service.stats.awareness_refused


async def test_an_echo_frame_as_large_as_the_room_is_accepted(start_server: StartServer) -> None:
    running = await start_server(make_config(awareness={"max_room_states": 50}))
    members = [await running.client("echo-all") for _ in range(50)]
    for index, member in enumerate(members):
        await member.ws.send_message(awareness_frame((500 + index, 1, {"n": "m" * 100})))
    last = members[-1]
    await last.wait_for(lambda: len(last.awareness) == 50)
    # What a stock client sends back after applying the join frame: every state.
    everyone = [(e.client_id, e.clock, json.loads(e.state)) for e in entries_seen(last)]
    await last.ws.send_message(awareness_frame(*everyone))
    await last.ws.send_message(awareness_frame((549, 2, {"marker": True})))  # a round trip
    await last.wait_for(lambda: last.awareness.get(549) == {"marker": True})
    assert not last.events("error")
    assert not running.service.stats.awareness_refused


async def test_the_same_user_takes_its_id_over_from_a_connection_not_yet_gone(
    start_server: StartServer,
) -> None:
    """A client back after a blip whose old socket the server still holds (half-open)."""
    running = await start_server()
    watcher = await running.client("half-open")
    old = await running.client("half-open", token="ana")
    await old.ws.send_message(awareness_frame((42, 1, {"user": "ana"})))
    await watcher.wait_for(lambda: 42 in watcher.awareness)
    new = await running.client("half-open", token="ana")
    await new.ws.send_message(awareness_frame((42, 2, {"user": "ana", "back": True})))
    await watcher.wait_for(lambda: watcher.awareness.get(42) == {"user": "ana", "back": True})
    # The old connection no longer owns it: its end removes nothing.
    await old.ws.aclose()
    await marker(new, [watcher], 43)
    assert watcher.awareness.get(42) == {"user": "ana", "back": True}
    assert not running.service.stats.awareness_refused


# -- pings -----------------------------------------------------------------------------------


async def test_a_ping_flood_is_counted_against_the_rate_limit(start_server: StartServer) -> None:
    running = await start_server(
        make_config(
            rate_limiting={
                "messages_per_second": 20,
                "burst": 5,
                "flood_close_after": 0.5,
                "pings_per_second": 2,
                "ping_burst": 5,
            }
        )
    )
    flooder = await running.client("pings")
    bystander = await running.client("pings")
    await flooder.wait_for(lambda: len(flooder.binary) >= 2)
    with trio.fail_after(20):
        for _ in range(100_000):
            if flooder.closed is not None:
                break
            try:
                await flooder.ws.send_message('{"type":"ping"}')
            except ConnectionClosed:  # closed mid-flood: the point
                break
        await flooder.wait_for(lambda: flooder.closed is not None, within=10)
    assert flooder.closed is not None and flooder.closed[0] == CloseCode.TOO_MANY_EDITS
    assert bystander.closed is None
    # A few pings stay free: a client keeping alive is never slowed down.
    pongs = sum(1 for f in bystander.text_frames if f.get("type") == "pong")
    for _ in range(5):
        await bystander.ws.send_message('{"type":"ping"}')
    await bystander.wait_for(
        lambda: sum(1 for f in bystander.text_frames if f.get("type") == "pong") >= pongs + 5
    )
    assert all(c.throttled == 0 for c in running.service.server.connections.values())


# -- 5. the outbound queue in bytes ----------------------------------------------------------


async def test_a_slow_reader_fed_large_frames_is_closed_by_the_byte_bound(
    start_server: StartServer,
) -> None:
    running = await start_server(
        make_config(
            connection={
                "outbound_queue": 1024,
                "outbound_queue_bytes": 1024 * 1024,
                "send_timeout": 60,
            }
        )
    )
    writer = await running.client("bytes")
    await writer.wait_for(lambda: len(writer.binary) >= 2)
    stuck = await RawClient.connect(running.port, "/realtime/records/bytes", rcvbuf=4096)
    await eventually(lambda: running.service.rooms.get("records:bytes").members == 2)
    handle = running.service.rooms.get("records:bytes")
    assert handle is not None
    slow = max(handle.room.members.values(), key=lambda m: m.conn_id)
    for sent in range(1, 61):
        # 256 KiB each: the frame bound (1024) alone would let it pin 256 MiB.
        await writer.edit(lambda d, n=sent: d.get("t", type=Text).insert(0, str(n % 10) * 262144))
        answers = len(writer.binary)
        await writer.send_step1()  # answered after the edit is handled: a round trip
        await writer.wait_for(lambda a=answers: len(writer.binary) > a)
        if slow.outbound.closing:
            break
    assert slow.outbound.closing, "the slow reader was never closed"
    assert slow.outbound.close_request is not None
    assert slow.outbound.close_request.code == CloseCode.TRY_AGAIN_LATER
    assert sent < 40
    await eventually(lambda: running.service.stats.slow_consumer_closes == 1)
    assert writer.closed is None
    await stuck.stream.aclose()
