"""The `records` room type: CivicPress records seeded from Markdown, drafts written back.

- `exists`: with `records.data_dir`, a room id must name a record of the index (else the
  editor gets 4004 "record not found"); the index is rescanned when the directory changes,
  at most every `records.refresh_seconds`.
- `seed`: a room with no stored state gets the record's body as `XmlFragment('default')` in
  y-prosemirror form. What the schema cannot express is reported in the log when the record
  is opened (never silently dropped: see markdown_reader's policy).
- `on_snapshot`: after each snapshot of a changed room, the fragment is serialised back to
  Markdown and written, with the record's front matter unchanged, to
  `<drafts_dir>/<type>/<id>.md` (atomically). The published record file is never touched.

Only the cheap half of each conversion touches the document (the room's own task); parsing
and serialising run in a worker thread, so a large record does not stall other rooms.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import trio
from pycrdt import Doc, XmlFragment

from ..rooms import RoomType
from .draft import render_draft, write_draft_atomically
from .markdown_reader import parse_markdown
from .markdown_writer import write_markdown
from .source import Record, RecordIndex
from .yjs_form import read_fragment, write_fragment

log = logging.getLogger("civicrealtime.records")

FRAGMENT = "default"


class RecordsRoomType(RoomType):
    def __init__(
        self,
        *,
        data_dir: str | None,
        drafts_dir: str,
        refresh_seconds: float = 2.0,
    ) -> None:
        super().__init__("records")
        self._index = RecordIndex(data_dir) if data_dir else None
        self._drafts = Path(drafts_dir)
        self._refresh_seconds = refresh_seconds
        self._refreshed_at = -float("inf")
        self._refresh_lock = trio.Lock()
        self.drafts_written = 0
        self.last_draft_error: str | None = None

    async def start(self) -> None:
        if self._index is None:
            log.info(
                "records.no_data_dir: records.data_dir is not set; records rooms start "
                "empty and no drafts are written"
            )
            return
        count = await trio.to_thread.run_sync(self._index.scan)
        self._refreshed_at = trio.current_time()
        log.info("records.indexed records=%d", count)

    async def _fresh_index(self) -> RecordIndex | None:
        index = self._index
        if index is None:
            return None
        async with self._refresh_lock:
            if trio.current_time() - self._refreshed_at >= self._refresh_seconds:
                changed = await trio.to_thread.run_sync(index.refresh_if_changed)
                self._refreshed_at = trio.current_time()
                if changed:
                    log.info("records.reindexed records=%d", len(index))
        return index

    async def exists(self, room_id: str) -> bool:
        index = await self._fresh_index()
        return index is None or index.lookup(room_id) is not None

    async def _record(self, room_id: str) -> Record | None:
        index = await self._fresh_index()
        if index is None or index.lookup(room_id) is None:
            return None
        return await trio.to_thread.run_sync(index.read, room_id)

    async def seed(self, room_id: str, doc: Doc[Any]) -> None:
        record = await self._record(room_id)
        if record is None:
            return
        blocks, unsupported = await trio.to_thread.run_sync(parse_markdown, record.body)
        fragment = doc.get(FRAGMENT, type=XmlFragment)
        if len(fragment.children) == 0:
            write_fragment(fragment, blocks)
        for item in unsupported:
            log.warning(
                "records.unsupported record=%s line=%d kind=%s excerpt=%s",
                room_id,
                item.line + record.body_line - 1,
                item.kind,
                item.excerpt,
            )
        log.info("records.seeded record=%s blocks=%d", room_id, len(blocks))

    async def on_snapshot(self, room_id: str, doc: Doc[Any]) -> None:
        record = await self._record(room_id)
        if record is None:
            return
        blocks = read_fragment(doc.get(FRAGMENT, type=XmlFragment))
        try:
            body = await trio.to_thread.run_sync(write_markdown, blocks)
            record_type = str(record.front_matter.get("type") or record.path.parent.parent.name)
            target = self._drafts / _safe(record_type) / f"{_safe(room_id)}.md"
            await trio.to_thread.run_sync(_write_draft, target, render_draft(record, body))
        except Exception as exc:
            self.last_draft_error = f"{type(exc).__name__}: {exc}"
            raise
        self.drafts_written += 1
        self.last_draft_error = None
        log.info("records.draft_written record=%s path=%s", room_id, target)

    async def markdown_of(self, doc: Doc[Any]) -> str:
        blocks = read_fragment(doc.get(FRAGMENT, type=XmlFragment))
        return await trio.to_thread.run_sync(write_markdown, blocks)

    def describe(self, room_id: str) -> dict[str, Any]:
        return {"drafts_written": self.drafts_written, "last_draft_error": self.last_draft_error}

    @property
    def index(self) -> RecordIndex | None:
        return self._index

    @property
    def drafts_dir(self) -> Path:
        return self._drafts


def _safe(name: str) -> str:
    """A path component: record ids are already validated by the index; be strict anyway."""
    cleaned = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name).strip(".")
    return cleaned or "_"


def _write_draft(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_draft_atomically(path, text)
