"""What the operations port shows of the live rooms (`/admin/rooms`)."""

from __future__ import annotations

import json
from typing import Any

from ..rooms import RoomManager


def describe_rooms(rooms: RoomManager) -> list[dict[str, Any]]:
    """Every live room, in one line each (`GET /admin/rooms`)."""
    return [
        {
            "room": handle.key,
            "type": handle.room_type,
            "connections": handle.members,
            "size_bytes": handle.room.size_estimate,
            "updates_applied": handle.room.updates_applied,
        }
        for handle in rooms
    ]


def describe_room(rooms: RoomManager, key: str) -> dict[str, Any] | None:
    """One live room: its participants and awareness (`GET /admin/rooms/<room>`); None when
    it is not live. Read between two of the room's checkpoints, without awaiting."""
    handle = rooms.get(key)
    if handle is None:
        return None
    room = handle.room
    awareness = {}
    for client_id, state in room.awareness.states().items():
        awareness[str(client_id)] = json.loads(state)
    return {
        "room": key,
        "type": handle.room_type,
        "size_bytes": len(room.doc.get_update()),
        "updates_applied": room.updates_applied,
        "participants": [
            {
                "conn_id": m.conn_id,
                "client_id": m.client_id,
                "user_id": m.identity.user_id,
                "name": m.identity.name,
                "access": "edit" if m.can_edit else "view",
                "peer": m.peer,
                "awareness_ids": sorted(m.awareness_ids),
                "queued_frames": m.outbound.pending,
            }
            for m in room.members.values()
        ],
        "awareness": awareness,
    }
