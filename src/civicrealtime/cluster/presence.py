"""The presence states this node's clients published, per room.

Kept from the awareness frames the rooms hand to the relay, so that the node can answer
another node that just opened a room ("who is here?") and can withdraw its clients'
presence when a room closes without their leaves being handled (shutdown, admin close).
"""

from __future__ import annotations

from ..protocol.awareness import (
    AwarenessEntry,
    decode_awareness_update,
    encode_awareness_update,
    removal_clock,
)
from ..protocol.errors import MalformedMessage

_NULL = "null"


class LocalPresence:
    def __init__(self) -> None:
        self._rooms: dict[str, dict[int, AwarenessEntry]] = {}

    def apply(self, room: str, payload: bytes) -> None:
        try:
            entries = decode_awareness_update(payload)
        except MalformedMessage:
            return
        states = self._rooms.setdefault(room, {})
        for entry in entries:
            current = states.get(entry.client_id)
            if current is not None and entry.clock < current.clock:
                continue
            if entry.state == _NULL:
                states.pop(entry.client_id, None)
            else:
                states[entry.client_id] = entry
        if not states:
            del self._rooms[room]

    def everyone(self, room: str) -> bytes | None:
        """An awareness update with every state of the room's local clients, if any."""
        states = self._rooms.get(room)
        return encode_awareness_update(states.values()) if states else None

    def withdraw(self, room: str) -> bytes | None:
        """Forget the room; the awareness update that removes its clients, if any."""
        states = self._rooms.pop(room, None)
        if not states:
            return None
        return encode_awareness_update(
            AwarenessEntry(client_id=cid, clock=removal_clock(entry.clock), state=_NULL)
            for cid, entry in states.items()
        )
