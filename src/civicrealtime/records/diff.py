"""Bring a live y-prosemirror fragment to a target document with the smallest change.

A server-side edit (the ops port's PUT, the published file changing on disk) must not
replace the document wholesale: that deletes every Yjs item, so every editor's caret jumps
and concurrent typing lands in deleted text. Instead, like y-prosemirror's own
`updateYFragment`, the change is computed level by level:

- the children of the fragment (then of each changed element) are compared as a sequence:
  equal children are left alone, removed ones deleted, new ones inserted, and a changed one
  whose node type is unchanged is updated in place (attributes, then its own children);
- inside a changed run of text, only the characters that differ are deleted and inserted
  (common prefix and suffix first, then a character diff of the middle), and marks are
  reformatted only where they differ.

Items outside the changed characters survive, so relative positions (carets, selections)
anchored there keep their place, and text typed concurrently next to them is kept.

`merge_blocks` is the three-way variant the file watcher uses: only the blocks the file
changed are taken from it, and a block the editors changed as well keeps the editors'
version (the conflict is reported, nothing typed is lost).

Everything here runs in the room's task (the only code that touches its document), inside
one transaction opened by the caller, so the edit reaches everyone as one update.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import Any

import attrs
from pycrdt import XmlElement, XmlFragment, XmlText

from .model import Inline, Mark, Node, Text, inline
from .yjs_form import _marks, _read_node, _write_children

# Above this many characters on both sides, a changed middle is replaced as a whole: the
# character diff is quadratic in the worst case and must not stall the room.
MAX_CHAR_DIFF = 4000


@attrs.frozen
class _Run:
    """A maximal run of text: one `Y.XmlText` in y-prosemirror's form."""

    texts: tuple[Text, ...]


@attrs.frozen(eq=False)
class _Opaque:
    """A child we do not read (an embed in a text): never equal, replaced if targeted."""


_Unit = Node | _Run | _Opaque


@attrs.define
class DiffStats:
    """What one edit changed, for the log and the tests."""

    inserted_nodes: int = 0
    deleted_nodes: int = 0
    updated_nodes: int = 0
    inserted_chars: int = 0
    deleted_chars: int = 0

    @property
    def changed(self) -> bool:
        return bool(
            self.inserted_nodes
            or self.deleted_nodes
            or self.updated_nodes
            or self.inserted_chars
            or self.deleted_chars
        )


def _units_of(content: Iterable[Inline]) -> list[_Unit]:
    units: list[_Unit] = []
    run: list[Text] = []
    for item in content:
        if isinstance(item, Text):
            run.append(item)
            continue
        if run:
            units.append(_Run(inline(run)))  # type: ignore[arg-type]
            run = []
        units.append(item)
    if run:
        units.append(_Run(inline(run)))  # type: ignore[arg-type]
    return units


def _read_text(child: XmlText) -> _Run | _Opaque:
    texts: list[Text] = []
    for chunk, formatting in child.diff():
        if not isinstance(chunk, str):
            return _Opaque()
        texts.append(Text(chunk, _marks(formatting)))
    return _Run(inline(texts))  # type: ignore[arg-type]


def _live_units(parent: XmlFragment | XmlElement) -> list[_Unit]:
    units: list[_Unit] = []
    for child in parent.children:
        if isinstance(child, XmlText):
            units.append(_read_text(child))
        elif isinstance(child, XmlElement):
            units.append(_read_node(child))
        else:
            units.append(_Opaque())
    return units


def apply_blocks(fragment: XmlFragment, target: Sequence[Node]) -> DiffStats:
    """Change `fragment` (in the caller's transaction) so that it holds `target`."""
    stats = DiffStats()
    _sync_children(fragment, _live_units(fragment), _units_of(target), stats)
    return stats


