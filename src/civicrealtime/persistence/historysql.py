"""History in SQLite and PostgreSQL: three tables beside the document store's (schema 2).

    realtime_history_updates   one row per accepted update, with its attribution
    realtime_history_versions  one row per closed version, with the state at its end
    realtime_history_clients   the Yjs client id -> author map of each room

The calls run in the document store's own worker thread and connection (one transaction
each), so that history and document writes never use a connection at the same time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import partial
from typing import Any, cast, get_args

import attrs

from ..rooms.origin import Actor, Origin
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
from .sqlbase import SqlStore, Tx

UPDATES = "realtime_history_updates"
VERSIONS = "realtime_history_versions"
CLIENTS = "realtime_history_clients"
HISTORY_TABLES = (UPDATES, VERSIONS, CLIENTS)


def history_ddl(blob: str, suffix: str = "") -> tuple[str, ...]:
    """The schema-2 tables; `blob` is BLOB (SQLite) or BYTEA (PostgreSQL)."""
    return (
        f"""CREATE TABLE IF NOT EXISTS {UPDATES} (
  room_id TEXT NOT NULL,
  seq BIGINT NOT NULL,
  created_at BIGINT NOT NULL,
  actor TEXT NOT NULL,
  author TEXT,
  author_name TEXT,
  conn_id BIGINT,
  node TEXT NOT NULL,
  client_ids TEXT NOT NULL,
  update_data {blob} NOT NULL,
  PRIMARY KEY (room_id, seq)
){suffix}""",
        f"""CREATE TABLE IF NOT EXISTS {VERSIONS} (
  room_id TEXT NOT NULL,
  number BIGINT NOT NULL,
  started_at BIGINT NOT NULL,
  ended_at BIGINT NOT NULL,
  first_seq BIGINT NOT NULL,
  last_seq BIGINT NOT NULL,
  reason TEXT NOT NULL,
  authors TEXT NOT NULL,
  block_changes TEXT NOT NULL,
  state_data {blob} NOT NULL,
  PRIMARY KEY (room_id, number)
){suffix}""",
        f"""CREATE TABLE IF NOT EXISTS {CLIENTS} (
  room_id TEXT NOT NULL,
  client_id BIGINT NOT NULL,
  actor TEXT NOT NULL,
  author TEXT NOT NULL,
  author_name TEXT,
  first_at BIGINT NOT NULL,
  PRIMARY KEY (room_id, client_id)
){suffix}""",
        f"CREATE INDEX IF NOT EXISTS {VERSIONS}_ended_idx ON {VERSIONS}(ended_at)",
    )


class SqlHistory(HistoryStore):
    """The `HistoryStore` of a SQL document store."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    async def append_entries(self, entries: Sequence[Entry]) -> list[int]:
        if not entries:
            return []
        return await self._store._call(True, partial(self._append, list(entries)))

    async def add_versions(
        self, items: Sequence[tuple[Version, bytes, Sequence[BlockChange]]]
    ) -> list[bool]:
        if not items:
            return []
        rows = [(version, state, changes_json(changes)) for version, state, changes in items]
        return await self._store._call(
            True, lambda tx: [self._add_version(v, state, c, tx) for v, state, c in rows]
        )

    async def block_changes(self, room_id: str) -> dict[int, list[BlockChange]]:
        rows = await self._store._call(
            False,
            lambda tx: tx.rows(
                f"SELECT number, block_changes FROM {VERSIONS} WHERE room_id = ?", (room_id,)
            ),
        )
        return {int(number): changes_from_json(str(text)) for number, text in rows}

    async def versions(self, room_id: str) -> list[Version]:
        rows = await self._store._call(
            False,
            lambda tx: tx.rows(
                "SELECT number, started_at, ended_at, first_seq, last_seq, reason, authors "
                f"FROM {VERSIONS} WHERE room_id = ? ORDER BY number",
                (room_id,),
            ),
        )
        return [_version(room_id, row) for row in rows]

    async def version_state(self, room_id: str, number: int) -> bytes | None:
        rows = await self._store._call(
            False,
            lambda tx: tx.rows(
                f"SELECT state_data FROM {VERSIONS} WHERE room_id = ? AND number = ?",
                (room_id, number),
            ),
        )
        return bytes(rows[0][0]) if rows else None

    async def entries(self, room_id: str, *, after_seq: int = 0) -> list[Entry]:
        rows = await self._store._call(
            False,
            lambda tx: tx.rows(
                "SELECT seq, created_at, actor, author, author_name, conn_id, node, client_ids, "
                f"update_data FROM {UPDATES} WHERE room_id = ? AND seq > ? ORDER BY seq",
                (room_id, after_seq),
            ),
        )
        return [_entry(room_id, row) for row in rows]

    async def last_seq(self, room_id: str) -> int:
        rows = await self._store._call(
            False,
            lambda tx: tx.rows(f"SELECT MAX(seq) FROM {UPDATES} WHERE room_id = ?", (room_id,)),
        )
        return int(rows[0][0] or 0)

    async def clients(self, room_id: str) -> dict[int, ClientOwner]:
        rows = await self._store._call(
            False,
            lambda tx: tx.rows(
                "SELECT client_id, actor, author, author_name, first_at "
                f"FROM {CLIENTS} WHERE room_id = ?",
                (room_id,),
            ),
        )
        return {
            int(client): ClientOwner(
                client_id=int(client),
                actor=_actor(actor),
                author=str(author),
                name=None if name is None else str(name),
                first_ms=int(first),
            )
            for client, actor, author, name, first in rows
        }

    async def prune(self, before_ms: int) -> int:
        return await self._store._call(True, partial(self._prune, before_ms))

    async def restore_history(
        self,
        room_id: str,
        entries: Sequence[Entry],
        versions: Sequence[tuple[Version, bytes, Sequence[BlockChange]]],
        clients: Sequence[ClientOwner],
    ) -> bool:
        return await self._store._call(
            True, partial(self._restore, room_id, list(entries), list(versions), list(clients))
        )

    # -- in the worker thread ----------------------------------------------------------------

    def _append(self, entries: list[Entry], tx: Tx) -> list[int]:
        last: dict[str, int] = {}
        seqs: list[int] = []
        rows: list[tuple[object, ...]] = []
        clients: list[tuple[object, ...]] = []
        for entry in entries:
            if entry.room_id not in last:
                self._store._lock_room(tx, "history:" + entry.room_id)
                found = tx.rows(
                    f"SELECT MAX(seq) FROM {UPDATES} WHERE room_id = ?", (entry.room_id,)
                )
                last[entry.room_id] = int(found[0][0] or 0)
            seq = last[entry.room_id] + 1
            last[entry.room_id] = seq
            seqs.append(seq)
            origin = entry.origin
            rows.append(
                (
                    entry.room_id,
                    seq,
                    entry.at_ms,
                    origin.actor,
                    origin.sub,
                    origin.name,
                    origin.conn_id,
                    entry.node,
                    json.dumps(list(entry.client_ids)),
                    entry.data,
                )
            )
            clients.extend(
                (entry.room_id, client, origin.actor, origin.author, origin.name, entry.at_ms)
                for client in entry.client_ids
            )
        tx.run_many(
            f"INSERT INTO {UPDATES} (room_id, seq, created_at, actor, author, author_name, "
            "conn_id, node, client_ids, update_data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        if clients:
            # The first author of a client id keeps it: Yjs picks client ids at random per
            # session, and a later claim of the same id by someone else must not re-attribute.
            tx.run_many(
                f"INSERT INTO {CLIENTS} (room_id, client_id, actor, author, author_name, "
                "first_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (room_id, client_id) DO NOTHING",
                clients,
            )
        return seqs

    def _restore(
        self,
        room_id: str,
        entries: list[Entry],
        versions: list[tuple[Version, bytes, Sequence[BlockChange]]],
        clients: list[ClientOwner],
        tx: Tx,
    ) -> bool:
        self._store._lock_room(tx, "history:" + room_id)
        for table in HISTORY_TABLES:
            if tx.rows(f"SELECT 1 FROM {table} WHERE room_id = ? LIMIT 1", (room_id,)):
                return False
        tx.run_many(
            f"INSERT INTO {UPDATES} (room_id, seq, created_at, actor, author, author_name, "
            "conn_id, node, client_ids, update_data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    room_id,
                    e.seq,
                    e.at_ms,
                    e.origin.actor,
                    e.origin.sub,
                    e.origin.name,
                    e.origin.conn_id,
                    e.node,
                    json.dumps(list(e.client_ids)),
                    e.data,
                )
                for e in entries
            ],
        )
        tx.run_many(
            f"INSERT INTO {CLIENTS} (room_id, client_id, actor, author, author_name, "
            "first_at) VALUES (?, ?, ?, ?, ?, ?)",
            [(room_id, c.client_id, c.actor, c.author, c.name, c.first_ms) for c in clients],
        )
        for version, state, changes in versions:
            self._add_version(
                attrs.evolve(version, room_id=room_id), state, changes_json(changes), tx
            )
        return True

    def _add_version(self, version: Version, state: bytes, changes: str, tx: Tx) -> bool:
        # Nodes sharing a database may close the same version at once: the first wins.
        self._store._lock_room(tx, "history:" + version.room_id)
        taken = tx.rows(
            f"SELECT 1 FROM {VERSIONS} WHERE room_id = ? AND number = ?",
            (version.room_id, version.number),
        )
        if taken:
            return False
        tx.run(
            f"INSERT INTO {VERSIONS} (room_id, number, started_at, ended_at, first_seq, "
            "last_seq, reason, authors, block_changes, state_data) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                version.room_id,
                version.number,
                version.started_ms,
                version.ended_ms,
                version.first_seq,
                version.last_seq,
                version.reason,
                authors_json(version.authors),
                changes,
                state,
            ),
        )
        return True

    def _prune(self, before_ms: int, tx: Tx) -> int:
        rooms = tx.rows(f"SELECT DISTINCT room_id FROM {VERSIONS} WHERE ended_at < ?", (before_ms,))
        dropped = 0
        for (room_id,) in rooms:
            # The oldest version retention keeps (the newest one at least: it is today's
            # document), and from the checkpoint that rebuilds it; earlier versions go.
            young = tx.rows(
                f"SELECT MIN(number) FROM {VERSIONS} WHERE room_id = ? AND ended_at >= ?",
                (room_id, before_ms),
            )
            newest = tx.rows(f"SELECT MAX(number) FROM {VERSIONS} WHERE room_id = ?", (room_id,))
            oldest_kept = int(young[0][0] if young[0][0] is not None else newest[0][0])
            found = tx.rows(
                f"SELECT MAX(number) FROM {VERSIONS} WHERE room_id = ? AND number <= ? "
                "AND length(state_data) > 0",
                (room_id, oldest_kept),
            )
            if found[0][0] is None:
                continue
            keep_from = int(found[0][0])
            old = tx.rows(
                f"SELECT COUNT(*) FROM {VERSIONS} WHERE room_id = ? AND number < ?",
                (room_id, keep_from),
            )
            tx.run(f"DELETE FROM {VERSIONS} WHERE room_id = ? AND number < ?", (room_id, keep_from))
            first_kept = tx.rows(
                f"SELECT first_seq FROM {VERSIONS} WHERE room_id = ? AND number = ?",
                (room_id, keep_from),
            )
            tx.run(
                f"DELETE FROM {UPDATES} WHERE room_id = ? AND seq < ?",
                (room_id, int(first_kept[0][0])),
            )
            dropped += int(old[0][0])
        return dropped


def _actor(value: object) -> Actor:
    text = str(value)
    for actor in get_args(Actor):
        if text == actor:
            return cast(Actor, actor)
    return "user"


def _version(room_id: str, row: tuple[Any, ...]) -> Version:
    number, started, ended, first, last, reason, authors = row
    return Version(
        room_id=room_id,
        number=int(number),
        started_ms=int(started),
        ended_ms=int(ended),
        first_seq=int(first),
        last_seq=int(last),
        reason=str(reason),  # type: ignore[arg-type]
        authors=authors_from_json(str(authors)),
    )


def _entry(room_id: str, row: tuple[Any, ...]) -> Entry:
    seq, at, actor, author, name, conn_id, node, clients, data = row
    return Entry(
        room_id=room_id,
        seq=int(seq),
        at_ms=int(at),
        origin=Origin(
            actor=_actor(actor),
            sub=None if author is None else str(author),
            name=None if name is None else str(name),
            conn_id=None if conn_id is None else int(conn_id),
        ),
        node=str(node),
        client_ids=tuple(int(c) for c in json.loads(str(clients))),
        data=bytes(data),
    )
