"""`notes`: an example civicrealtime room type, enabled from configuration alone.

Each room is one plain `Y.Text` named `content`. With a `directory`, the room `<id>` is
seeded from `<directory>/<id>.txt` when it has no stored state, and the text is written
back to that file (atomically) after each snapshot. Its permissions have their own names:
`<name>:read` to join, `<name>:write` to edit.

It uses only the public seam (`civicrealtime.rooms.RoomType`); see docs/room-types.md.
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path
from typing import Any

import trio
from pycrdt import Doc, Text

from civicrealtime.atomicfile import write_atomically
from civicrealtime.rooms import RoomType

TEXT = "content"
# Room ids that name a file: no path separators, no hidden files, a bounded length.
NOTE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


class NotesRoomType(RoomType):
    """Plain-text notes; called by the daemon as `NotesRoomType(name, **options)`."""

    def __init__(
        self, name: str, *, directory: str | None = None, only_existing: bool = False
    ) -> None:
        super().__init__(name, view_permission=f"{name}:read", edit_permission=f"{name}:write")
        if only_existing and directory is None:
            raise ValueError("only_existing needs a directory")
        self.directory = Path(directory) if directory is not None else None
        self.only_existing = only_existing
        self.saved = 0

    async def start(self) -> None:
        if self.directory is not None:
            await trio.to_thread.run_sync(
                partial(self.directory.mkdir, parents=True, exist_ok=True)
            )

    def _file(self, room_id: str) -> Path | None:
        if self.directory is None or not NOTE_ID.fullmatch(room_id):
            return None
        return self.directory / f"{room_id}.txt"

    async def exists(self, room_id: str) -> bool:
        if not self.only_existing:
            return True
        path = self._file(room_id)
        return path is not None and await trio.to_thread.run_sync(path.is_file)

    async def seed(self, room_id: str, doc: Doc[Any]) -> None:
        path = self._file(room_id)
        if path is None or not await trio.to_thread.run_sync(path.is_file):
            return
        text = await trio.to_thread.run_sync(path.read_text, "utf-8")
        doc.get(TEXT, type=Text).insert(0, text)

    async def on_snapshot(self, room_id: str, doc: Doc[Any]) -> None:
        path = self._file(room_id)
        if path is None:
            return
        text = str(doc.get(TEXT, type=Text))  # read in the room's task, written in a thread
        await trio.to_thread.run_sync(write_atomically, path, text.encode("utf-8"))
        self.saved += 1

    def describe(self, room_id: str) -> dict[str, Any]:
        return {"notes_saved": self.saved}
