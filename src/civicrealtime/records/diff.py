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

`merge_blocks` is the three-way variant (the file watcher, a PUT with `If-Match`): only the
blocks the file changed are taken from it; a textblock both sides changed gets both
changes when they do not overlap (`merge_textblock`), and otherwise keeps the editors'
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

from . import schema
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
        steps = _align(current[i1:i2], target[j1:j2])
        consumed = [0]  # current children consumed before each step
        for kind, _i, _j in steps:
            consumed.append(consumed[-1] + (kind != "insert"))
        for (kind, i, j), before in reversed(list(zip(steps, consumed, strict=False))):
            if kind == "delete":
                del parent.children[i1 + i]
                stats.deleted_nodes += 1
            elif kind == "insert":
                _insert(parent, i1 + before, target[j1 + j])
                stats.inserted_nodes += 1
            else:
                # A changed child that keeps its kind is updated in place (a paragraph whose
                # text changed stays the same element, with the same items outside it).
                _update(parent, i1 + i, current[i1 + i], target[j1 + j], stats)


# A region larger than this (current x target children) is paired by position: the
# similarity alignment below is quadratic.
MAX_ALIGNED = 400
# Below this similarity, a changed child is replaced rather than edited into another one.
MIN_SIMILARITY = 0.3


def _text_of(unit: _Unit) -> str:
    if isinstance(unit, _Run):
        return "".join(piece.text for piece in unit.texts)
    if isinstance(unit, Node):
        return "".join(_text_of(c) if isinstance(c, Node) else c.text for c in unit.content)
    return ""


def _similarity(a: _Unit, b: _Unit) -> float:
    """How much of `a` survives as `b`; 0 when one cannot become the other in place."""
    if isinstance(a, Node) and isinstance(b, Node):
        if a.name != b.name:
            return 0.0
    elif not (isinstance(a, _Run) and isinstance(b, _Run)):
        return 0.0
    left, right = _text_of(a), _text_of(b)
    if not left and not right:
        return 1.0
    return difflib.SequenceMatcher(None, left, right, autojunk=False).quick_ratio()


def _align(current: Sequence[_Unit], target: Sequence[_Unit]) -> list[tuple[str, int, int]]:
    """Steps ("update", i, j), ("delete", i, -1), ("insert", -1, j) in document order.

    Each changed child is paired with the most similar target child of its kind (in
    order), so that a paragraph inserted before an edited one does not turn the edited
    one into the new one: the edited paragraph keeps its items, and its carets.
    """
    n, m = len(current), len(target)
    if n * m > MAX_ALIGNED:
        paired = min(n, m)
        return (
            [("update", k, k) for k in range(paired)]
            + [("delete", k, -1) for k in range(paired, n)]
            + [("insert", -1, k) for k in range(paired, m)]
        )
    similar = [[_similarity(a, b) for b in target] for a in current]
    best = [[0.0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            best[i][j] = max(best[i + 1][j], best[i][j + 1])
            if similar[i][j] >= MIN_SIMILARITY:
                best[i][j] = max(best[i][j], similar[i][j] + best[i + 1][j + 1])
    steps: list[tuple[str, int, int]] = []
    i = j = 0
    while i < n or j < m:
        if (
            i < n
            and j < m
            and similar[i][j] >= MIN_SIMILARITY
            and best[i][j] == similar[i][j] + best[i + 1][j + 1]
        ):
            steps.append(("update", i, j))
            i, j = i + 1, j + 1
        elif j < m and (i == n or best[i][j] == best[i][j + 1]):
            steps.append(("insert", -1, j))
            j += 1
        else:
            steps.append(("delete", i, -1))
            i += 1
    return steps


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


def _char_opcodes(old: Sequence[Any], new: Sequence[Any]) -> list[tuple[str, int, int, int, int]]:
    prefix = 0
    limit = min(len(old), len(new))
    while prefix < limit and old[prefix] == new[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and old[len(old) - 1 - suffix] == new[len(new) - 1 - suffix]:
        suffix += 1
    old_mid, new_mid = old[prefix : len(old) - suffix], new[prefix : len(new) - suffix]
    if len(old_mid) == 0 and len(new_mid) == 0:
        return []
    if min(len(old_mid), len(new_mid)) > MAX_CHAR_DIFF or len(old_mid) * len(new_mid) == 0:
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
    mapped: dict[int, int] = {}  # base block -> the same block in ours
    counterpart: dict[int, int] = {}  # base block -> the block the editors changed it into
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(
        None, base, ours, autojunk=False
    ).get_opcodes():
        for k in range(min(i2 - i1, j2 - j1)):
            (mapped if tag == "equal" else counterpart)[i1 + k] = j1 + k

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
            elif new is None:
                conflicts += 1  # deleted by the file, changed by the editors: theirs stays
            elif new in ours:
                pass  # the editors hold the file's version already (a published draft)
            elif i1 + k in counterpart and counterpart[i1 + k] not in replaced:
                # Both changed the same textblock: merged character by character when the
                # changes do not overlap; otherwise the editors' version stays.
                at = counterpart[i1 + k]
                both = merge_textblock(base[i1 + k], ours[at], new)
                if both is None:
                    conflicts += 1
                else:
                    replaced[at] = both
            else:
                conflicts += 1
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


_Item = tuple[str, tuple[Mark, ...]] | Node  # a character with its marks, or an inline node


def _items(block: Node) -> list[_Item]:
    items: list[_Item] = []
    for piece in block.content:
        if isinstance(piece, Text):
            items.extend((char, piece.marks) for char in piece.text)
        else:
            items.append(piece)
    return items


def _content(items: Sequence[_Item]) -> tuple[Inline, ...]:
    return inline(Text(item[0], item[1]) if isinstance(item, tuple) else item for item in items)


def merge_textblock(base: Node, ours: Node, theirs: Node) -> Node | None:
    """One textblock changed on both sides: both changes, or None where they overlap.

    Only for blocks that hold inline content (paragraph, heading, code block) and whose
    type and attributes the editors did not change. Insertions at the same place are both
    kept, the editors' first.
    """
    if not (
        base.name == ours.name == theirs.name
        and base.attrs == ours.attrs
        and all(not isinstance(c, Node) or c.name in schema.INLINE_ATOMS for c in base.content)
        and all(not isinstance(c, Node) or c.name in schema.INLINE_ATOMS for c in ours.content)
        and all(not isinstance(c, Node) or c.name in schema.INLINE_ATOMS for c in theirs.content)
    ):
        return None
    old, mine, other = _items(base), _items(ours), _items(theirs)
    regions = sorted(
        [(i1, i2, 0, mine[j1:j2]) for _t, i1, i2, j1, j2 in _char_opcodes(old, mine)]
        + [(i1, i2, 1, other[j1:j2]) for _t, i1, i2, j1, j2 in _char_opcodes(old, other)],
        key=lambda region: (region[0], region[1], region[2]),
    )
    merged: list[_Item] = []
    at = 0
    last: tuple[int, int] | None = None
    for i1, i2, _side, replacement in regions:
        if i1 < at or (last is not None and i1 == last[0] and (i2 > i1 or last[1] > last[0])):
            return None  # overlapping changes
        merged.extend(old[at:i1])
        merged.extend(replacement)
        at = max(at, i2)
        last = (i1, i2)
    merged.extend(old[at:])
    return Node(theirs.name, theirs.attrs, _content(merged))
