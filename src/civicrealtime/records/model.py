"""A record's document as a plain, comparable tree: the middle of every conversion.

Markdown is parsed into this tree and the tree is written into a `XmlFragment`; a fragment
is read back into this tree and the tree is serialised to Markdown. Keeping the tree free of
pycrdt makes both directions testable, and equality of two trees is equality of documents.

Canonical form (what `node`/`text` build and every reader produces):
- a node's attributes are exactly its schema attributes, in schema order, defaults filled in;
- a text's marks are sorted by schema rank; adjacent texts with equal marks are merged and
  empty texts are dropped (`inline`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

from . import schema
from .schema import AttrValue

Attrs = tuple[tuple[str, AttrValue], ...]


def _fill(spec: Attrs, given: Mapping[str, AttrValue]) -> Attrs:
    return tuple((key, given.get(key, default)) for key, default in spec)


@attrs.frozen
class Mark:
    name: str
    attrs: Attrs = ()

    def attr(self, key: str) -> AttrValue:
        return dict(self.attrs).get(key)


@attrs.frozen
class Text:
    text: str
    marks: tuple[Mark, ...] = ()

    def has(self, name: str) -> bool:
        return any(mark.name == name for mark in self.marks)


@attrs.frozen
class Node:
    name: str
    attrs: Attrs = ()
    content: tuple[Node | Text, ...] = ()

    def attr(self, key: str) -> AttrValue:
        return dict(self.attrs).get(key)

    def with_content(self, content: Iterable[Node | Text]) -> Node:
        return Node(self.name, self.attrs, tuple(content))


Inline = Node | Text


def mark(name: str, **given: AttrValue) -> Mark:
    return Mark(name, _fill(schema.MARK_ATTRS.get(name, ()), given))


def sort_marks(marks: Iterable[Mark]) -> tuple[Mark, ...]:
    unique = {(m.name, m.attrs): m for m in marks}
    return tuple(sorted(unique.values(), key=lambda m: (schema.MARK_RANK.get(m.name, 99), m)))


def text(value: str, *marks: Mark) -> Text:
    return Text(value, sort_marks(marks))


def node(name: str, content: Iterable[Node | Text] = (), **given: AttrValue) -> Node:
    spec = schema.NODE_ATTRS.get(name)
    # Unknown node types (only ever read from a fragment) keep what they were given.
    filled = _fill(spec, given) if spec is not None else tuple(sorted(given.items()))
    return Node(name, filled, tuple(content))


def inline(items: Iterable[Inline]) -> tuple[Inline, ...]:
    """Merge adjacent texts with the same marks and drop empty ones."""
    out: list[Inline] = []
    for item in items:
        if isinstance(item, Text):
            if not item.text:
                continue
            last = out[-1] if out else None
            if isinstance(last, Text) and last.marks == item.marks:
                out[-1] = Text(last.text + item.text, item.marks)
                continue
        out.append(item)
    return tuple(out)


def count_nodes(nodes: Iterable[Inline]) -> int:
    """Elements a tree becomes in Yjs: every node (texts are not elements)."""
    total = 0
    for item in nodes:
        if isinstance(item, Node):
            total += 1 + count_nodes(item.content)
    return total
