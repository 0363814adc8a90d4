"""Reading a room's history: list, show, diff and blame, over any `HistoryStore`.

Used by the ops port (http/history.py) and by the CLI (cli/history.py), which reads the
store directly. A version is shown as Markdown for a record (records/to_markdown.py) and
as JSON for other room types. Blocks are what a clerk points at: a paragraph, a heading,
a list item, a table row (one Markdown line of a list or a table, else a run of lines
between blank lines).

Blame (records only) replays the attributed updates and follows which Yjs branch each
one changed: see history_blame.py.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Sequence
from typing import Any

import attrs
import trio
from pycrdt import Array, Doc, Map, Text, XmlFragment

from .history_blame import Replay
from .persistence.history import Entry, HistoryStore, Version, rebuild_version
from .protocol.updates import apply_update
from .records.to_markdown import fragment_to_markdown

RECORDS_PREFIX = "records:"
RECORD_FRAGMENT = "default"  # the y-prosemirror fragment of a record (records/handler.py)
_ITEM = re.compile(r"^\s*([-*+]|\d+[.)])\s|^\s*\|")


class NotFound(Exception):
    """An unknown room (no history) or version; the message says which."""


class Unsupported(Exception):
    """The room's type does not support this (blame, restore: records only)."""


def is_record(room_key: str) -> bool:
    return room_key.startswith(RECORDS_PREFIX)


def doc_of(updates: Sequence[bytes]) -> Doc[Any]:
    doc: Doc[Any] = Doc()
    for update in updates:
        apply_update(doc, update)
    return doc


def render_doc(room_key: str, doc: Doc[Any]) -> str:
    """The document as a clerk reads it: Markdown for a record, else indented JSON."""
    if is_record(room_key):
        return fragment_to_markdown(doc.get(RECORD_FRAGMENT, type=XmlFragment))
    return json.dumps(_as_json(doc.get_update()), indent=2, sort_keys=True, ensure_ascii=False)


def render(room_key: str, updates: Sequence[bytes]) -> str:
    return render_doc(room_key, doc_of(updates))


def _as_json(state: bytes) -> dict[str, Any]:
    """Each root as a map, a text or an array: an update does not say which, so the first
    reading that finds content wins (a fresh document per attempt: a root's type sticks)."""
    names = list(doc_of([state]).keys())
    found: dict[str, Any] = {}
    for name in sorted(names):
        value: Any = None
        for kind in (Map, Text, Array):
            doc = doc_of([state])
            root = doc.get(name, type=kind)
            value = str(root) if kind is Text else root.to_py()
            if value:
                break
        found[name] = value
    return found


def blocks_of(text: str) -> list[str]:
    """The blocks of a rendered document, in order."""
    blocks: list[str] = []
    current: list[str] = []
    for line in text.split("\n"):
        if not line.strip():
            if current:
                blocks.append("\n".join(current))
                current = []
            continue
        if current and _ITEM.match(line):
            blocks.append("\n".join(current))
            current = []
        current.append(line)
    if current:
        blocks.append("\n".join(current))
    return blocks


@attrs.frozen(kw_only=True)
class Diff:
    unified: str
    blocks: tuple[dict[str, Any], ...]  # {"change": added|removed|changed, ...}
    summary: dict[str, int]

    def as_json(self) -> dict[str, Any]:
        return {"unified": self.unified, "blocks": list(self.blocks), "summary": self.summary}


def diff_texts(before: str, after: str, *, before_label: str, after_label: str) -> Diff:
    unified = "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=before_label,
            tofile=after_label,
        )
    )
    old, new = blocks_of(before), blocks_of(after)
    changes: list[dict[str, Any]] = []
    summary = {"added": 0, "removed": 0, "changed": 0, "unchanged": 0}
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            summary["unchanged"] += i2 - i1
            continue
        paired = min(i2 - i1, j2 - j1) if tag == "replace" else 0
        for k in range(paired):
            changes.append(
                {"change": "changed", "block": j1 + k, "before": old[i1 + k], "after": new[j1 + k]}
            )
        summary["changed"] += paired
        for k in range(i1 + paired, i2):
            changes.append({"change": "removed", "block": None, "before": old[k], "after": None})
            summary["removed"] += 1
        for k in range(j1 + paired, j2):
            changes.append({"change": "added", "block": k, "before": None, "after": new[k]})
            summary["added"] += 1
    return Diff(unified=unified, blocks=tuple(changes), summary=summary)


class HistoryReader:
    """The read side of a room's history, over a `HistoryStore`."""

    def __init__(self, store: HistoryStore) -> None:
        self.store = store

    async def versions(
        self,
        room_key: str,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        user: str | None = None,
    ) -> list[Version]:
        """Versions overlapping [since, until] with `user` among their authors, oldest first."""
        versions = await self._all(room_key)
        return [
            v
            for v in versions
            if (since_ms is None or v.ended_ms >= since_ms)
            and (until_ms is None or v.started_ms <= until_ms)
            and (user is None or v.by(user))
        ]

    async def state(self, room_key: str, number: int) -> bytes:
        """The full state at the end of a version (rebuilt from its checkpoint)."""
        versions = await self._all(room_key)
        if not any(v.number == number for v in versions):
            raise NotFound(f"room {room_key!r} has no version {number}")
        state, _ = await rebuild_version(self.store, versions, number)
        return state

    async def version(self, room_key: str, number: int) -> Version:
        for version in await self._all(room_key):
            if version.number == number:
                return version
        raise NotFound(f"room {room_key!r} has no version {number}")

    async def show(self, room_key: str, number: int) -> str:
        version = await self.version(room_key, number)
        state = await self.state(room_key, version.number)
        return await trio.to_thread.run_sync(render, room_key, [state])

    async def diff(self, room_key: str, a: int, b: int) -> Diff:
        before = await self.show(room_key, a)
        after = await self.show(room_key, b)
        return await trio.to_thread.run_sync(
            lambda: diff_texts(
                before, after, before_label=f"version {a}", after_label=f"version {b}"
            )
        )

    async def blame(self, room_key: str) -> list[dict[str, Any]]:
        """Each block of today's record with who last changed it, when, in which version.

        See history_blame.py. Raises `NotFound`, `Unsupported` for a room of another type.
        """
        if not is_record(room_key):
            raise Unsupported("blame is available for records rooms only")
        versions = await self._all(room_key)
        newest = versions[-1]
        state = await self.state(room_key, newest.number)
        pending = await self.store.entries(room_key, after_seq=newest.last_seq)
        replay = await trio.to_thread.run_sync(Replay, state, pending)
        recorded = await self.store.block_changes(room_key)
        return await trio.to_thread.run_sync(replay.result, versions, recorded)

    # -- helpers ------------------------------------------------------------------------------

    async def _all(self, room_key: str) -> list[Version]:
        versions = await self.store.versions(room_key)
        if not versions:
            raise NotFound(f"no history for room {room_key!r}")
        return versions

    async def _entries_of(self, room_key: str, version: Version) -> list[Entry]:
        if version.first_seq > version.last_seq:
            return []  # a baseline: what the room held before history
        entries = await self.store.entries(room_key, after_seq=version.first_seq - 1)
        return [e for e in entries if e.seq <= version.last_seq]
