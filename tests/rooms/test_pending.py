"""A room's held updates (rooms/pending.py), through its mailbox: budgets, resolution, timeout.

An update whose structs build on changes the room never received waits inside pycrdt. The
daemon-level stories (hundreds of MiB, reloads) are in tests/test_pending.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import trio
import trio.testing
from pycrdt import Doc, Text

from civicrealtime.protocol import messages
from civicrealtime.protocol.closecodes import CloseCode

from ..conftest import make_config
from .harness import Stored, open_room
from .members import close_of, drain, kinds, make_member, received


def two_updates() -> tuple[bytes, bytes]:
    """A change, and a second one that builds on it (it waits without the first)."""
    client: Doc[Any] = Doc()
    text = client.get("t", type=Text)
    text.insert(0, "base ")
    first = client.get_update()
    before = client.get_state()
    text.insert(5, "more")
    return first, client.get_update(before)


class Discarding(Stored):
    def __init__(self) -> None:
        super().__init__()
        self.discarded: list[bytes] = []

    def discard(self, key: str, updates: Sequence[bytes]) -> None:
        self.discarded += updates


async def test_an_update_that_waits_is_held_kept_and_resolved_by_what_it_waits_for() -> None:
    hooks = Stored()
    first, second = two_updates()
    async with open_room(hooks=hooks) as h:
        sender, other = make_member(1), make_member(2)
        await h.join(sender)
        await h.join(other)

        await h.client_sends(sender, messages.encode_sync_update(second))
        assert h.room.pending.total == len(second)
        assert hooks.kept == [second]  # raw, as received: the store keeps what waits
        (origin,) = hooks.origins  # attributed to its sender, for the history
        assert origin is not None
        assert (origin.sub, origin.conn_id) == (sender.identity.user_id, sender.conn_id)
        assert await drain(other) == []  # it changed nothing anyone can see yet

        await h.client_sends(sender, messages.encode_sync_update(first))
        assert h.room.pending.total == 0  # integrated just now
        assert kinds(await received(other)) == ["update"]
        assert str(h.room.doc.get("t", type=Text)) == "base more"


async def test_past_the_connections_budget_its_held_updates_go_and_it_is_closed_4029() -> None:
    hooks = Discarding()
    _, second = two_updates()
    config = make_config(rooms={"max_pending_bytes_per_connection": len(second) - 1})
    async with open_room(hooks=hooks, config=config) as h:
        sender, other = make_member(1, control_frames=True), make_member(2)
        await h.join(sender)
        await h.join(other)
        await drain(sender)

        await h.client_sends(sender, messages.encode_sync_update(second))

        close = close_of(sender)
        assert close is not None and close[0] == CloseCode.LIMIT_EXCEEDED
        assert "PENDING_LIMIT" in close[1]
        errors = [s.payload["error"]["code"] for s in await received(sender) if s.kind == "error"]
        assert errors == ["PENDING_LIMIT"]
        assert h.room.pending.total == 0
        assert hooks.discarded == [second]
        assert hooks.kept == []  # dropped before it was kept
        assert close_of(other) is None and await drain(other) == []
        assert h.stats.pending_closes == 1


async def test_a_held_update_is_dropped_after_the_pending_timeout(
    mock_clock: trio.testing.MockClock,
) -> None:
    hooks = Discarding()
    _, second = two_updates()
    config = make_config(rooms={"pending_timeout": 30})
    async with open_room(hooks=hooks, config=config) as h:
        sender = make_member(1)
        await h.join(sender)
        await h.client_sends(sender, messages.encode_sync_update(second))
        assert h.room.pending.total == len(second)

        mock_clock.jump(29)
        await trio.testing.wait_all_tasks_blocked()
        assert h.room.pending.total == len(second)  # still within its time

        mock_clock.jump(2)
        await trio.testing.wait_all_tasks_blocked()
        assert h.room.pending.total == 0
        assert hooks.discarded == [second]
        assert h.stats.pending_dropped_updates == 1
        assert close_of(sender) is None  # a timeout closes nobody
        assert str(h.room.doc.get("t", type=Text)) == ""
