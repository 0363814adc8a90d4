"""Markdown body -> document tree, with a report of what the editor's schema cannot hold.

Parsing is markdown-it-py's CommonMark preset plus GFM tables, so a record means here what
it means to any CommonMark renderer; only the mapping onto the editor's node types is ours.

Mapping decisions (each one keeps the text; see `to_yjs` for the unsupported-content policy):
- A soft line break inside a paragraph becomes a space: ProseMirror paragraphs hold no
  newlines, and the editor rewraps anyway.
- A paragraph or heading never starts or ends with the source's indentation or trailing
  spaces (CommonMark strips them); entities and backslash escapes are decoded.
- `list_item` must start with a paragraph (`paragraph block*`): an item that starts with
  another block, or is empty, gets an empty paragraph first. An empty blockquote or table
  cell gets an empty paragraph (`block+`).
- A civic-ref comment inside a paragraph is an inline `civicRef`. At the start of a line it
  is an HTML block: that line becomes a paragraph of its own (the civicRef plus whatever
  follows it on the line). When that line ends with a hard-break backslash and a paragraph
  follows on the next line, they are one paragraph joined by a `hard_break` (that is how
  the serialiser writes a paragraph that starts with a civicRef and has line breaks).
- A hard break in a (setext) heading becomes a space: ATX headings are one line.
- Link reference definitions are resolved into the links that use them.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import Any

import attrs
from markdown_it import MarkdownIt
from markdown_it.token import Token

from . import schema
from .model import Inline, Mark, Node, inline, mark, node, sort_marks, text

EXCERPT_CHARS = 80

# One civic reference, as the editor writes it: <!--civic-ref type="record" id=".." label=".."-->
CIVIC_REF = re.compile(r'<!--civic-ref((?:\s+[A-Za-z][\w-]*="[^"]*")*)\s*-->')
_CIVIC_ATTR = re.compile(r'([A-Za-z][\w-]*)="([^"]*)"')
_FOOTNOTE = re.compile(r"\[\^[^\]\s]+\]")
_STRIKETHROUGH = re.compile(r"~~[^~\s](?:[^~]*[^~\s])?~~")
_ALIGN = re.compile(r"text-align:\s*(left|center|right)")


@attrs.frozen
class Unsupported:
    """Something in the Markdown that the editor's schema cannot express as such."""

    line: int  # 1-based, counted from the first line of the body
    kind: str
    excerpt: str


def new_parser() -> MarkdownIt:
    """CommonMark with GFM tables: what records are written in (no strikethrough, no linkify)."""
    return MarkdownIt("commonmark").enable("table")


_PARSER = new_parser()


def parse_civic_ref(comment: str) -> dict[str, str] | None:
    """`{"refType": .., "id": .., "label"?: ..}` for a whole civic-ref comment, else None."""
    found = CIVIC_REF.fullmatch(comment.strip())
    if found is None:
        return None
    raw = {key: html.unescape(value) for key, value in _CIVIC_ATTR.findall(found.group(1))}
    if not raw.get("id"):
        return None
    ref = {"refType": raw.get("type") or "record", "id": raw["id"]}
    if "label" in raw:
        ref["label"] = raw["label"]
    return ref


