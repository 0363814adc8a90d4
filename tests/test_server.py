"""The real server on an ephemeral loopback port, with real WebSocket clients."""

from __future__ import annotations

import json

import attrs
import pytest
import trio
from pycrdt import Doc, Map, Text
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from civicrealtime.protocol import messages
from civicrealtime.protocol.awareness import (
    AwarenessEntry,
    decode_awareness_update,
    encode_awareness_update,
)
from civicrealtime.protocol.closecodes import CloseCode
from civicrealtime.protocol.control import CONTROL_SUBPROTOCOL
from civicrealtime.rooms.manager import RoomHandle
from civicrealtime.rooms.messages import RoomMessage

from .conftest import RunningServer, StartServer, make_config
from .polling import eventually
from .ydoc_client import YClient, state_vector


def _type_text(doc: Doc, text: str, name: str = "t") -> None:
    doc.get(name, type=Text).insert(len(str(doc.get(name, type=Text))), text)


async def test_join_sends_ack_then_step1_step2_then_awareness(server: RunningServer) -> None:
    first = await server.client()
    await first.wait_for(lambda: len(first.binary) >= 2)
    assert first.text_frames[0]["event"] == "connection.ack"
    assert first.text_frames[0]["roomId"] == "records:abc"
    assert first.text_frames[0]["clientId"].startswith("client_")
    assert isinstance(first.binary[0], messages.SyncStep1)
    assert isinstance(first.binary[1], messages.SyncStep2)
    await first.set_awareness(7, {"user": {"name": "ada"}})
    await first.wait_for(lambda: 7 in first.awareness)

    second = await server.client()
    await second.wait_for(lambda: len(second.binary) >= 3)
    kinds = [type(m) for m in second.binary[:3]]
    assert kinds == [messages.SyncStep1, messages.SyncStep2, messages.AwarenessMessage]
    assert second.awareness == {7: {"user": {"name": "ada"}}}


async def test_raw_handshake_order_is_text_ack_first(server: RunningServer) -> None:
    async with open_websocket_url(server.url("order"), subprotocols=[CONTROL_SUBPROTOCOL]) as ws:
        assert ws.subprotocol == CONTROL_SUBPROTOCOL  # the client knows it was understood
        frames = [await ws.get_message() for _ in range(3)]
    assert isinstance(frames[0], str)
    assert json.loads(frames[0])["event"] == "connection.ack"
    assert frames[1] == b"\x00\x00\x01\x00"  # step 1 of an empty doc: state vector [0]
    assert frames[2] == b"\x00\x01\x02\x00\x00"  # step 2 of an empty doc


async def test_stock_client_gets_binary_frames_only_on_the_defaults(
    server: RunningServer,
) -> None:
    """No control subprotocol offered: the y-protocols frames, and the pong it asked for."""
    async with open_websocket_url(server.url("stock"), subprotocols=["auth.tok"]) as ws:
        assert ws.subprotocol == "auth.tok"
        with trio.fail_after(5):
            assert await ws.get_message() == b"\x00\x00\x01\x00"
            assert await ws.get_message() == b"\x00\x01\x02\x00\x00"
            await ws.send_message(b"\x07")  # invalid: an opted-in client gets an error frame
            await ws.send_message('{"type":"ping"}')
            pong = json.loads(await ws.get_message())
    assert list(pong) == ["type", "timestamp"]


@pytest.mark.parametrize(
    ("mode", "offered", "selected", "control"),
    [
        ("opt-in", ["auth.t", CONTROL_SUBPROTOCOL], CONTROL_SUBPROTOCOL, True),
        ("opt-in", [CONTROL_SUBPROTOCOL, "auth.t"], CONTROL_SUBPROTOCOL, True),
        ("opt-in", ["auth.t"], "auth.t", False),
        ("always", ["auth.t"], "auth.t", True),
        ("always", ["auth.t", CONTROL_SUBPROTOCOL], CONTROL_SUBPROTOCOL, True),
        ("never", ["auth.t", CONTROL_SUBPROTOCOL], "auth.t", False),
    ],
)
async def test_control_frames_mode_and_subprotocol(
    start_server: StartServer, mode: str, offered: list[str], selected: str, control: bool
) -> None:
    running = await start_server(make_config(protocol={"control_frames": mode}))
    async with open_websocket_url(running.url(), subprotocols=offered) as ws:
        assert ws.subprotocol == selected
        with trio.fail_after(5):
            first = await ws.get_message()
    assert isinstance(first, str) == control
    if control:
        assert json.loads(first)["event"] == "connection.ack"


