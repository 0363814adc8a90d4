"""Test helpers: documents that produce real updates, and per-backend tampering."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs
from pycrdt import Doc, Text

from civicrealtime.persistence import FilesystemStore, SqliteStore, Store
from civicrealtime.persistence.filenames import safe_name
from civicrealtime.persistence.logfile import HEADER_SIZE, parse

PG_URL = os.environ.get("CIVICREALTIME_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


class Editor:
    """A client typing into a Text: each call returns the update it produced."""

    def __init__(self) -> None:
        self.doc: Doc[Any] = Doc()
        self.text = self.doc.get("t", type=Text)

    def type(self, words: str) -> bytes:
        before = self.doc.get_state()
        self.text += words
        return self.doc.get_update(before)

    def delete(self, start: int, end: int) -> bytes:
        before = self.doc.get_state()
        del self.text[start:end]
        return self.doc.get_update(before)

    def state(self) -> bytes:
        return self.doc.get_update()

    def __str__(self) -> str:
        return str(self.text)


def text_of(updates: Iterable[bytes]) -> str:
    doc: Doc[Any] = Doc()
    for update in updates:
        doc.apply_update(update)
    return str(doc.get("t", type=Text))


@attrs.define
class FakeClock:
    """Milliseconds that only move when told to."""

    now: int = 1_700_000_000_000

    def __call__(self) -> int:
        self.now += 1  # distinct creation times, as a real clock would mostly give
        return self.now


class Tamper:
    """Damages stored rows behind the store's back, for each backend."""

    def __init__(self, kind: str, store: Store) -> None:
        self.kind = kind
        self.store = store

    async def sql(self, statement: str, params: tuple[Any, ...] = ()) -> None:
        if isinstance(self.store, SqliteStore):
            await self.store.run_blocking(lambda conn: conn.execute(statement, params))
        else:
            pg_statement = statement.replace("?", "%s")

            def run(conn: Any) -> None:
                conn.execute(pg_statement, params)

            await self.store.run_blocking(run)  # type: ignore[attr-defined]

    async def corrupt_snapshot(self, snapshot_id: str) -> None:
        if isinstance(self.store, FilesystemStore):
            path = self._snapshot_file(snapshot_id, ".snapshot")
            data = bytearray(path.read_bytes())
            data[len(data) // 2] ^= 0xFF
            path.write_bytes(bytes(data))
        else:
            await self.sql(
                "UPDATE realtime_snapshots SET integrity_hash = ? WHERE id = ?",
                ("0" * 64, snapshot_id),
            )

    async def set_format(self, snapshot_id: str, version: int) -> None:
        if isinstance(self.store, FilesystemStore):
            path = self._snapshot_file(snapshot_id, ".meta.json")
            fields = json.loads(path.read_text())
            fields["format_version"] = version
            path.write_text(json.dumps(fields))
        else:
            await self.sql(
                "UPDATE realtime_snapshots SET format_version = ? WHERE id = ?",
                (version, snapshot_id),
            )

    async def corrupt_log(self, room_id: str, seq: int) -> None:
        if isinstance(self.store, FilesystemStore):
            path = self.store.directory / "realtime" / "log" / (safe_name(room_id) + ".log")
            buf = bytearray(path.read_bytes())
            # Find the record by re-encoding: flip the last byte of its data.
            offset = 0
            for record in parse(bytes(buf), room_id).records:
                offset = bytes(buf).find(record.data, offset + HEADER_SIZE)
                if record.seq == seq:
                    buf[offset + len(record.data) - 1] ^= 0xFF
                    break
            path.write_bytes(bytes(buf))
        else:
            await self.sql(
                "UPDATE realtime_update_log SET checksum = ? WHERE room_id = ? AND seq = ?",
                (12345, room_id, seq),
            )

    def _snapshot_file(self, snapshot_id: str, suffix: str) -> Path:
        assert isinstance(self.store, FilesystemStore)
        root = self.store.directory / "realtime" / "snapshots"
        for path in root.rglob("*" + suffix):
            meta = path.with_name(path.name.removesuffix(suffix) + ".meta.json")
            if json.loads(meta.read_text()).get("id") == snapshot_id:
                return path
        raise AssertionError(f"no file for {snapshot_id}")


def unique_schema() -> str:
    return f"crt_test_{secrets.token_hex(6)}"