def _excerpt(value: str) -> str:
    flat = " ".join(value.split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[: EXCERPT_CHARS - 1] + "…"


def _closing(tokens: Sequence[Token], index: int) -> int:
    """Index of the token closing the one opened at `index`."""
    level = tokens[index].level
    for at in range(index + 1, len(tokens)):
        if tokens[at].nesting == -1 and tokens[at].level == level:
            return at
    raise ValueError(f"unclosed {tokens[index].type}")  # markdown-it always closes


def _plain_text(children: Sequence[Token]) -> str:
    """Image alt text: the text of its parsed description, as CommonMark renderers do."""
    out: list[str] = []
    for child in children:
        if child.type in ("text", "code_inline", "html_inline"):
            out.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            out.append("\n")
        elif child.children:
            out.append(_plain_text(child.children))
    return "".join(out)


def _civic_ref_line(tok: Token) -> str | None:
    """The line of an HTML block that is one line starting with a civic ref, else None."""
    if tok.type != "html_block":
        return None
    line = tok.content.strip(" \t\n")
    if "\n" in line or CIVIC_REF.match(line) is None:
        return None
    return line


def _ends_with_hard_break(line: str) -> bool:
    stripped = line.rstrip(" \t")
    backslashes = len(stripped) - len(stripped.rstrip("\\"))
    return backslashes % 2 == 1


class _Reader:
    def __init__(self, body: str) -> None:
        self.lines = body.splitlines()
        self.env: dict[str, Any] = {}
        self.unsupported: list[Unsupported] = []

    # -- reporting ----------------------------------------------------------------------

    def report(self, line: int, kind: str, excerpt: str) -> None:
        self.unsupported.append(Unsupported(line + 1, kind, _excerpt(excerpt)))

    def line_of(self, needle: str, span: list[int] | None) -> int:
        """The 0-based line where `needle` starts, searched within a block's line span."""
        if span is None:
            return 0
        first = needle.strip().split("\n", 1)[0][:40]
        for at in range(span[0], min(span[1], len(self.lines))):
            if first and first in self.lines[at]:
                return at
        return span[0]

    # -- blocks -------------------------------------------------------------------------

    def document(self, body: str) -> tuple[Node, ...]:
        tokens = _PARSER.parse(body, self.env)
        blocks = self.blocks(tokens, 0, len(tokens))
        self.report_references()
        return tuple(blocks)

    def blocks(self, tokens: Sequence[Token], start: int, stop: int) -> list[Node]:
        out: list[Node] = []
        at = start
        while at < stop:
            tok = tokens[at]
            if tok.nesting == 1:
                end = _closing(tokens, at)
                out.append(self.container(tokens, at, end))
                at = end + 1
            elif tok.type == "html_block":
                made, at = self.html_block(tokens, at, stop)
                out.extend(made)
            else:
                made_one = self.leaf(tok)
                if made_one is not None:
                    out.append(made_one)
                at += 1
        return out

    def container(self, tokens: Sequence[Token], start: int, end: int) -> Node:
        tok = tokens[start]
        kind = tok.type.removesuffix("_open")
        if kind == "paragraph":
            return node(schema.PARAGRAPH, self.inline_token(tokens[start + 1]))
        if kind == "heading":
            # Only a setext heading can hold a hard break, and an ATX heading (what we
            # write) cannot: it is a space from the start, so the editor shows what is saved.
            content = inline(
                text(" ") if isinstance(c, Node) and c.name == schema.HARD_BREAK else c
                for c in self.inline_token(tokens[start + 1])
            )
            return node(schema.HEADING, content, level=int(tok.tag[1:]))
        if kind == "table":
            return node(schema.TABLE, self.table_rows(tokens, start + 1, end))
        children = self.blocks(tokens, start + 1, end)
        if kind == "blockquote":
            return node(schema.BLOCKQUOTE, children or [node(schema.PARAGRAPH)])
        if kind == "bullet_list":
            return node(schema.BULLET_LIST, children)
        if kind == "ordered_list":
            order = tok.attrGet("start")
            return node(schema.ORDERED_LIST, children, order=int(order) if order is not None else 1)
        if kind == "list_item":
            if not children or children[0].name != schema.PARAGRAPH:
                children.insert(0, node(schema.PARAGRAPH))
            return node(schema.LIST_ITEM, children)
        # Not produced by this parser configuration; keep the content rather than lose it.
        self.report(tok.map[0] if tok.map else 0, tok.type, tok.markup or tok.type)
        return node(schema.BLOCKQUOTE, children or [node(schema.PARAGRAPH)])

    def table_rows(self, tokens: Sequence[Token], start: int, stop: int) -> list[Node]:
        rows: list[Node] = []
        cells: list[Node] = []
        at = start
        while at < stop:
            tok = tokens[at]
            if tok.type == "tr_open":
                cells = []
            elif tok.type == "tr_close":
                rows.append(node(schema.TABLE_ROW, cells))
            elif tok.type in ("th_open", "td_open"):
                style = tok.attrGet("style")
                found = _ALIGN.search(style) if isinstance(style, str) else None
                name = schema.TABLE_HEADER if tok.type == "th_open" else schema.TABLE_CELL
                paragraph = node(schema.PARAGRAPH, self.inline_token(tokens[at + 1]))
                cells.append(node(name, [paragraph], align=found.group(1) if found else None))
                at = _closing(tokens, at)
            at += 1
        return rows

    def leaf(self, tok: Token) -> Node | None:
        if tok.type == "hr":
            return node(schema.HORIZONTAL_RULE)
        if tok.type in ("fence", "code_block"):
            params = tok.info.strip() if tok.type == "fence" else ""
            code = tok.content.removesuffix("\n")
            return node(schema.CODE_BLOCK, [text(code)] if code else [], params=params)
        self.report(tok.map[0] if tok.map else 0, tok.type, tok.content or tok.type)
        return node(schema.PARAGRAPH, [text(tok.content)]) if tok.content else None

    def html_block(self, tokens: Sequence[Token], at: int, stop: int) -> tuple[list[Node], int]:
        tok = tokens[at]
        start_line = tok.map[0] if tok.map else 0
        first = _civic_ref_line(tok)
        if first is None:
            # Raw HTML: kept verbatim as an `html` code block, visible and editable.
            content = tok.content.rstrip("\n")
            self.report(start_line, "html_block", content)
            return [node(schema.CODE_BLOCK, [text(content)], params="html")], at + 1
        source = first
        end_line = tok.map[1] if tok.map else 0
        after = at + 1
        # A hard break at the end of the line continues the paragraph on the next line,
        # whether CommonMark saw that line as a paragraph or as another civic-ref line.
        while _ends_with_hard_break(source) and after < stop:
            following = tokens[after]
            if following.map is None or following.map[0] != end_line:
                break
            if following.type == "paragraph_open":
                source += "\n" + tokens[after + 1].content
                after = _closing(tokens, after) + 1
            else:
                line = _civic_ref_line(following)
                if line is None:
                    break
                source += "\n" + line
                after += 1
            end_line = following.map[1]
        inline_tokens = _PARSER.parseInline(source, self.env)
        children = (inline_tokens[0].children or []) if inline_tokens else []
        span = [start_line, end_line]
        return [node(schema.PARAGRAPH, self.inline_children(children, span))], after

    # -- inline -------------------------------------------------------------------------

    def inline_token(self, tok: Token) -> tuple[Inline, ...]:
        return self.inline_children(tok.children or [], tok.map)

    def inline_children(
        self, children: Sequence[Token], span: list[int] | None
    ) -> tuple[Inline, ...]:
        out: list[Inline] = []
        marks: list[Mark] = []
        for child in children:
            kind = child.type
            if kind == "text":
                self.scan_text(child.content, span)
                out.append(text(child.content, *marks))
            elif kind == "softbreak":
                out.append(text(" ", *marks))
            elif kind == "hardbreak":
                out.append(node(schema.HARD_BREAK))
            elif kind == "code_inline":
                out.append(text(child.content, *marks, mark(schema.CODE)))
            elif kind == "em_open":
                marks.append(mark(schema.EM))
            elif kind == "strong_open":
                marks.append(mark(schema.STRONG))
            elif kind == "link_open":
                href = str(child.attrGet("href") or "")
                title = child.attrGet("title")
                marks.append(mark(schema.LINK, href=href, title=str(title) if title else None))
            elif kind in ("em_close", "strong_close", "link_close"):
                if marks:
                    marks.pop()
            elif kind == "image":
                out.append(self.image(child, marks, span))
            elif kind == "html_inline":
                out.append(self.html_inline(child.content, marks, span))
            else:
                self.report(self.line_of(child.content, span), kind, child.content or kind)
                if child.content:
                    out.append(text(child.content, *marks))
        return inline(out)

    def image(self, tok: Token, marks: list[Mark], span: list[int] | None) -> Node:
        alt = _plain_text(tok.children or [])
        title = tok.attrGet("title")
        src = str(tok.attrGet("src") or "")
        links = [m for m in marks if m.name == schema.LINK]
        if links:
            # y-prosemirror keeps no marks on inline nodes: the image stays, its link cannot.
            self.report(
                self.line_of("![", span), "link_on_image", f"{src} -> {links[0].attr('href')}"
            )
        return node(schema.IMAGE, src=src, alt=alt or None, title=str(title) if title else None)

    def html_inline(self, content: str, marks: list[Mark], span: list[int] | None) -> Inline:
        ref = parse_civic_ref(content)
        if ref is not None:
            if marks:
                names = ", ".join(m.name for m in sort_marks(marks))
                self.report(
                    self.line_of(content, span), "marks_on_civic_ref", f"{names}: {content}"
                )
            if ref["refType"] not in schema.CIVIC_REF_TYPES:
                self.report(self.line_of(content, span), "civic_ref_type", content)
            return node(
                schema.CIVIC_REF, refType=ref["refType"], id=ref["id"], label=ref.get("label")
            )
        # Raw inline HTML: kept as literal text, so nothing is lost and nothing executes.
        self.report(self.line_of(content, span), "html_inline", content)
        return text(content, *marks)

    def scan_text(self, content: str, span: list[int] | None) -> None:
        for found in _FOOTNOTE.finditer(content):
            self.report(self.line_of(found.group(0), span), "footnote", content)
        for found in _STRIKETHROUGH.finditer(content):
            self.report(self.line_of(found.group(0), span), "strikethrough", found.group(0))

    def report_references(self) -> None:
        references = self.env.get("references", {})
        for label, ref in references.items():
            if label.startswith("^"):
                # A footnote definition that CommonMark reads as a link reference definition:
                # its references became links to its target.
                line = ref.get("map", [0])[0]
                self.report(line, "footnote", f"[{label}]: {ref.get('href', '')}")


def parse_markdown(body: str) -> tuple[tuple[Node, ...], tuple[Unsupported, ...]]:
    """The document tree of a Markdown body, and what was mapped with loss of meaning."""
    reader = _Reader(body)
    blocks = reader.document(body)
    report = sorted(reader.unsupported, key=lambda item: item.line)
    return blocks, tuple(report)
