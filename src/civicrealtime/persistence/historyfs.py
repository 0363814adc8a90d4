"""History in the filesystem store (schema 2), beside the snapshots and the log:

    <dir>/realtime/history/<room>/updates.jsonl   one JSON line per attributed update
    <dir>/realtime/history/<room>/clients.jsonl   client id -> author, first claim wins
    <dir>/realtime/history/<room>/versions.jsonl  one JSON line per closed version
    <dir>/realtime/history/<room>/v<N>.state      the full state at the end of version N

Lines are appended and fsynced; a version's state file is written (atomically) before
its line, so a line always has its state. A torn last line (a crash mid-append) is
ignored when read. Pruning rewrites the files atomically. The calls run in the store's
worker thread, under its writer lock.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import attrs

from ..atomicfile import fsync_directory, write_all, write_atomically
from ..rooms.origin import Origin
from .filenames import safe_name
from .filesystem import FilesystemStore
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

HISTORY_DIR = "history"


class FsHistory(HistoryStore):
    """The `HistoryStore` of a filesystem document store."""

    def __init__(self, store: FilesystemStore) -> None:
        self._store = store
        self._root = store.directory / "realtime" / HISTORY_DIR
        self._last: dict[str, int] = {}

    async def append_entries(self, entries: Sequence[Entry]) -> list[int]:
        if not entries:
            return []
        return await self._store._call(partial(self._append, list(entries)))

    async def add_versions(
        self, items: Sequence[tuple[Version, bytes, Sequence[BlockChange]]]
    ) -> list[bool]:
        if not items:
            return []
        return await self._store._call(
            lambda: [self._add_version(version, state, c) for version, state, c in items]
        )

    async def block_changes(self, room_id: str) -> dict[int, list[BlockChange]]:
        lines = await self._store._call(partial(self._lines, room_id, "versions.jsonl"))
        return {int(line["n"]): changes_from_json(line.get("blocks", "[]")) for line in lines}

    async def versions(self, room_id: str) -> list[Version]:
        lines = await self._store._call(partial(self._lines, room_id, "versions.jsonl"))
        return [_version(room_id, line) for line in lines]

    async def version_state(self, room_id: str, number: int) -> bytes | None:
        def read() -> bytes | None:
            for line in self._lines(room_id, "versions.jsonl"):
                if int(line["n"]) == number:
                    if not line.get("state", True):
                        return b""
                    return (self._dir(room_id) / f"v{number}.state").read_bytes()
            return None

        return await self._store._call(read)

    async def entries(self, room_id: str, *, after_seq: int = 0) -> list[Entry]:
        lines = await self._store._call(partial(self._lines, room_id, "updates.jsonl"))
        return [_entry(room_id, line) for line in lines if int(line["seq"]) > after_seq]

    async def last_seq(self, room_id: str) -> int:
        return await self._store._call(partial(self._last_seq, room_id))

    async def clients(self, room_id: str) -> dict[int, ClientOwner]:
        lines = await self._store._call(partial(self._lines, room_id, "clients.jsonl"))
        owners: dict[int, ClientOwner] = {}
        for line in lines:
            client = int(line["client"])
            owners.setdefault(
                client,
                ClientOwner(
                    client_id=client,
                    actor=_actor(line["actor"]),
                    author=str(line["author"]),
                    name=line.get("name"),
                    first_ms=int(line["at"]),
                ),
            )
        return owners

    async def prune(self, before_ms: int) -> int:
        return await self._store._call(partial(self._prune, before_ms))

    async def restore_history(
        self,
        room_id: str,
        entries: Sequence[Entry],
        versions: Sequence[tuple[Version, bytes, Sequence[BlockChange]]],
        clients: Sequence[ClientOwner],
    ) -> bool:
        return await self._store._call(
            partial(self._restore, room_id, list(entries), list(versions), list(clients))
        )

    # -- in the worker thread ----------------------------------------------------------------

    def _dir(self, room_id: str) -> Path:
        return self._root / safe_name(room_id)

    def _lines(self, room_id: str, name: str) -> list[dict[str, Any]]:
        return self._lines_in(self._dir(room_id), name)

    def _last_seq(self, room_id: str) -> int:
        if room_id not in self._last:
            lines = self._lines(room_id, "updates.jsonl")
            self._last[room_id] = max((int(line["seq"]) for line in lines), default=0)
        return self._last[room_id]

    def _append_lines(self, room_id: str, name: str, lines: list[dict[str, Any]]) -> None:
        directory = self._dir(room_id)
        if not directory.is_dir():
            directory.mkdir(parents=True, exist_ok=True)
            fsync_directory(directory.parent)
        data = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode()
        fd = os.open(directory / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _append(self, entries: list[Entry]) -> list[int]:
        self._store._writable()
        by_room: dict[str, list[dict[str, Any]]] = {}
        clients: dict[str, list[dict[str, Any]]] = {}
        seqs: list[int] = []
        for entry in entries:
            seq = self._last_seq(entry.room_id) + 1
            self._last[entry.room_id] = seq
            seqs.append(seq)
            origin = entry.origin
            by_room.setdefault(entry.room_id, []).append(
                {
                    "seq": seq,
                    "at": entry.at_ms,
                    "actor": origin.actor,
                    "sub": origin.sub,
                    "name": origin.name,
                    "conn": origin.conn_id,
                    "node": entry.node,
                    "clients": list(entry.client_ids),
                    "data": base64.b64encode(entry.data).decode(),
                }
            )
            clients.setdefault(entry.room_id, []).extend(
                {
                    "client": client,
                    "actor": origin.actor,
                    "author": origin.author,
                    "name": origin.name,
                    "at": entry.at_ms,
                }
                for client in entry.client_ids
            )
        for room_id, lines in by_room.items():
            self._store._worker.check_cancelled()
            try:
                self._append_lines(room_id, "updates.jsonl", lines)
            except BaseException:
                self._last.pop(room_id, None)  # re-read: the append may be partial
                raise
            if clients[room_id]:
                known = {int(line["client"]) for line in self._lines(room_id, "clients.jsonl")}
                fresh = [line for line in clients[room_id] if line["client"] not in known]
                if fresh:
                    self._append_lines(room_id, "clients.jsonl", fresh)
        return seqs

    def _restore(
        self,
        room_id: str,
        entries: list[Entry],
        versions: list[tuple[Version, bytes, Sequence[BlockChange]]],
        clients: list[ClientOwner],
    ) -> bool:
        self._store._writable()
        names = ("updates.jsonl", "clients.jsonl", "versions.jsonl")
        if any(self._lines(room_id, name) for name in names):
            return False
        self._last.pop(room_id, None)
        # Clients and updates first, versions last: a crash in between leaves entries
        # without their versions, which the recorder closes again, never a version whose
        # updates are missing.
        if clients:
            self._append_lines(
                room_id,
                "clients.jsonl",
                [
                    {
                        "client": c.client_id,
                        "actor": c.actor,
                        "author": c.author,
                        "name": c.name,
                        "at": c.first_ms,
                    }
                    for c in clients
                ],
            )
        if entries:
            self._append_lines(
                room_id,
                "updates.jsonl",
                [
                    {
                        "seq": e.seq,
                        "at": e.at_ms,
                        "actor": e.origin.actor,
                        "sub": e.origin.sub,
                        "name": e.origin.name,
                        "conn": e.origin.conn_id,
                        "node": e.node,
                        "clients": list(e.client_ids),
                        "data": base64.b64encode(e.data).decode(),
                    }
                    for e in entries
                ],
            )
        self._last.pop(room_id, None)
        for version, state, changes in versions:
            self._add_version(attrs.evolve(version, room_id=room_id), state, changes)
        return True

    def _add_version(self, version: Version, state: bytes, changes: Sequence[BlockChange]) -> bool:
        self._store._writable()
        known = self._lines(version.room_id, "versions.jsonl")
        if any(int(line["n"]) == version.number for line in known):
            return False
        directory = self._dir(version.room_id)
        directory.mkdir(parents=True, exist_ok=True)
        if state:
            write_atomically(directory / f"v{version.number}.state", state)
        line = {
            "state": bool(state),
            "blocks": changes_json(changes),
            "n": version.number,
            "start": version.started_ms,
            "end": version.ended_ms,
            "first": version.first_seq,
            "last": version.last_seq,
            "reason": version.reason,
            "authors": authors_json(version.authors),
        }
        self._append_lines(version.room_id, "versions.jsonl", [line])
        return True

    def _prune(self, before_ms: int) -> int:
        self._store._writable()
        if not self._root.is_dir():
            return 0
        dropped = 0
        for directory in sorted(self._root.iterdir()):
            versions = self._lines_in(directory, "versions.jsonl")
            if not versions:
                continue
            young = [int(v["n"]) for v in versions if int(v["end"]) >= before_ms]
            oldest_kept = min(young) if young else max(int(v["n"]) for v in versions)
            checkpoints = [
                int(v["n"]) for v in versions if int(v["n"]) <= oldest_kept and v.get("state", True)
            ]
            if not checkpoints:
                continue
            keep_from = max(checkpoints)
            old = [v for v in versions if int(v["n"]) < keep_from]
            if not old:
                continue
            kept = [v for v in versions if int(v["n"]) >= keep_from]
            first_kept = min(int(v["first"]) for v in kept)
            updates = self._lines_in(directory, "updates.jsonl")
            _rewrite(directory / "versions.jsonl", kept)
            _rewrite(
                directory / "updates.jsonl", [u for u in updates if int(u["seq"]) >= first_kept]
            )
            for line in old:
                (directory / f"v{int(line['n'])}.state").unlink(missing_ok=True)
            dropped += len(old)
        return dropped

    def _lines_in(self, directory: Path, name: str) -> list[dict[str, Any]]:
        try:
            text = (directory / name).read_text()
        except FileNotFoundError:
            return []
        found: list[dict[str, Any]] = []
        for raw in text.split("\n"):
            if not raw:
                continue
            try:
                found.append(json.loads(raw))
            except ValueError:
                # A torn last line from a crash mid-append: it was never acknowledged.
                continue
        return found


def _rewrite(path: Path, lines: list[dict[str, Any]]) -> None:
    data = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode()
    write_atomically(path, data)


def _version(room_id: str, line: dict[str, Any]) -> Version:
    return Version(
        room_id=room_id,
        number=int(line["n"]),
        started_ms=int(line["start"]),
        ended_ms=int(line["end"]),
        first_seq=int(line["first"]),
        last_seq=int(line["last"]),
        reason=line["reason"],
        authors=authors_from_json(line["authors"]),
    )


def _entry(room_id: str, line: dict[str, Any]) -> Entry:
    return Entry(
        room_id=room_id,
        seq=int(line["seq"]),
        at_ms=int(line["at"]),
        origin=Origin(
            actor=_actor(line["actor"]),
            sub=line.get("sub"),
            name=line.get("name"),
            conn_id=line.get("conn"),
        ),
        node=str(line["node"]),
        client_ids=tuple(int(c) for c in line["clients"]),
        data=base64.b64decode(line["data"]),
    )
