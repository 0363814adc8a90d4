"""Delivering the published record files' changes into their rooms.

`PublishedWatcher` (watcher.py) notices a record file changed and hands its edits here;
each goes into the record's room when the room is live or stored (a room never opened
needs none: it loads the file as it is). Owns nothing but counters; never holds a room's
document (the room applies each edit in its own task, `rooms/edits.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import trio

from ..config import RealtimeConfig
from ..persistence.errors import StoreError
from ..persistence.store import STORE_CALL_TIMEOUT, Store
from ..rooms import RoomManager, RoomTypeRegistry
from ..rooms.edits import RoomGone, edit_room
from ..rooms.manager import RoomUnavailable
from ..rooms.origin import FILESYSTEM_ORIGIN
from ..stats import Stats
from .handler import RecordsRoomType
from .watcher import ACTOR as FILE_ACTOR
from .watcher import Edit, PublishedWatcher


class FileEditDelivery:
    """The watcher's side of the rooms: edits in, which merged and which failed out."""

    def __init__(self, rooms: RoomManager, stats: Stats, store: Store | None) -> None:
        self._rooms = rooms
        self._stats = stats
        self._store = store

    def count_merge(self) -> None:
        self._stats.record_file_merges += 1

    def count_failure(self) -> None:
        self._stats.record_file_failures += 1

    async def deliver(self, edits: Sequence[tuple[str, Edit]]) -> tuple[set[str], dict[str, str]]:
        """Each edit into its room if it is live or stored; a room never opened needs none."""
        stored: set[str] = set()
        if self._store is not None:
            try:
                with trio.fail_after(STORE_CALL_TIMEOUT):
                    stored = set(await self._store.list_rooms())
            except (StoreError, trio.TooSlowError) as exc:
                why = str(exc) or "the store did not answer"
                return set(), {record_id: why for record_id, _ in edits}
        merged: set[str] = set()
        failed: dict[str, str] = {}
        for record_id, edit in edits:
            key = f"records:{record_id}"
            if self._rooms.get(key) is None and key not in stored:
                continue
            try:
                result = await edit_room(
                    self._rooms,
                    key,
                    "records",
                    actor=FILE_ACTOR,
                    edit=edit,
                    origin=FILESYSTEM_ORIGIN,
                )
            except (RoomUnavailable, RoomGone) as exc:
                failed[record_id] = str(exc) or type(exc).__name__
                continue
            if result.error is None:
                merged.add(record_id)
            else:
                failed[record_id] = result.error
        return merged, failed


def make_watcher(
    config: RealtimeConfig, room_types: RoomTypeRegistry, delivery: FileEditDelivery
) -> PublishedWatcher | None:
    """The watcher of the published records, if a records type reads any and watching is on."""
    interval = config.records.watch_seconds
    for room_type in room_types:
        if isinstance(room_type, RecordsRoomType) and room_type.index is not None:
            if interval <= 0:
                return None
            watcher = PublishedWatcher(
                room_type.index,
                delivery.deliver,
                interval=interval,
                ignore_under=room_type.drafts_dir,
                bases_dir=Path(config.data_dir) / "published",
            )
            watcher.on_merge = delivery.count_merge
            watcher.on_failure = delivery.count_failure
            return watcher
    return None
