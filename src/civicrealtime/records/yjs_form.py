"""The y-prosemirror form of a document tree inside a pycrdt `XmlFragment`, both ways.

What y-prosemirror (1.3.x, `src/plugins/sync-plugin.js`) writes and reads, which we match:
- every node but text is a `Y.XmlElement` named after its node type; its attributes are the
  node's attrs, except those whose value is null (they are not set at all); defaults are
  written like any other value, and numbers (`heading.level`, `ordered_list.order`) are
  JavaScript numbers;
- each maximal run of text nodes inside a parent is one `Y.XmlText`; inline atoms
  (`hard_break`, `image`, `civicRef`) are `Y.XmlElement`s between those texts;
- a mark is a formatting attribute on the text, keyed by the mark name (a mark type that does
  not exclude itself would get a `--<hash>` suffix; none of ours does), whose value is the
  mark's full attrs object: `{}` for `em`, `strong`, `code`, `{"href": .., "title": null}`
  for `link`;
- inline nodes carry no marks in Yjs: y-prosemirror does not store them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pycrdt import XmlElement, XmlFragment, XmlText

from . import schema
from .model import Attrs, Inline, Mark, Node, Text, inline, node, sort_marks
from .schema import AttrValue

_HASHED_MARK_SUFFIX_LENGTH = 10  # "--" + 8 characters of base64, as y-prosemirror appends


def _mark_attrs(found: Mark) -> dict[str, AttrValue]:
    return dict(found.attrs)


def _write_text(parent: XmlElement | XmlFragment, run: Sequence[Text]) -> None:
    ytext = parent.children.append(XmlText())
    # Insert the plain string first, then format each run, so that no run can inherit the
    # formatting to its left. pycrdt indexes text by UTF-8 bytes.
    ytext.insert(0, "".join(item.text for item in run))
    offset = 0
    for item in run:
        end = offset + len(item.text.encode("utf-8"))
        if item.marks:
            ytext.format(offset, end, {m.name: _mark_attrs(m) for m in item.marks})
        offset = end


def _write_children(parent: XmlElement | XmlFragment, content: Iterable[Inline]) -> None:
    run: list[Text] = []
    for item in content:
        if isinstance(item, Text):
            run.append(item)
            continue
        if run:
            _write_text(parent, run)
            run = []
        _write_node(parent, item)
    if run:
        _write_text(parent, run)


def _write_node(parent: XmlElement | XmlFragment, item: Node) -> None:
    element = parent.children.append(XmlElement(item.name))
    for key, value in item.attrs:
        if value is not None:
            element.attributes[key] = value
    _write_children(element, item.content)


def write_fragment(fragment: XmlFragment, blocks: Sequence[Node]) -> None:
    """Append `blocks` to `fragment` (integrated in a doc) in one transaction."""
    with fragment.doc.transaction():
        for block in blocks:
            _write_node(fragment, block)


# -- reading ----------------------------------------------------------------------------


def _attr_value(key: str, value: Any) -> AttrValue:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and float(value).is_integer():
        # Yjs numbers are floats once read by pycrdt; the schema's numbers are integers.
        return int(value)
    return str(value)


def _filled(spec: Attrs, given: Mapping[str, Any]) -> dict[str, AttrValue]:
    return {key: _attr_value(key, given.get(key, default)) for key, default in spec}


def mark_name(attribute: str) -> str:
    """Strip y-prosemirror's `--<hash>` suffix (used for marks that may overlap)."""
    if len(attribute) > _HASHED_MARK_SUFFIX_LENGTH and attribute[-10:-8] == "--":
        return attribute[:-_HASHED_MARK_SUFFIX_LENGTH]
    return attribute


def _marks(formatting: Mapping[str, Any] | None) -> tuple[Mark, ...]:
    if not formatting:
        return ()
    found: list[Mark] = []
    for attribute, value in formatting.items():
        if value is None:
            continue
        name = mark_name(attribute)
        given = value if isinstance(value, Mapping) else {}
        spec = schema.MARK_ATTRS.get(name)
        if spec is None:
            attrs = tuple(sorted((k, _attr_value(k, v)) for k, v in given.items()))
        else:
            attrs = tuple(_filled(spec, given).items())
        found.append(Mark(name, attrs))
    return sort_marks(found)


def _read_children(parent: XmlElement | XmlFragment) -> tuple[Inline, ...]:
    out: list[Inline] = []
    for child in parent.children:
        if isinstance(child, XmlText):
            for chunk, formatting in child.diff():
                if isinstance(chunk, str):
                    out.append(Text(chunk, _marks(formatting)))
        elif isinstance(child, XmlElement):
            out.append(_read_node(child))
    return inline(out)


def _read_node(element: XmlElement) -> Node:
    name = element.tag or ""
    # pycrdt's attribute view iterates as (name, value) pairs.
    pairs: Iterable[tuple[str, Any]] = element.attributes.__iter__()
    given = dict(pairs)
    given.pop("ychange", None)
    spec = schema.NODE_ATTRS.get(name)
    content = _read_children(element)
    if spec is not None:
        return node(name, content, **_filled(spec, given))
    if name in schema.KNOWN_NODES:
        return node(name, content)
    return Node(name, tuple(sorted((k, _attr_value(k, v)) for k, v in given.items())), content)


def read_fragment(fragment: XmlFragment) -> tuple[Node, ...]:
    """The document tree held by a y-prosemirror fragment."""
    with fragment.doc.transaction():
        blocks: list[Node] = []
        for item in _read_children(fragment):
            # Text directly under the root is not y-prosemirror's form; keep it as a paragraph.
            blocks.append(item if isinstance(item, Node) else node(schema.PARAGRAPH, [item]))
        return tuple(blocks)
