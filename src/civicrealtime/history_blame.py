"""Blame of a record: the last author and time of each block, from the Yjs changes themselves.

A block is a top-level node of the record (paragraph, heading, code block, ...) or, inside a
list or a table, a list item or a table row. Blame replays attributed updates on top of a
version's state with a deep observer on the y-prosemirror fragment: every change event
names the branch it changed, the block holding that branch is found from the event's path,
and the entry being applied (its author, as recorded with the update, and its server time)
becomes the block's last change. Blocks are tracked by their Yjs branch, so inserting or
removing other blocks does not move ownership around.

When a version closes, the recorder replays its entries this way and keeps, for each
block they changed, the digest of the block's text with the entry's author and time.
Blame then replays only the updates after the newest version, and finds the other blocks
of today's record in the newest version that recorded a block reading the same; blocks
unchanged since a baseline are attributed to "import".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pycrdt import Doc, XmlElement, XmlFragment, XmlText

from .persistence.history import BlockChange, Entry, Version, block_digest
from .protocol.updates import InvalidUpdate, apply_update
from .records import schema
from .records.markdown_writer import write_markdown
from .records.yjs_form import _read_node

FRAGMENT = "default"
CONTAINERS = frozenset({schema.BULLET_LIST, schema.ORDERED_LIST, schema.TABLE})


def _blocks(fragment: XmlFragment) -> list[tuple[XmlElement, XmlElement | None]]:
    """Today's blocks in order: (block, its list or table when it is an item or a row)."""
    found: list[tuple[XmlElement, XmlElement | None]] = []
    for child in fragment.children:
        if not isinstance(child, XmlElement):
            continue
        if child.tag in CONTAINERS:
            found.extend((item, child) for item in child.children if isinstance(item, XmlElement))
        else:
            found.append((child, None))
    return found


def _block_at(fragment: XmlFragment, path: Sequence[int | str]) -> XmlElement | None:
    """The block holding the branch at `path` (None: the fragment itself)."""
    if not path or not isinstance(path[0], int):
        return None
    top = fragment.children[path[0]]
    if not isinstance(top, XmlElement):
        return None
    if top.tag in CONTAINERS and len(path) > 1 and isinstance(path[1], int):
        inner = top.children[path[1]]
        return inner if isinstance(inner, XmlElement) else top
    return top


def _inserted(delta: Any) -> list[XmlElement]:
    out: list[XmlElement] = []
    for part in delta or ():
        if isinstance(part, dict):
            for item in part.get("insert", ()) or ():
                if isinstance(item, XmlElement):
                    out.append(item)
    return out


def _text(block: XmlElement, container: XmlElement | None) -> str:
    if container is not None and container.tag == schema.TABLE:
        cells = [
            "".join(str(t) for t in _texts(cell))
            for cell in block.children
            if isinstance(cell, XmlElement)
        ]
        return "| " + " | ".join(cells) + " |"
    node = _read_node(block)
    if container is not None:
        node = _read_node(container).with_content([node])
    return write_markdown([node]).strip()


def _texts(element: XmlElement) -> list[str]:
    out: list[str] = []
    for child in element.children:
        if isinstance(child, XmlText):
            out.append(str(child))
        elif isinstance(child, XmlElement):
            out.extend(_texts(child))
    return out


class Replay:
    """Today's blocks, and who changed each last, from one replay of a window of entries."""

    def __init__(self, base: bytes | None, entries: Sequence[Entry]) -> None:
        self.doc: Doc[Any] = Doc()
        if base is not None:
            apply_update(self.doc, base)
        fragment = self.doc.get(FRAGMENT, type=XmlFragment)
        self.owner: dict[XmlElement, Entry] = {}
        current: list[Entry] = []

        def observe(events: list[Any]) -> None:
            entry = current[0]
            for event in events:
                block = _block_at(fragment, list(event.path))
                if block is not None:
                    self.owner[block] = entry
                    if block.tag in CONTAINERS:
                        for item in _inserted(event.delta):
                            self.owner[item] = entry
                    continue
                for item in _inserted(event.delta):
                    self.owner[item] = entry
                    if item.tag in CONTAINERS:
                        for inner in item.children:
                            if isinstance(inner, XmlElement):
                                self.owner[inner] = entry

        subscription = fragment.observe_deep(observe)
        try:
            for entry in entries:
                current[:] = [entry]
                try:
                    apply_update(self.doc, entry.data)
                except InvalidUpdate:
                    continue  # the room refused it as well; it changed nothing
        finally:
            fragment.unobserve(subscription)
        self.blocks = _blocks(fragment)

    def changed(self) -> list[BlockChange]:
        """The blocks these entries left changed, as a version records them."""
        changes: list[BlockChange] = []
        for block, container in self.blocks:
            entry = self.owner.get(block)
            if entry is not None:
                changes.append(
                    BlockChange(
                        block_digest(_text(block, container)),
                        entry.seq,
                        entry.origin.author,
                        entry.origin.name,
                        entry.at_ms,
                    )
                )
        return changes

    def result(
        self, versions: Sequence[Version], recorded: dict[int, list[BlockChange]]
    ) -> list[dict[str, Any]]:
        """Today's blocks with their last change: from the replayed entries, else from the
        newest version that recorded a block reading the same."""
        latest: dict[str, tuple[BlockChange, int]] = {}
        for version in versions:  # oldest first: newer versions overwrite
            for change in recorded.get(version.number, ()):
                latest[change.digest] = (change, version.number)
        by_seq = [(v.first_seq, v.last_seq, v.number) for v in versions]
        baseline = versions[0] if versions and versions[0].reason == "baseline" else None
        rows: list[dict[str, Any]] = []
        for index, (block, container) in enumerate(self.blocks):
            text = _text(block, container)
            row: dict[str, Any] = {"block": index, "kind": block.tag, "text": text}
            entry = self.owner.get(block)
            found = latest.get(block_digest(text))
            if entry is not None:
                number = next((n for first, last, n in by_seq if first <= entry.seq <= last), None)
                row |= {
                    "user": entry.origin.author,
                    "name": entry.origin.name,
                    "at": entry.at_ms,
                    "version": number,
                    "seq": entry.seq,
                }
            elif found is not None:
                change, number = found
                row |= {
                    "user": change.author,
                    "name": change.name,
                    "at": change.at_ms,
                    "version": number,
                    "seq": change.seq,
                }
            elif baseline is not None:
                # Unchanged since before history: what the room held when history began.
                row |= {"user": "import", "name": None, "at": baseline.ended_ms, "version": 1}
            else:
                row |= {"user": None, "name": None, "at": None, "version": None}
            rows.append(row)
        return rows


def changed_blocks(room_id: str, base: bytes | None, entries: list[Entry]) -> list[BlockChange]:
    """What a version of a record changed, block by block (HistoryRecorder's `analyse`)."""
    if not room_id.startswith("records:"):
        return []
    return Replay(base, entries).changed()
