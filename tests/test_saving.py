"""The room's side of the "saved" acknowledgement (rooms/saving.py), without sockets."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pycrdt import Doc, Text

from civicrealtime.protocol.control import saved_frame
from civicrealtime.rooms import saving
from civicrealtime.rooms.saving import SaveAcks


class Writer:
    """A client (one Yjs client id) and the server's document it edits."""

    def __init__(self, server: Doc[Any], client_id: int) -> None:
        self.doc: Doc[Any] = Doc(client_id=client_id)
        self.server = server

    def type(self, words: str) -> bytes:
        before = self.doc.get_state()
        text = self.doc.get("t", type=Text)
        text += words
        return self.doc.get_update(before)

    def delete(self, start: int, end: int) -> bytes:
        before = self.doc.get_state()
        del self.doc.get("t", type=Text)[start:end]
        return self.doc.get_update(before)


def apply(server: Doc[Any], update: bytes) -> None:
    server.apply_update(update)


def test_an_update_is_saved_once_its_receipt_is_durable() -> None:
    server: Doc[Any] = Doc()
    acks = SaveAcks()
    w = Writer(server, 7)
    for receipt, words in enumerate(("ab", "cde"), start=1):
        update = w.type(words)
        apply(server, update)
        acks.note(1, update, before=receipt - 1, after=receipt, state=server.get_state(), now=0)
    assert acks.durable(0, 1.0) == []
    (first,) = acks.durable(1, 1.0)
    assert (first.conn_id, first.through, first.updates, first.waited) == (1, {7: 2}, 1, (1.0,))
    (second,) = acks.durable(5, 2.0)
    assert (second.through, second.updates) == ({7: 5}, 2)
    assert acks.durable(6, 3.0) == []  # nothing of theirs: no frame


def test_only_the_connections_whose_updates_became_durable_get_a_frame() -> None:
    server: Doc[Any] = Doc()
    acks = SaveAcks()
    a, b = Writer(server, 1), Writer(server, 2)
    ua = a.type("a")
    apply(server, ua)
    acks.note(10, ua, before=0, after=1, state=server.get_state(), now=0)
    ub = b.type("b")
    apply(server, ub)
    acks.note(20, ub, before=1, after=2, state=server.get_state(), now=0)
    assert [ack.conn_id for ack in acks.durable(1, 0)] == [10]
    assert [(ack.conn_id, ack.through) for ack in acks.durable(2, 0)] == [(20, {2: 1})]


def test_a_deletion_is_counted_though_it_adds_no_clock() -> None:
    server: Doc[Any] = Doc()
    acks = SaveAcks()
    w = Writer(server, 3)
    typed = w.type("hello")
    apply(server, typed)
    acks.note(1, typed, before=0, after=1, state=server.get_state(), now=0)
    deleted = w.delete(0, 2)
    apply(server, deleted)
    acks.note(1, deleted, before=1, after=2, state=server.get_state(), now=0)
    (ack,) = acks.durable(1, 0)
    assert ack.updates == 1
    (ack,) = acks.durable(2, 0)
    assert (ack.through, ack.updates) == ({3: 5}, 2)


def test_a_duplicate_is_saved_with_what_it_repeats() -> None:
    server: Doc[Any] = Doc()
    acks = SaveAcks()
    w = Writer(server, 4)
    update = w.type("x")
    apply(server, update)
    acks.note(1, update, before=0, after=1, state=server.get_state(), now=0)
    # Sent again (a reconnecting client's step 2): no new receipt, same requirement.
    acks.note(1, update, before=1, after=1, state=server.get_state(), now=0)
    assert acks.durable(0, 0) == []
    (ack,) = acks.durable(1, 0)
    assert ack.updates == 2


def test_a_refused_update_blocks_everything_after_it() -> None:
    server: Doc[Any] = Doc()
    acks = SaveAcks()
    w = Writer(server, 5)
    refused = w.type("never applied")
    acks.note(1, refused, before=0, after=0, state=server.get_state(), now=0)
    later = w.type("!")
    apply(server, refused)
    apply(server, later)
    acks.note(1, later, before=0, after=1, state=server.get_state(), now=0)
    assert acks.durable(100, 0) == []
    assert acks.unsaved(1) == 2


def test_clocks_stop_at_a_gap_the_document_does_not_hold() -> None:
    server: Doc[Any] = Doc()
    acks = SaveAcks()
    w = Writer(server, 6)
    w.type("lost on the way")  # never reaches the server
    waiting = w.type("!")
    apply(server, waiting)  # pending inside the document: it needs what was lost
    acks.note(1, waiting, before=0, after=1, state=server.get_state(), now=0)
    (ack,) = acks.durable(1, 0)
    assert ack.through == {}  # no clock of client 6 is claimed
    assert ack.updates == 1  # the message itself is in the log


def test_the_frame() -> None:
    frame = json.loads(saved_frame({12: 3, 5: 9}, 4))
    assert frame == {
        "type": "control",
        "event": "saved",
        "through": {"5": 9, "12": 3},
        "updates": 4,
    }


def test_an_integrated_update_needs_no_state_vector() -> None:
    server: Doc[Any] = Doc()
    acks = SaveAcks()
    w = Writer(server, 8)
    update = w.type("abc")
    apply(server, update)
    acks.note(1, update, before=0, after=1, state=None, now=0)
    (ack,) = acks.durable(1, 0)
    assert ack.through == {8: 3}


def test_entries_are_bounded_and_the_ack_stays_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(saving, "MAX_ENTRIES", 4)
    server: Doc[Any] = Doc()
    acks = SaveAcks()
    w = Writer(server, 9)
    for receipt in range(1, 11):
        update = w.type("z")
        apply(server, update)
        acks.note(1, update, before=receipt - 1, after=receipt, state=None, now=float(receipt))
    assert len(acks._connections[1].entries) == 4
    assert acks.unsaved(1) == 10
    (first,) = acks.durable(3, 20.0)
    assert (first.updates, first.through) == (3, {9: 3})
    # The merged tail is saved only once its newest update is durable.
    assert acks.durable(9, 20.0) == []
    (last,) = acks.durable(10, 20.0)
    assert (last.updates, last.through) == (10, {9: 10})
    assert len(last.waited) == 7