async def test_late_joiner_gets_document_and_updates_fan_out(server: RunningServer) -> None:
    a = await server.client()
    b = await server.client()
    await a.wait_for(lambda: len(a.binary) >= 2)
    await b.wait_for(lambda: len(b.binary) >= 2)
    await a.edit(lambda d: _type_text(d, "hello "))
    await b.edit(lambda d: d.get("m", type=Map).__setitem__("k", 1))
    await a.wait_for(lambda: a.doc.get("m", type=Map).get("k") == 1)
    await b.wait_for(lambda: b.text("t") == "hello ")
    c = await server.client()
    await c.wait_for(lambda: c.text("t") == "hello " and c.doc.get("m", type=Map).get("k") == 1)
    assert state_vector(a.doc) == state_vector(b.doc) == state_vector(c.doc)


async def test_update_is_never_echoed_to_its_sender(server: RunningServer) -> None:
    a = await server.client()
    b = await server.client()
    await a.wait_for(lambda: len(a.binary) >= 2)
    await b.wait_for(lambda: len(b.binary) >= 2)
    before = a.updates_received
    await a.edit(lambda d: _type_text(d, "x"))
    await b.wait_for(lambda: b.text("t") == "x")
    # b answers with its own edit; a must see exactly that one update, not its own echo
    await b.edit(lambda d: _type_text(d, "y"))
    await a.wait_for(lambda: a.text("t") == "xy")
    assert a.updates_received == before + 1


async def test_client_step1_is_answered_with_the_missing_diff(server: RunningServer) -> None:
    a = await server.client()
    await a.wait_for(lambda: len(a.binary) >= 2)
    await a.edit(lambda d: _type_text(d, "abc"))
    offline = Doc()
    b = await server.client(doc=offline)
    await b.wait_for(lambda: b.text("t") == "abc")
    steps2 = sum(isinstance(m, messages.SyncStep2) for m in b.binary)
    await b.send_step1()
    await b.wait_for(lambda: sum(isinstance(m, messages.SyncStep2) for m in b.binary) > steps2)
    assert b.text("t") == "abc"


async def test_duplicate_and_empty_updates_are_not_relayed(server: RunningServer) -> None:
    a = await server.client()
    b = await server.client()
    await a.wait_for(lambda: len(a.binary) >= 2)
    await b.wait_for(lambda: len(b.binary) >= 2)
    await a.edit(lambda d: _type_text(d, "once"))
    await b.wait_for(lambda: b.text("t") == "once")
    received = b.updates_received
    await a.ws.send_message(messages.encode_sync_update(a.doc.get_update()))  # duplicate
    await a.send_step2(a.doc.get_state())  # empty step 2, as y-websocket sends it
    await a.edit(lambda d: _type_text(d, "!"))  # a real change, to know the others passed
    await b.wait_for(lambda: b.text("t") == "once!")
    assert b.updates_received == received + 1


async def test_awareness_reaches_everyone_including_sender(server: RunningServer) -> None:
    lone = await server.client("presence")
    await lone.set_awareness(11, {"user": {"name": "lone"}})
    await lone.wait_for(lambda: lone.awareness.get(11) == {"user": {"name": "lone"}})
    other = await server.client("presence")
    await other.wait_for(lambda: 11 in other.awareness)
    await other.set_awareness(12, {"cursor": 3})
    await lone.wait_for(lambda: 12 in lone.awareness)
    await other.wait_for(lambda: 12 in other.awareness)


@pytest.mark.parametrize("abrupt", [False, True], ids=["clean-leave", "abrupt-drop"])
async def test_awareness_removed_when_connection_ends(server: RunningServer, abrupt: bool) -> None:
    watcher = await server.client("ghosts")
    leaver = await server.client("ghosts")
    await leaver.set_awareness(21, {"user": {"name": "leaving"}})
    await watcher.wait_for(lambda: 21 in watcher.awareness)
    if abrupt:
        await leaver.ws._stream.aclose()  # TCP gone, no closing handshake
    else:
        await leaver.ws.aclose()
    await watcher.wait_for(lambda: 21 not in watcher.awareness, within=2)


def _awareness_entries(client: YClient) -> list[AwarenessEntry]:
    return [
        entry
        for message in client.binary
        if isinstance(message, messages.AwarenessMessage)
        for entry in decode_awareness_update(message.payload)
    ]


