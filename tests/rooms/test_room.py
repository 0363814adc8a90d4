"""The room actor, driven through its mailbox without a network: what each member is sent.

Each test builds a `Room` (tests/rooms/harness.py), feeds it mailbox messages (client
events decoded by the real `FrameDecoder`), lets it run until every task is blocked, and reads
each member's outbound queue. Timers run on trio's autojump clock: no test waits in real
time.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
import trio.testing
from pycrdt import Doc, Text

from civicrealtime.protocol import messages
from civicrealtime.protocol.closecodes import CloseCode
from civicrealtime.protocol.document import YDocument
from civicrealtime.rooms.messages import (
    EditResult,
    FromNode,
    Join,
    Leave,
    NodeGone,
    RoomMessage,
    ServerEdit,
    TakeSnapshot,
)
from civicrealtime.rooms.origin import Origin

from ..conftest import make_config
from .harness import (
    Harness,
    Persistent,
    Published,
    Stored,
    build_room,
    doc_with,
    open_room,
    text_of,
)
from .members import (
    awareness_frame,
    close_of,
    describe,
    drain,
    kinds,
    make_member,
    received,
    wait_closed,
)

# --- join and leave --------------------------------------------------------------------------


async def test_join_sends_step1_step2_then_presence_and_the_ack_only_to_control_members() -> None:
    stored = doc_with("hello")
    async with open_room(hooks=Stored(stored)) as h:
        first = make_member(1)
        assert kinds(await h.join(first)) == ["step1", "step2"]  # nobody present yet
        await h.client_sends(first, awareness_frame(7, 1, {"name": "first"}))
        await drain(first)

        stock = make_member(2)
        seen = await h.join(stock)
        assert kinds(seen) == ["step1", "step2", "awareness"]
        step1, step2, presence = seen
        assert step1.payload == h.room.doc.get_state()
        assert text_of(step2.payload) == "hello"
        assert [(e.client_id, json.loads(e.state)) for e in presence.payload] == [
            (7, {"name": "first"})
        ]

        opted_in = make_member(3, control_frames=True)
        seen = await h.join(opted_in)
        assert kinds(seen) == ["ack", "step1", "step2", "awareness"]
        assert seen[0].payload["roomId"] == "records:unit"
        assert seen[0].payload["clientId"] == "client_3"
        assert set(h.room.members) == {1, 2, 3}


async def test_leave_removes_the_members_presence_for_everyone_and_other_nodes() -> None:
    relay = Published()
    async with open_room(relay=relay) as h:
        leaving, staying = make_member(1), make_member(2)
        await h.join(leaving)
        await h.join(staying)
        await h.client_sends(leaving, awareness_frame(7, 1, {"name": "leaving"}))
        await h.client_sends(leaving, awareness_frame(8, 1, {"name": "second tab"}))
        await drain(leaving), await drain(staying)
        relay.awareness.clear()

        await h.send(Leave(member=leaving))

        (removal,) = await received(staying)
        assert removal.kind == "awareness"
        assert {(e.client_id, e.state) for e in removal.payload} == {(7, "null"), (8, "null")}
        assert h.room.awareness.states() == {}
        assert set(h.room.members) == {2}
        assert len(relay.awareness) == 1  # the same removal, for the other nodes' clients
        # A member that is gone is not sent anything, and what it still sends is ignored.
        await h.client_sends(leaving, messages.encode_sync_update(doc_with("late")))
        assert await drain(leaving) == []
        assert await drain(staying) == []


# --- fan-out -------------------------------------------------------------------------------


async def test_an_update_is_encoded_once_and_not_sent_back_to_its_sender() -> None:
    relay = Published()
    async with open_room(relay=relay) as h:
        sender, a, b = make_member(1), make_member(2), make_member(3)
        for member in (sender, a, b):
            await h.join(member)
        update = doc_with("shared")

        await h.client_sends(sender, messages.encode_sync_update(update))

        assert await drain(sender) == []
        (to_a,), (to_b,) = await drain(a), await drain(b)
        assert to_a is to_b  # one encoding, the same object in every queue
        seen = describe(to_a)
        assert seen.kind == "update"
        assert text_of(seen.payload) == "shared"
        assert str(h.room.doc.get("t", type=Text)) == "shared"
        assert h.room.updates_applied == 1
        assert relay.updates == [update]  # published to other nodes once, as received

        # A duplicate changes nothing: nothing is sent, stored or published.
        await h.client_sends(sender, messages.encode_sync_update(update))
        assert await drain(a) == [] and await drain(b) == []
        assert h.room.updates_applied == 1
        assert relay.updates == [update]


async def test_an_invalid_update_is_refused_to_its_sender_and_goes_nowhere() -> None:
    async with open_room() as h:
        sender, other = make_member(1, control_frames=True), make_member(2)
        await h.join(sender)
        await h.join(other)
        await drain(sender)
        # Past the session's pre-check, refused by pycrdt.
        await h.client_sends(sender, messages.encode_sync_update(b"\x01\x01\x05\x00\x08\x00"))
        seen = await received(sender)
        assert [s.payload["error"]["code"] for s in seen if s.kind == "error"] == [
            "INVALID_MESSAGE"
        ]
        assert await drain(other) == []
        assert h.room.doc.get_update() == b"\x00\x00"


async def test_a_viewer_is_told_once_and_its_change_goes_nowhere() -> None:
    async with open_room() as h:
        viewer, editor = make_member(1, can_edit=False), make_member(2)
        await h.join(viewer)
        await h.join(editor)
        for text in ("one", "two"):
            await h.client_sends(viewer, messages.encode_sync_update(doc_with(text)))
        assert kinds(await received(viewer)) == ["permission_denied"]
        assert await drain(editor) == []
        assert str(h.room.doc.get("t", type=Text)) == ""


async def test_step1_gets_what_the_client_misses() -> None:
    base = doc_with("base")
    async with open_room(hooks=Stored(base)) as h:
        member = make_member(1)
        await h.join(member)
        client: Doc[Any] = Doc()
        client.apply_update(base)
        await h.client_sends(member, messages.encode_sync_update(doc_with("more ", base=base)))
        await h.client_sends(member, messages.encode_sync_step1(client.get_state()))
        (answer,) = await received(member)
        assert answer.kind == "step2"
        client.apply_update(answer.payload)
        assert str(client.get("t", type=Text)) == "more base"


# --- awareness -------------------------------------------------------------------------------


async def test_a_member_removes_its_own_presence_but_not_anothers() -> None:
    async with open_room() as h:
        owner = make_member(1, user="alice")
        intruder = make_member(2, user="mallory", control_frames=True)
        await h.join(owner)
        await h.join(intruder)
        await h.client_sends(owner, awareness_frame(7, 1, {"name": "alice"}))
        await drain(owner), await drain(intruder)

        # A newer clock for an id another user's connection owns: refused, told once.
        await h.client_sends(intruder, awareness_frame(7, 2, {"name": "not alice"}))
        await h.client_sends(intruder, awareness_frame(7, 3, None))
        seen = await received(intruder)
        assert [s.payload["error"]["code"] for s in seen] == ["AWARENESS_REFUSED"]
        assert await drain(owner) == []
        assert json.loads(h.room.awareness.states()[7]) == {"name": "alice"}
        assert h.stats.awareness_refused["foreign_client"] == 2

        # Its owner removes it: everyone is told, the sender included.
        await h.client_sends(owner, awareness_frame(7, 2, None))
        for member in (owner, intruder):
            (removal,) = await received(member)
            assert [(e.client_id, e.clock, e.state) for e in removal.payload] == [(7, 2, "null")]
        assert 7 not in h.room.awareness.states()


async def test_a_query_gets_everyone_present() -> None:
    async with open_room() as h:
        a, b = make_member(1), make_member(2)
        await h.join(a)
        await h.join(b)
        await h.client_sends(a, awareness_frame(7, 1, {"name": "a"}))
        await drain(a), await drain(b)
        await h.client_sends(b, bytes([messages.MessageType.QUERY_AWARENESS]))
        (answer,) = await received(b)
        assert [e.client_id for e in answer.payload] == [7]
        assert await drain(a) == []


# --- slow consumers ------------------------------------------------------------------------


async def test_a_member_whose_queue_is_full_is_closed_1013_and_the_others_get_everything() -> None:
    async with open_room() as h:
        writer, fast = make_member(1), make_member(2)
        slow = make_member(3, capacity=4)  # never drained: its writer is stuck
        for member in (writer, fast, slow):
            await h.join(member)
        await drain(fast)
        client: Doc[Any] = Doc()
        for i in range(5):
            before = client.get_state()
            client.get("t", type=Text).insert(0, f"{i} ")
            await h.client_sends(writer, messages.encode_sync_update(client.get_update(before)))

        assert kinds(await received(fast)) == ["update"] * 5
        close = close_of(slow)
        assert close is not None
        assert close[0] == CloseCode.TRY_AGAIN_LATER
        assert "SLOW_CONSUMER" in close[1]
        assert slow.outbound.pending == 4  # closed at the fifth frame, which it never holds
        assert close_of(fast) is None and close_of(writer) is None
        # The room keeps it until its connection leaves; pushes to it stop at once.
        assert 3 in h.room.members
        await h.send(Leave(member=slow))
        assert set(h.room.members) == {1, 2}


# --- server edits, snapshots and other nodes ----------------------------------------------------


async def test_a_server_edit_reaches_every_member_and_is_kept() -> None:
    hooks = Stored()
    relay = Published()
    async with open_room(hooks=hooks, relay=relay) as h:
        a, b = make_member(1), make_member(2)
        await h.join(a)
        await h.join(b)

        def edit(document: YDocument) -> None:
            document.doc.get("t", type=Text).insert(0, "from the server")

        reply, answer = trio.open_memory_channel[EditResult](1)
        origin = Origin(actor="api", sub="ops")
        await h.send(ServerEdit(actor="ops", origin=origin, edit=edit, reply=reply))

        result = answer.receive_nowait()
        assert (result.updates, result.error) == (1, None)
        (to_a,), (to_b,) = await drain(a), await drain(b)
        assert to_a is to_b
        assert text_of(*hooks.kept) == "from the server"
        assert relay.updates == hooks.kept
        assert hooks.origins == [origin]  # the history attributes it to the API's actor
        assert h.room.updates_applied == 1


async def test_take_snapshot_writes_the_state_and_answers() -> None:
    hooks = Persistent()
    config = make_config(snapshots={"enabled": True, "interval": 0, "max_updates": 1000})
    async with open_room(hooks=hooks, config=config) as h:
        member = make_member(1)
        await h.join(member)
        await h.client_sends(member, messages.encode_sync_update(doc_with("snap")))
        reply, answer = trio.open_memory_channel[bool](1)
        await h.send(TakeSnapshot(reply=reply))
        assert answer.receive_nowait() is True
        assert h.room.snapshots_taken == 1
        assert text_of(hooks.snapshots[-1]) == "snap"


async def test_another_nodes_traffic_reaches_every_member_and_is_not_published_again() -> None:
    relay = Published()
    async with open_room(relay=relay) as h:
        a, b = make_member(1), make_member(2)
        await h.join(a)
        await h.join(b)
        presence = awareness_frame(40, 1, {"name": "remote"})
        payload = messages.decode(presence)
        assert isinstance(payload, messages.AwarenessMessage)

        await h.send(
            FromNode(node="n2", update=doc_with("remote")),
            FromNode(node="n2", awareness=payload.payload),
        )

        for member in (a, b):
            assert kinds(await received(member)) == ["update", "awareness"]
        assert str(h.room.doc.get("t", type=Text)) == "remote"
        assert relay.updates == [] and relay.awareness == []
        assert h.room.updates_applied == 0  # counted by the node it was made on

        # The node dies: its clients' presence goes.
        await h.send(NodeGone(node="n2"))
        for member in (a, b):
            (removal,) = await received(member)
            assert [(e.client_id, e.state) for e in removal.payload] == [(40, "null")]


# --- setup: frames queued while the room loads -------------------------------------------------


async def test_frames_queued_while_the_room_loads_follow_the_loaded_state() -> None:
    gate = trio.Event()
    stored = doc_with("stored ")
    send, receive = trio.open_memory_channel[RoomMessage](256)
    room = build_room(receive, send, on_empty=lambda room: None, hooks=Stored(stored, gate=gate))
    h = Harness(room=room, mailbox=send, emptied=trio.Event())
    reader, early = make_member(1), make_member(2)
    early_doc: Doc[Any] = Doc()
    early_doc.apply_update(stored)
    early_doc.get("t", type=Text).insert(7, "early")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(room.run)
        await h.send(
            Join(member=reader),
            Join(member=early),
            h.from_client(early, messages.encode_sync_step1(early_doc.get_state())),
            h.from_client(early, messages.encode_sync_update(early_doc.get_update())),
            h.from_client(early, awareness_frame(31, 1, {"early": True})),
        )
        assert await drain(reader) == []  # nothing before the room has loaded
        gate.set()
        await trio.testing.wait_all_tasks_blocked()

        seen = await received(reader)
        assert kinds(seen) == ["step1", "step2", "update", "awareness"]
        assert text_of(seen[1].payload) == "stored "
        assert text_of(seen[1].payload, seen[2].payload) == "stored early"
        assert kinds(await received(early)) == ["step1", "step2", "step2", "awareness"]
        assert str(room.doc.get("t", type=Text)) == "stored early"
        nursery.cancel_scope.cancel()


# --- timers ----------------------------------------------------------------------------------


async def test_an_empty_room_asks_to_go_after_its_grace_period_only(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = make_config(rooms={"cleanup_timeout": 30})
    async with open_room(config=config) as h:
        member = make_member(1)
        await h.join(member)
        with trio.move_on_after(60):
            await h.emptied.wait()
        assert not h.emptied.is_set()  # a member is there: never

        await h.send(Leave(member=member))
        with trio.move_on_after(29):
            await h.emptied.wait()
        assert not h.emptied.is_set()
        # Back within the grace period: the timer starts afresh when it is empty again.
        await h.join(member)
        await h.send(Leave(member=member))
        left_at = trio.current_time()
        with trio.fail_after(31):
            await h.emptied.wait()
        assert trio.current_time() - left_at == pytest.approx(30)


async def test_a_member_silent_past_the_stale_threshold_is_closed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = make_config(connection_cleanup={"check_interval": 5, "stale_threshold": 20})
    async with open_room(config=config) as h:
        silent = make_member(1, last_seen=trio.current_time())
        alive = make_member(2, last_seen=trio.current_time() + 3600)  # a pong is on its way
        await h.join(silent)
        await h.join(alive)
        started = trio.current_time()
        with trio.fail_after(60):
            await wait_closed(silent)
        # The first sweep past the threshold: 25 s (sweeps every 5 s, silent for over 20 s).
        assert trio.current_time() - started == pytest.approx(25)
        close = close_of(silent)
        assert close is not None and close[0] == CloseCode.GOING_AWAY
        assert "STALE_CONNECTION" in close[1]
        assert close_of(alive) is None
