"""This node's clients' presence per room (presence.py)."""

from __future__ import annotations

import json

from civicrealtime.cluster.presence import LocalPresence
from civicrealtime.protocol.awareness import (
    AwarenessEntry,
    decode_awareness_update,
    encode_awareness_update,
)


def test_local_presence_answers_and_withdraws() -> None:
    presence = LocalPresence()

    def update(client: int, clock: int, state: object) -> bytes:
        return encode_awareness_update(
            [AwarenessEntry(client_id=client, clock=clock, state=json.dumps(state))]
        )

    presence.apply("room", update(1, 3, {"name": "a"}))
    presence.apply("room", update(2, 1, {"name": "b"}))
    presence.apply("room", update(2, 2, None))  # b left
    presence.apply("room", update(1, 2, {"name": "stale"}))  # older clock: ignored
    everyone = presence.everyone("room")
    assert everyone is not None
    assert [
        (e.client_id, e.clock, json.loads(e.state)) for e in decode_awareness_update(everyone)
    ] == [(1, 3, {"name": "a"})]
    removal = presence.withdraw("room")
    assert removal is not None
    assert [(e.client_id, e.clock, e.state) for e in decode_awareness_update(removal)] == [
        (1, 4, "null")
    ]
    assert presence.everyone("room") is None
    assert presence.withdraw("room") is None


def test_local_presence_withdraws_a_clock_at_the_top_of_the_range() -> None:
    """Issue #20: clock + 1 past 2**53 - 1 raised in encode; the same clock is sent there."""
    presence = LocalPresence()
    top = 2**53 - 1
    presence.apply(
        "room", encode_awareness_update([AwarenessEntry(client_id=4242, clock=top, state="{}")])
    )
    removal = presence.withdraw("room")
    assert removal is not None
    assert decode_awareness_update(removal) == [
        AwarenessEntry(client_id=4242, clock=top, state="null")
    ]