async def test_a_client_back_from_a_blip_is_told_of_its_removal(server: RunningServer) -> None:
    """yjs/y-websocket#122: a returning client's old clock is outranked by its removal.

    The server sends it that removal (its y-protocols code then raises its clock), and asks
    each client whose state the returning one holds at the current clock to raise its own.
    """
    watcher = await server.client("blip")
    await watcher.set_awareness(41, {"user": "watcher"})
    away = await server.client("blip")
    await away.set_awareness(42, {"user": "away"})  # clock 1
    await watcher.wait_for(lambda: 42 in watcher.awareness)
    await away.ws._stream.aclose()  # the blip: the server removes 42 at clock 2
    await watcher.wait_for(lambda: 42 not in watcher.awareness)
    assert [e for e in _awareness_entries(watcher) if e.client_id == 41][-1].clock == 1

    back = await server.client("blip")
    back._clock = 0
    await back.set_awareness(42, {"user": "away"})  # clock 1 again: ignored by everyone
    removal = AwarenessEntry(client_id=42, clock=2, state="null")
    await back.wait_for(lambda: removal in _awareness_entries(back))
    # The watcher (unchanged since 42 left) is asked to re-announce itself: its own removal
    # at its current clock; y-protocols answers that by raising its clock.
    nudge = AwarenessEntry(client_id=41, clock=1, state="null")
    await watcher.wait_for(lambda: nudge in _awareness_entries(watcher))
    # Sent to the watcher only; the room still holds its state.
    assert nudge not in _awareness_entries(back)
    fresh = await server.client("blip")
    await fresh.wait_for(lambda: fresh.awareness.get(41) == {"user": "watcher"})
    # The returning client raises its clock past the removal: everyone sees it again.
    await back.set_awareness(42, {"user": "away"})
    await back.set_awareness(42, {"user": "away", "back": True})  # clock 3
    await watcher.wait_for(lambda: watcher.awareness.get(42) == {"user": "away", "back": True})


async def test_echoes_of_a_departed_state_set_off_no_nudges(server: RunningServer) -> None:
    """y-websocket clients echo what they apply: echoes of a state that has just left must
    not be taken for a returning client (each would make the whole room re-announce)."""
    w1, w2 = await server.client("echo"), await server.client("echo")
    await w1.set_awareness(81, {"user": "w1"})
    await w2.set_awareness(82, {"user": "w2"})
    leaver = await server.client("echo")
    await leaver.set_awareness(80, {"user": "leaver"})  # clock 1
    await w1.wait_for(lambda: 80 in w1.awareness)
    await leaver.ws._stream.aclose()  # removed at clock 2
    await w1.wait_for(lambda: 80 not in w1.awareness)
    # The watchers' late echoes of its last state (clock 1), as y-websocket sends them.
    for watcher in (w1, w2):
        payload = encode_awareness_update(
            [AwarenessEntry(client_id=80, clock=1, state='{"user":"leaver"}')]
        )
        await watcher.ws.send_message(messages.encode_awareness(payload))
    # Someone trying to provoke it on purpose: state, removal, then the old state again.
    prober = await server.client("echo")
    for clock, state in ((1, "{}"), (2, "null"), (1, "{}")):
        payload = encode_awareness_update([AwarenessEntry(client_id=83, clock=clock, state=state)])
        await prober.ws.send_message(messages.encode_awareness(payload))
    await prober.set_awareness(84, {"marker": True})
    for watcher in (w1, w2):
        await watcher.wait_for(lambda w=watcher: 84 in w.awareness)
    for watcher, own in ((w1, 81), (w2, 82)):
        nudges = [
            e for e in _awareness_entries(watcher) if e.client_id == own and e.state == "null"
        ]
        assert nudges == []


async def test_no_nudge_for_states_that_changed_during_the_blip(server: RunningServer) -> None:
    watcher = await server.client("blip2")
    await watcher.set_awareness(51, {"user": "watcher"})
    away = await server.client("blip2")
    await away.set_awareness(52, {"user": "away"})
    await watcher.wait_for(lambda: 52 in watcher.awareness)
    await away.ws._stream.aclose()
    await watcher.wait_for(lambda: 52 not in watcher.awareness)
    await watcher.set_awareness(51, {"user": "watcher", "moved": True})  # a newer clock
    back = await server.client("blip2")
    back._clock = 0
    await back.set_awareness(52, {"user": "away"})
    await back.wait_for(
        lambda: AwarenessEntry(client_id=52, clock=2, state="null") in _awareness_entries(back)
    )
    await back.wait_for(lambda: back.awareness.get(51) == {"user": "watcher", "moved": True})
    # A marker round trip: anything sent to the watcher before it has arrived.
    await back.set_awareness(53, {"marker": True})
    await watcher.wait_for(lambda: 53 in watcher.awareness)
    assert not any(e.client_id == 51 and e.state == "null" for e in _awareness_entries(watcher))


