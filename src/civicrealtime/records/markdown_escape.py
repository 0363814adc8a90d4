"""Writing Markdown text exactly: escapes, entities, and CommonMark's emphasis flanking rules.

A textblock's inline content is written as segments (`TextSegment`, `DelimSegment`,
`RawSegment`); `escape_text` decides how each character of a text segment is written, and
`fix_opener`/`fix_closer` make an emphasis delimiter open or close where it should by
writing a neighbouring character as a numeric entity. Used by `markdown_inline.py`.
"""

from __future__ import annotations

import re

import attrs
from markdown_it.common.utils import isMdAsciiPunct, isPunctChar, isWhiteSpace

from .model import Node

_ALWAYS_ESCAPED = frozenset("\\*_`[]|")
_LINE_START_ESCAPED = frozenset("#>-+=~")
_ORDERED_MARKER = re.compile(r"\d{1,9}[.)](?=[ \t]|$)")
_ENTITY_LIKE = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{0,31});")
_HTML_START = re.compile(r"<[A-Za-z/!?]")
_BACKTICKS = re.compile(r"`+")
FENCE_RUN = re.compile(r"^[ ]{0,3}(`{3,}|~{3,})", re.MULTILINE)
_DEST_NEEDS_ANGLE = re.compile(r"[\s<>]|^$")


def _entity(char: str) -> str:
    return f"&#{ord(char)};"


def _is_space(char: str) -> bool:
    return isWhiteSpace(ord(char))


def _is_punct(char: str) -> bool:
    return isMdAsciiPunct(ord(char)) or isPunctChar(char)


# -- inline segments ----------------------------------------------------------------------


@attrs.define
class TextSegment:
    """Plain text; `units[i]` is how `chars[i]` is written (escaped, or as an entity)."""

    chars: str
    units: list[str] = attrs.field(factory=list)

    @property
    def first(self) -> str:
        return self.units[0][0]

    @property
    def last(self) -> str:
        return self.units[-1][-1]


@attrs.define
class DelimSegment:
    """One emphasis delimiter (`*`/`_`, once for em, twice for strong), open or close."""

    char: str
    size: int
    opening: bool
    span: int


@attrs.define
class RawSegment:
    """Already-written Markdown: code spans, link brackets, images, civic refs, breaks."""

    value: str
    kind: str


Segment = TextSegment | DelimSegment | RawSegment


