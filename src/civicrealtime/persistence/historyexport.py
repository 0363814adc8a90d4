"""The file of `snapshots export` and `snapshots import`: a room's state and its history.

A room without history is exported as before: its state as one Yjs update, nothing else,
so that older tools and plain Yjs read it. A room with history is exported as

    civicrealtime-export 1\\n{JSON}

where the JSON holds the state (base64) and the history: the attributed updates with
their seqs, the client id -> author map, and the versions with their block changes and
checkpoint states. `import` reads both forms: a file without the header is a plain Yjs
update (every export written before history existed), merged as before.

History is restored only into a room that has none in the target store; in a room that
has its own, the state is merged and the file's history is left out (and the import says
so), because two histories cannot be interleaved without renumbering versions that
readers may have cited.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import attrs

from ..protocol.updates import InvalidUpdate
from ..rooms.origin import Origin
from .history import (
    BlockChange,
    ClientOwner,
    Entry,
    HistoryStore,
    Version,
    authors_from_json,
    authors_json,
    changes_from_json,
    changes_json,
)
from .historysql import _actor
from .historystores import history_for
from .rows import SnapshotRecord
from .store import Store

MAGIC = b"civicrealtime-export 1\n"


@attrs.frozen(kw_only=True, slots=True)
class RoomHistory:
    entries: tuple[Entry, ...]
    versions: tuple[tuple[Version, bytes, tuple[BlockChange, ...]], ...]
    clients: tuple[ClientOwner, ...]


@attrs.frozen(kw_only=True, slots=True)
class Exported:
    state: bytes
    history: RoomHistory | None


@attrs.frozen(kw_only=True, slots=True)
class Imported:
    record: SnapshotRecord
    versions: int  # versions of history restored
    history_skipped: bool  # the file had history, the room here already had its own


async def read_history(history: HistoryStore, room_id: str) -> RoomHistory | None:
    versions = await history.versions(room_id)
    entries = await history.entries(room_id)
    if not versions and not entries:
        return None
    changes = await history.block_changes(room_id)
    kept: list[tuple[Version, bytes, tuple[BlockChange, ...]]] = []
    for version in versions:
        state = await history.version_state(room_id, version.number)
        kept.append((version, state or b"", tuple(changes.get(version.number, ()))))
    clients = await history.clients(room_id)
    return RoomHistory(
        entries=tuple(entries),
        versions=tuple(kept),
        clients=tuple(clients[c] for c in sorted(clients)),
    )


async def export_room(store: Store, room_id: str) -> bytes:
    """The export file of a room: a plain Yjs update when it has no history."""
    state = await store.export_state(room_id)
    history = history_for(store)
    kept = None if history is None else await read_history(history, room_id)
    if kept is None:
        return state
    return MAGIC + encode(Exported(state=state, history=kept)).encode()


def parse_export(data: bytes) -> Exported:
    """Either form of export file. Raises `InvalidUpdate` for a damaged header form."""
    if not data.startswith(MAGIC):
        return Exported(state=data, history=None)
    try:
        return decode(json.loads(data[len(MAGIC) :]))
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidUpdate(f"not a readable civicrealtime export: {exc}") from None


async def import_room(store: Store, room_id: str, data: bytes) -> Imported:
    """Merge the file's state into the room, and restore its history if the room has none."""
    exported = parse_export(data)
    record = await store.import_state(room_id, exported.state)
    history = history_for(store)
    if exported.history is None or history is None:
        return Imported(record=record, versions=0, history_skipped=exported.history is not None)
    found = exported.history
    stored = await history.restore_history(
        room_id,
        [attrs.evolve(e, room_id=room_id) for e in found.entries],
        [(attrs.evolve(v, room_id=room_id), s, c) for v, s, c in found.versions],
        found.clients,
    )
    return Imported(
        record=record, versions=len(found.versions) if stored else 0, history_skipped=not stored
    )


def encode(exported: Exported) -> str:
    history = exported.history
    body: dict[str, Any] = {"state": _b64(exported.state)}
    if history is not None:
        body["history"] = {
            "entries": [
                {
                    "seq": e.seq,
                    "at": e.at_ms,
                    "actor": e.origin.actor,
                    "sub": e.origin.sub,
                    "name": e.origin.name,
                    "conn": e.origin.conn_id,
                    "node": e.node,
                    "clients": list(e.client_ids),
                    "data": _b64(e.data),
                }
                for e in history.entries
            ],
            "versions": [
                {
                    "n": v.number,
                    "start": v.started_ms,
                    "end": v.ended_ms,
                    "first": v.first_seq,
                    "last": v.last_seq,
                    "reason": v.reason,
                    "authors": authors_json(v.authors),
                    "blocks": changes_json(changes),
                    "state": _b64(state),
                }
                for v, state, changes in history.versions
            ],
            "clients": [
                {
                    "client": c.client_id,
                    "actor": c.actor,
                    "author": c.author,
                    "name": c.name,
                    "at": c.first_ms,
                }
                for c in history.clients
            ],
        }
    return json.dumps(body, separators=(",", ":"))


def decode(body: dict[str, Any]) -> Exported:
    state = base64.b64decode(body["state"])
    found = body.get("history")
    if found is None:
        return Exported(state=state, history=None)
    # The room id is the importing room's: `import_room` sets it.
    entries = tuple(
        Entry(
            room_id="",
            seq=int(e["seq"]),
            at_ms=int(e["at"]),
            origin=Origin(
                actor=_actor(e["actor"]),
                sub=_text(e.get("sub")),
                name=_text(e.get("name")),
                conn_id=None if e.get("conn") is None else int(e["conn"]),
            ),
            node=str(e["node"]),
            client_ids=tuple(int(c) for c in e["clients"]),
            data=base64.b64decode(e["data"]),
        )
        for e in found["entries"]
    )
    versions = tuple(
        (
            Version(
                room_id="",
                number=int(v["n"]),
                started_ms=int(v["start"]),
                ended_ms=int(v["end"]),
                first_seq=int(v["first"]),
                last_seq=int(v["last"]),
                reason=v["reason"],
                authors=authors_from_json(v["authors"]),
            ),
            base64.b64decode(v["state"]),
            tuple(changes_from_json(v["blocks"])),
        )
        for v in found["versions"]
    )
    clients = tuple(
        ClientOwner(
            client_id=int(c["client"]),
            actor=_actor(c["actor"]),
            author=str(c["author"]),
            name=_text(c.get("name")),
            first_ms=int(c["at"]),
        )
        for c in found["clients"]
    )
    return Exported(
        state=state, history=RoomHistory(entries=entries, versions=versions, clients=clients)
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _text(value: object) -> str | None:
    return None if value is None else str(value)


__all__ = ["MAGIC", "Exported", "Imported", "RoomHistory", "export_room", "import_room"]