async def test_frames_sent_before_the_handshake_completes_are_applied(
    server: RunningServer,
) -> None:
    reader = await server.client("early")
    await reader.wait_for(lambda: len(reader.binary) >= 2)
    doc = Doc()
    doc.get("t", type=Text).insert(0, "early bird")
    # Send at once, before reading anything: nothing may be dropped during setup.
    early = await server.client("early", doc=doc, read=False)
    await early.ws.send_message(messages.encode_sync_step1(doc.get_state()))
    await early.ws.send_message(messages.encode_sync_update(doc.get_update()))
    await early.set_awareness(31, {"early": True})
    await reader.wait_for(lambda: reader.text("t") == "early bird" and 31 in reader.awareness)


async def test_ping_gets_pong(server: RunningServer) -> None:
    c = await server.client()
    await c.ws.send_message('{"type":"ping"}')
    await c.wait_for(lambda: any(f.get("type") == "pong" for f in c.text_frames))
    pong = next(f for f in c.text_frames if f.get("type") == "pong")
    assert list(pong) == ["type", "timestamp"]
    assert isinstance(pong["timestamp"], int)


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\x00",
        b"\x00\x02",
        b"\x00\x02\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        b"\x00\x02\x05\xff\xff\xff\xff\x0f",  # update claiming ~2**32 clients
        b"\x00\x09\x00",
        b"\x01\x03\x01\x01\x01",  # awareness truncated
        b"\x07",
        "not json",
        '{"type": 3}',
    ],
)
async def test_garbage_is_answered_and_the_connection_carries_on(
    server: RunningServer, frame: bytes | str
) -> None:
    victim = await server.client("garbage")
    bystander = await server.client("garbage")
    await victim.wait_for(lambda: len(victim.binary) >= 2)
    await victim.ws.send_message(frame)
    await victim.wait_for(lambda: bool(victim.events("error")))
    assert victim.events("error")[0]["error"]["code"] == "INVALID_MESSAGE"
    await victim.edit(lambda d: _type_text(d, "still here"))
    await bystander.wait_for(lambda: bystander.text("t") == "still here")
    assert victim.closed is None


async def test_update_rejected_by_pycrdt_is_not_applied_or_relayed(
    server: RunningServer,
) -> None:
    a = await server.client("bad-update")
    b = await server.client("bad-update")
    await b.wait_for(lambda: len(b.binary) >= 2)
    good = Doc()
    good.get("t", type=Text).insert(0, "good")
    update = bytearray(good.get_update())
    update[-3] ^= 0xFF  # corrupt the content, keep the header plausible
    await a.ws.send_message(messages.encode_sync_update(bytes(update)))
    await a.wait_for(lambda: bool(a.events("error")))
    await a.edit(lambda d: _type_text(d, "ok"))
    await b.wait_for(lambda: b.text("t") == "ok")
    room = server.service.rooms.get("records:bad-update")
    assert room is not None
    assert str(room.room.doc.get("t", type=Text)) == "ok"


async def test_path_outside_prefix_is_refused_with_404(server: RunningServer) -> None:
    with pytest.raises(ConnectionRejected) as info:
        async with open_websocket_url(f"ws://127.0.0.1:{server.port}/elsewhere/records/a"):
            pass
    assert info.value.status_code == 404


@pytest.mark.parametrize(
    ("target", "code", "error"),
    [
        ("/realtime/devices/a", CloseCode.NOT_FOUND, "ROOM_TYPE_NOT_REGISTERED"),
        ("/realtime/records/a%2Fb", CloseCode.INVALID_ROOM, "INVALID_ROOM"),
        ("/realtime/records/" + "x" * 256, CloseCode.INVALID_ROOM, "INVALID_ROOM"),
        ("/realtime/records/%07bell", CloseCode.INVALID_ROOM, "INVALID_ROOM"),
        ("/realtime/records", CloseCode.INVALID_ROOM, "INVALID_ROOM"),
    ],
)
async def test_bad_rooms_get_an_error_frame_then_a_close_code(
    server: RunningServer, target: str, code: int, error: str
) -> None:
    url = f"ws://127.0.0.1:{server.port}{target}"
    async with open_websocket_url(url, subprotocols=[CONTROL_SUBPROTOCOL]) as ws:
        frame = await ws.get_message()
        assert json.loads(frame)["error"]["code"] == error
        with pytest.raises(ConnectionClosed) as info:
            await ws.get_message()
    assert info.value.reason.code == code
    assert json.loads(info.value.reason.reason) == {"code": error}
    # A stock client gets no error frame: the close code and its JSON reason say it all.
    async with open_websocket_url(url) as ws:
        with pytest.raises(ConnectionClosed) as info, trio.fail_after(5):
            await ws.get_message()
    assert info.value.reason.code == code
    assert json.loads(info.value.reason.reason) == {"code": error}