def _escape_attr(value: str) -> str:
    return (
        value.replace("&", "&amp;")
        .replace('"', "&quot;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("\n", "&#10;")
        .replace("\r", "&#13;")
    )


def civic_ref_comment(ref: Node) -> str:
    parts = [f'type="{_escape_attr(str(ref.attr("refType") or "record"))}"']
    parts.append(f'id="{_escape_attr(str(ref.attr("id") or ""))}"')
    label = ref.attr("label")
    if label is not None:
        parts.append(f'label="{_escape_attr(str(label))}"')
    return f"<!--civic-ref {' '.join(parts)}-->"


def link_destination(href: str) -> str:
    href = _ENTITY_LIKE.sub(lambda found: "\\" + found.group(0), href.replace("\\", "\\\\"))
    if _DEST_NEEDS_ANGLE.search(href):
        return "<" + href.replace("<", "\\<").replace(">", "\\>") + ">"
    return href.replace("(", "\\(").replace(")", "\\)")


def link_title(title: str | int | None) -> str:
    if title is None or title == "":
        return ""  # CommonMark has no empty title: "" and null read back as null
    value = str(title).replace("\\", "\\\\").replace('"', '\\"')
    return ' "' + _ENTITY_LIKE.sub(lambda found: "\\" + found.group(0), value) + '"'


def plain_escape(value: str) -> str:
    """Text in a context without line starts (image alt text)."""
    segment = TextSegment(value)
    escape_text(segment, line_start=False, line_end=False, block_edge_start=False, next_raw="")
    return "".join(segment.units)


def code_span(value: str) -> str:
    longest = max((len(run) for run in _BACKTICKS.findall(value)), default=0)
    fence = "`" * (longest + 1)
    stripped_by_reader = value.startswith(" ") and value.endswith(" ") and value.strip(" ")
    if value.startswith("`") or value.endswith("`") or stripped_by_reader:
        value = f" {value} "
    return fence + value + fence


def escape_text(
    segment: TextSegment, *, line_start: bool, line_end: bool, block_edge_start: bool, next_raw: str
) -> None:
    """Write each character of `segment`; `line_start`: the text starts a line where a
    block could start; `block_edge_start`: it starts the block's text (after `#` or `|`)."""
    chars = segment.chars
    units: list[str] = []
    for index, char in enumerate(chars):
        rest = chars[index:]
        if char in "\n\r":
            unit = _entity(char)
        elif char in _ALWAYS_ESCAPED:
            unit = "\\" + char
        elif char == "<" and (_HTML_START.match(rest) or index == len(chars) - 1):
            unit = "\\<"
        elif char == "&" and (_ENTITY_LIKE.match(rest) or index == len(chars) - 1):
            unit = "\\&"
        elif char == "!" and index == len(chars) - 1 and next_raw.startswith("["):
            unit = "\\!"
        else:
            unit = char
        units.append(unit)
    if chars and (line_start or block_edge_start):
        first = chars[0]
        if line_start and first in _LINE_START_ESCAPED:
            units[0] = "\\" + first
        elif first.isspace():
            # CommonMark strips a line's indentation and a block's leading whitespace (any
            # Unicode space; a line after a civic-ref line starts a block of its own).
            units[0] = _entity(first)
        elif line_start:
            marker = _ORDERED_MARKER.match(chars)
            if marker is not None:
                end = marker.end() - 1
                units[end] = "\\" + chars[end]
    if line_end and chars:
        last = chars[-1]
        if last.isspace():
            units[-1] = _entity(last)
    segment.units = units


def _source_char(seg: Segment | None, *, at_end: bool) -> str:
    if seg is None:
        return " "  # the start or end of the line counts as whitespace
    if isinstance(seg, TextSegment):
        return seg.last if at_end else seg.first
    if isinstance(seg, DelimSegment):
        return seg.char
    return seg.value[-1] if at_end else seg.value[0]


def _flanking(last: str, nxt: str) -> tuple[bool, bool]:
    last_space, next_space = _is_space(last), _is_space(nxt)
    last_punct, next_punct = _is_punct(last), _is_punct(nxt)
    left = not (next_space or (next_punct and not (last_space or last_punct)))
    right = not (last_space or (last_punct and not (next_space or next_punct)))
    return left, right


def _can_open(char: str, last: str, nxt: str) -> bool:
    left, right = _flanking(last, nxt)
    return left and (char == "*" or not right or _is_punct(last))


def _can_close(char: str, last: str, nxt: str) -> bool:
    left, right = _flanking(last, nxt)
    return right and (char == "*" or not left or _is_punct(nxt))


def _encode_first(seg: Segment | None) -> bool:
    if isinstance(seg, TextSegment) and seg.units and not seg.units[0].startswith("&#"):
        seg.units[0] = _entity(seg.chars[0])
        return True
    return False


def _encode_last(seg: Segment | None) -> bool:
    if isinstance(seg, TextSegment) and seg.units and not seg.units[-1].startswith("&#"):
        seg.units[-1] = _entity(seg.chars[-1])
        return True
    return False


def _is_word(char: str) -> bool:
    return not (_is_space(char) or _is_punct(char))


def fix_opener(char: str, before: Segment | None, after: Segment | None, strict: bool) -> bool:
    last, nxt = _source_char(before, at_end=True), _source_char(after, at_end=False)
    if _can_open(char, last, nxt):
        # Inside a word the run could close as well, and pair with an earlier delimiter:
        # when that happens (`strict`), an entity before it leaves it able to open only.
        if strict and _can_close(char, last, nxt) and _is_word(last) and _is_word(nxt):
            return _encode_last(before)
        return False
    if _is_space(nxt) and _encode_first(after):
        return True
    return _encode_last(before)


def fix_closer(char: str, before: Segment | None, after: Segment | None, strict: bool) -> bool:
    last, nxt = _source_char(before, at_end=True), _source_char(after, at_end=False)
    if _can_close(char, last, nxt):
        if strict and _can_open(char, last, nxt) and _is_word(last) and _is_word(nxt):
            return _encode_first(after)
        return False
    if _is_space(last) and _encode_last(before):
        return True
    return _encode_first(after)
