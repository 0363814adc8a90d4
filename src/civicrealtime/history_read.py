"""Reading a room's history: list, show, diff and blame, over any `HistoryStore`.

Used by the ops port (http/history.py) and by the CLI (history_cli.py), which reads the
store directly. A version is shown as Markdown for a record (records/to_markdown.py) and
as JSON for other room types. Blocks are what a clerk points at: a paragraph, a heading,
a list item, a table row (one Markdown line of a list or a table, else a run of lines
between blank lines).

Blame finds, for each block of today's document, the version in which it took its
present form (walking back from the newest version while the block is unchanged), then
the update inside that version after which it read as it does now; that update's author
(token `sub` and name, as recorded) and server time are the block's.
"""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import attrs
import trio
from pycrdt import Array, Doc, Map, Text, XmlFragment

from .persistence.history import Entry, HistoryStore, Version
from .protocol.updates import InvalidUpdate, apply_update
from .records.to_markdown import fragment_to_markdown

RECORDS_PREFIX = "records:"
RECORD_FRAGMENT = "default"  # the y-prosemirror fragment of a record (records/handler.py)
_ITEM = re.compile(r"^\s*([-*+]|\d+[.)])\s|^\s*\|")


class NotFound(Exception):
    """An unknown room (no history) or version; the message says which."""


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
        state = await self.store.version_state(room_key, number)
        if state is None:
            await self._all(room_key)  # an unknown room says so first
            raise NotFound(f"room {room_key!r} has no version {number}")
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
        """Each block of today's document with who last changed it, when, in which version."""
        versions = await self._all(room_key)
        newest = versions[-1]
        base = await self.state(room_key, newest.number)
        pending = await self.store.entries(room_key, after_seq=newest.last_seq)
        today = await trio.to_thread.run_sync(render, room_key, [base, *(e.data for e in pending)])
        blame = _Blame(room_key, blocks_of(today))
        if pending:
            await trio.to_thread.run_sync(blame.explain, base, pending, None)
        index = len(versions) - 1
        while blame.unresolved and index >= 0:
            version = versions[index]
            previous = versions[index - 1] if index > 0 else None
            before = None if previous is None else await self.state(room_key, previous.number)
            entries = await self._entries_of(room_key, version)
            await trio.to_thread.run_sync(blame.explain, before, entries, version)
            index -= 1
        return blame.result()

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


class _Blame:
    """Blocks of today's document and, as steps back in time explain them, their makers."""

    def __init__(self, room_key: str, blocks: list[str]) -> None:
        self.room_key = room_key
        self.blocks = blocks
        self.owners: list[dict[str, Any] | None] = [None] * len(blocks)
        self.unresolved = set(range(len(blocks)))

    def result(self) -> list[dict[str, Any]]:
        return [
            {"block": i, "text": block, **(self.owners[i] or _nobody())}
            for i, block in enumerate(self.blocks)
        ]

    def explain(self, before: bytes | None, entries: list[Entry], version: Version | None) -> None:
        """Attribute the unresolved blocks that these entries (on top of `before`) made.

        Blocks that already read so before the entries are older: left for the next step.
        """
        if version is not None and version.first_seq > version.last_seq:
            # A baseline: everything it holds came from before history.
            for i in self.unresolved:
                self.owners[i] = {
                    "user": "import",
                    "name": None,
                    "at": version.ended_ms,
                    "version": version.number,
                }
            self.unresolved.clear()
            return
        doc: Doc[Any] = Doc()
        if before is not None:
            apply_update(doc, before)
        present = Counter(blocks_of(render_doc(self.room_key, doc)))
        waiting = {i for i in self.unresolved if present[self.blocks[i]] == 0}
        # Walk the entries: the last one after which a waiting block appears made it.
        made_by: dict[int, Entry] = {}
        shown_before = dict.fromkeys(waiting, False)
        for entry in entries:
            try:
                apply_update(doc, entry.data)
            except InvalidUpdate:
                continue
            now = Counter(blocks_of(render_doc(self.room_key, doc)))
            for i in waiting:
                shown = now[self.blocks[i]] > 0
                if shown and not shown_before[i]:
                    made_by[i] = entry
                shown_before[i] = shown
        for i, maker in made_by.items():
            self.owners[i] = {
                "user": maker.origin.author,
                "name": maker.origin.name,
                "at": maker.at_ms,
                "version": version.number if version is not None else None,
                "seq": maker.seq,
            }
            self.unresolved.discard(i)


def _nobody() -> dict[str, Any]:
    return {"user": None, "name": None, "at": None, "version": None}