def _sync_children(
    parent: XmlFragment | XmlElement,
    current: Sequence[_Unit],
    target: Sequence[_Unit],
    stats: DiffStats,
) -> None:
    matcher = difflib.SequenceMatcher(None, current, target, autojunk=False)
    # From the end backwards: an operation never moves the indices of those before it.
    for tag, i1, i2, j1, j2 in reversed(matcher.get_opcodes()):
        if tag == "equal":
            continue
        paired = min(i2 - i1, j2 - j1)
        if i2 - i1 > paired:
            del parent.children[i1 + paired : i2]
            stats.deleted_nodes += i2 - i1 - paired
        for offset, unit in enumerate(target[j1 + paired : j2]):
            _insert(parent, i1 + paired + offset, unit)
            stats.inserted_nodes += 1
        # Changed children that keep their kind are updated in place (a paragraph whose
        # text changed stays the same element, with the same items outside the change).
        for k in reversed(range(paired)):
            _update(parent, i1 + k, current[i1 + k], target[j1 + k], stats)


def _insert(parent: XmlFragment | XmlElement, index: int, unit: _Unit) -> None:
    if isinstance(unit, Node):
        element = parent.children.insert(index, XmlElement(unit.name))
        for key, value in unit.attrs:
            if value is not None:
                element.attributes[key] = value
        _write_children(element, unit.content)
    elif isinstance(unit, _Run):
        ytext = parent.children.insert(index, XmlText())
        offset = 0
        for piece in unit.texts:
            ytext.insert(offset, piece.text, _mark_attributes(piece.marks, ()))
            offset += len(piece.text.encode("utf-8"))


def _update(
    parent: XmlFragment | XmlElement,
    index: int,
    current: _Unit,
    target: _Unit,
    stats: DiffStats,
) -> None:
    child = parent.children[index]
    if isinstance(current, Node) and isinstance(target, Node) and current.name == target.name:
        assert isinstance(child, XmlElement)
        stats.updated_nodes += 1
        for key, value in target.attrs:
            if current.attr(key) != value:
                if value is None:
                    del child.attributes[key]
                else:
                    child.attributes[key] = value
        _sync_children(child, _units_of(current.content), _units_of(target.content), stats)
        return
    if isinstance(current, _Run) and isinstance(target, _Run):
        assert isinstance(child, XmlText)
        _update_text(child, current.texts, target.texts, stats)
        return
    del parent.children[index]
    _insert(parent, index, target)
    stats.deleted_nodes += 1
    stats.inserted_nodes += 1


# -- text ---------------------------------------------------------------------------------


def _chars_with_marks(texts: Sequence[Text]) -> tuple[str, list[tuple[Mark, ...]]]:
    marks: list[tuple[Mark, ...]] = []
    for piece in texts:
        marks.extend([piece.marks] * len(piece.text))
    return "".join(piece.text for piece in texts), marks


def _mark_attributes(
    wanted: tuple[Mark, ...], present: Iterable[str]
) -> dict[str, dict[str, Any] | None]:
    """Formatting attributes that give exactly `wanted` where `present` attributes are."""
    attributes: dict[str, dict[str, Any] | None] = dict.fromkeys(present)
    for found in wanted:
        attributes[found.name] = dict(found.attrs)
    return attributes