async def test_first_offered_subprotocol_is_echoed(server: RunningServer) -> None:
    async with open_websocket_url(server.url(), subprotocols=["auth.tok123", "other"]) as ws:
        assert ws.subprotocol == "auth.tok123"


async def test_record_alias_and_percent_decoding_share_one_room(server: RunningServer) -> None:
    a = await YClient.connect(server.nursery, server.url("%C3%A9t%C3%A9", room_type="record"))
    b = await YClient.connect(server.nursery, server.url("%c3%a9t%C3%A9"))
    await a.wait_for(lambda: bool(a.text_frames))
    await b.wait_for(lambda: bool(b.text_frames))
    assert a.text_frames[0]["roomId"] == b.text_frames[0]["roomId"] == "records:été"


@pytest.mark.parametrize("never", ["never", False])  # False: the former boolean spelling
async def test_control_frames_can_be_switched_off(
    start_server: StartServer, never: str | bool
) -> None:
    running = await start_server(make_config(protocol={"control_frames": never}))
    c = await running.client()
    await c.wait_for(lambda: len(c.binary) >= 2)
    await c.ws.send_message(b"\x07")
    await c.ws.send_message('{"type":"ping"}')
    await c.wait_for(lambda: bool(c.text_frames))
    assert c.text_frames == [c.text_frames[0]]
    assert c.text_frames[0]["type"] == "pong"  # the reply the client asked for stays


async def test_connection_limit_per_user(start_server: StartServer) -> None:
    running = await start_server(make_config(rate_limiting={"connections_per_user": 2}))
    kept = [await running.client(token="zoe") for _ in range(2)]
    for c in kept:
        await c.wait_for(lambda c=c: len(c.binary) >= 2)
    refused = await running.client(token="zoe")
    await refused.wait_for(lambda: refused.closed is not None)
    assert refused.closed is not None
    assert refused.closed[0] == CloseCode.LIMIT_EXCEEDED
    assert refused.events("error")[0]["error"]["code"] == "CONNECTION_LIMIT_EXCEEDED"
    await kept[0].ws.aclose()
    limits = running.service.server.limits
    await eventually(lambda: limits.count_user("zoe") == 1)
    again = await running.client(token="zoe")
    await again.wait_for(lambda: len(again.binary) >= 2)


async def test_connect_disconnect_cycles_leave_no_counts(server: RunningServer) -> None:
    for i in range(100):
        async with open_websocket_url(server.url(f"cycle{i % 5}")) as ws:
            if i % 2:
                await ws.get_message()  # half of them close during or right after setup
    limits = server.service.server.limits
    await eventually(lambda: not limits.tracked and not server.service.server.connections)
    assert limits.tracked == 0


async def test_a_join_a_room_never_takes_is_closed_at_the_setup_deadline(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A room whose mailbox stays full: the connection is closed 1013 SETUP_TIMEOUT.

    Before, the Join waited on the mailbox with no deadline, holding the socket (and its
    per-IP and per-user slots) for as long as the room did not read.
    """
    running = await start_server(make_config(connection={"setup_timeout": 0.3}))
    rooms = running.service.rooms
    stalled, never_read = trio.open_memory_channel[RoomMessage](0)
    acquire = rooms.acquire

    async def acquire_stalled(key: str, room_type: str) -> RoomHandle:
        handle = await acquire(key, room_type)
        # The real room, but a mailbox nobody reads: what a stalled room looks like.
        return attrs.evolve(handle, mailbox=stalled)

    monkeypatch.setattr(rooms, "acquire", acquire_stalled)
    with never_read:
        async with open_websocket_url(running.url("stalled")) as ws:
            with pytest.raises(ConnectionClosed) as info, trio.fail_after(10):
                await ws.get_message()
    assert info.value.reason.code == CloseCode.TRY_AGAIN_LATER
    assert json.loads(info.value.reason.reason) == {"code": "SETUP_TIMEOUT"}