def _char_opcodes(old: str, new: str) -> list[tuple[str, int, int, int, int]]:
    prefix = 0
    limit = min(len(old), len(new))
    while prefix < limit and old[prefix] == new[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and old[len(old) - 1 - suffix] == new[len(new) - 1 - suffix]:
        suffix += 1
    old_mid, new_mid = old[prefix : len(old) - suffix], new[prefix : len(new) - suffix]
    if not old_mid and not new_mid:
        return []
    if min(len(old_mid), len(new_mid)) > MAX_CHAR_DIFF or not old_mid or not new_mid:
        return [("replace", prefix, len(old) - suffix, prefix, len(new) - suffix)]
    matcher = difflib.SequenceMatcher(None, old_mid, new_mid, autojunk=False)
    return [
        (tag, i1 + prefix, i2 + prefix, j1 + prefix, j2 + prefix)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes()
        if tag != "equal"
    ]


def _update_text(
    ytext: XmlText, current: Sequence[Text], target: Sequence[Text], stats: DiffStats
) -> None:
    old, _ = _chars_with_marks(current)
    new, new_marks = _chars_with_marks(target)
    # pycrdt indexes text by UTF-8 bytes; the characters before an operation are unchanged
    # by the operations after it (applied first, from the end), so offsets come from `old`.
    for _tag, i1, i2, j1, j2 in reversed(_char_opcodes(old, new)):
        at = len(old[:i1].encode("utf-8"))
        if i2 > i1:
            del ytext[at : at + len(old[i1:i2].encode("utf-8"))]
            stats.deleted_chars += i2 - i1
        if j2 > j1:
            ytext.insert(at, new[j1:j2], _mark_attributes(new_marks[j1], ()))
            stats.inserted_chars += j2 - j1
    _reformat(ytext, new, new_marks)


def _reformat(ytext: XmlText, text: str, wanted: Sequence[tuple[Mark, ...]]) -> None:
    """Set the marks wherever they differ from `wanted` (inserted text inherits, too)."""
    live: list[tuple[tuple[Mark, ...], tuple[str, ...]]] = []
    for chunk, formatting in ytext.diff():
        present = tuple(key for key, value in (formatting or {}).items() if value is not None)
        live.extend([(_marks(formatting), present)] * len(chunk))
    if len(live) != len(text):
        return  # not the text we wrote: leave it (cannot happen within one transaction)
    start = 0
    offset = 0
    while start < len(text):
        end = start + 1
        while end < len(text) and live[end] == live[start] and wanted[end] == wanted[start]:
            end += 1
        size = len(text[start:end].encode("utf-8"))
        if live[start][0] != wanted[start]:
            ytext.format(offset, offset + size, _mark_attributes(wanted[start], live[start][1]))
        offset += size
        start = end


# -- three-way ----------------------------------------------------------------------------


@attrs.frozen
class Merge:
    blocks: tuple[Node, ...]
    conflicts: int  # regions changed by the file and by the editors: the editors' kept


def merge_blocks(base: Sequence[Node], ours: Sequence[Node], theirs: Sequence[Node]) -> Merge:
    """`ours` with the block changes that turned `base` into `theirs`.

    Block by block: a block the file changed (or deleted) is taken from `theirs` when the
    editors left it as in `base`; when they changed or deleted it too, their version stays
    (a conflict), so no typing is lost. Blocks the file added go after the nearest block
    before them that the editors kept.
    """
    base, ours, theirs = tuple(base), tuple(ours), tuple(theirs)
    if base == theirs:
        return Merge(ours, 0)
    mapped: dict[int, int] = {}
    for block in difflib.SequenceMatcher(None, base, ours, autojunk=False).get_matching_blocks():
        for k in range(block.size):
            mapped[block.a + k] = block.b + k

    def after_kept(i: int) -> int:
        """Where, in `ours`, goes what the file put before `base[i]`."""
        for k in range(i - 1, -1, -1):
            if k in mapped:
                return mapped[k] + 1
        return 0

    replaced: dict[int, Node | None] = {}  # ours index -> its new block (None: deleted)
    inserted: dict[int, list[Node]] = {}  # ours index -> blocks that go before it
    conflicts = 0
    opcodes = difflib.SequenceMatcher(None, base, theirs, autojunk=False).get_opcodes()
    for tag, i1, i2, j1, j2 in opcodes:
        if tag == "equal":
            continue
        paired = min(i2 - i1, j2 - j1)
        for k in range(i2 - i1):
            new = theirs[j1 + k] if k < paired else None
            if i1 + k in mapped:
                replaced[mapped[i1 + k]] = new
            elif new is None or new not in ours:
                conflicts += 1  # the editors changed this block as well: theirs stays
        if j2 - j1 > paired:
            inserted.setdefault(after_kept(i1 + paired), []).extend(theirs[j1 + paired : j2])
    result: list[Node] = []
    for index in range(len(ours) + 1):
        result.extend(inserted.get(index, ()))
        if index < len(ours):
            new_block = replaced.get(index, ours[index])
            if new_block is not None:
                result.append(new_block)
    return Merge(tuple(result), conflicts)
