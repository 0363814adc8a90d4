"""Document tree -> Markdown that `markdown_reader` parses back into the same tree.

Output style: ATX headings, `-` bullets, `1.` ordered lists numbered from their start,
fenced code blocks with their info string, GFM tables with an alignment row, `*em*`,
`**strong**`, `` `code` ``, `[text](href "title")`, `![alt](src "title")`, hard breaks as
backslash-newline, civic refs as their HTML comment. Blocks are separated by a blank line;
a list is tight when each item is one paragraph plus nested lists.

Exactness: text, including Markdown-special characters, leading and trailing spaces and
newlines, comes back unchanged. Characters that would otherwise be read as syntax are
backslash-escaped; where no backslash escape exists (a space that CommonMark would strip,
a character next to an emphasis delimiter that would stop it from opening or closing) the
character is written as a numeric entity such as `&#32;`. Every paragraph carrying `em` or
`strong` is parsed back before it is returned; should a mark still not survive (never seen
in property testing), that paragraph is written without `em`/`strong` and a warning is
logged, so text is never corrupted by stray delimiters.

What Markdown cannot hold, and what is written instead (text always kept):
- empty paragraphs are omitted (an empty first paragraph of a list item is implied);
- a hard break inside a heading or a table cell becomes a space; one ending a paragraph
  is dropped;
- a table's first row is its header row, each column takes the alignment of its first
  cell, short rows are padded with empty cells, and a cell holding several blocks is
  written as their inline content joined by spaces;
- an empty link or image title, or image alt text, reads back as null;
- marks on text inside a code block, and marks or nodes unknown to the schema, are dropped
  (an unknown node's content is written in its place).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence

import attrs
from markdown_it.common.utils import isMdAsciiPunct, isPunctChar, isWhiteSpace

from . import schema
from .markdown_reader import parse_markdown
from .model import Inline, Mark, Node, Text, inline, text

log = logging.getLogger(__name__)

_DELIMITED = (schema.EM, schema.STRONG)
_MAX_SPANS_SEARCHED = 8
_INLINE_MARKS = frozenset({schema.LINK, schema.EM, schema.STRONG, schema.CODE})
_ALWAYS_ESCAPED = frozenset("\\*_`[]|")
_LINE_START_ESCAPED = frozenset("#>-+=~")
_ORDERED_MARKER = re.compile(r"\d{1,9}[.)](?=[ \t]|$)")
_ENTITY_LIKE = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{0,31});")
_HTML_START = re.compile(r"<[A-Za-z/!?]")
_BACKTICKS = re.compile(r"`+")
_FENCE_RUN = re.compile(r"^[ ]{0,3}(`{3,}|~{3,})", re.MULTILINE)
_DEST_NEEDS_ANGLE = re.compile(r"[\s<>]|^$")


def _entity(char: str) -> str:
    return f"&#{ord(char)};"


def _is_space(char: str) -> bool:
    return isWhiteSpace(ord(char))


def _is_punct(char: str) -> bool:
    return isMdAsciiPunct(ord(char)) or isPunctChar(char)


# -- inline segments ----------------------------------------------------------------------


@attrs.define
class _Text:
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
class _Delim:
    """One emphasis delimiter (`*`/`_`, once for em, twice for strong), open or close."""

    char: str
    size: int
    opening: bool
    span: int


@attrs.define
class _Raw:
    """Already-written Markdown: code spans, link brackets, images, civic refs, breaks."""

    value: str
    kind: str


_Seg = _Text | _Delim | _Raw


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


def _destination(href: str) -> str:
    href = _ENTITY_LIKE.sub(lambda found: "\\" + found.group(0), href.replace("\\", "\\\\"))
    if _DEST_NEEDS_ANGLE.search(href):
        return "<" + href.replace("<", "\\<").replace(">", "\\>") + ">"
    return href.replace("(", "\\(").replace(")", "\\)")


def _title(title: str | int | None) -> str:
    if title is None or title == "":
        return ""  # CommonMark has no empty title: "" and null read back as null
    value = str(title).replace("\\", "\\\\").replace('"', '\\"')
    return ' "' + _ENTITY_LIKE.sub(lambda found: "\\" + found.group(0), value) + '"'


def _plain_escape(value: str) -> str:
    """Text in a context without line starts (image alt text)."""
    segment = _Text(value)
    _escape_text(segment, line_start=False, line_end=False, block_edge_start=False, next_raw="")
    return "".join(segment.units)


def _code_span(value: str) -> str:
    longest = max((len(run) for run in _BACKTICKS.findall(value)), default=0)
    fence = "`" * (longest + 1)
    stripped_by_reader = value.startswith(" ") and value.endswith(" ") and value.strip(" ")
    if value.startswith("`") or value.endswith("`") or stripped_by_reader:
        value = f" {value} "
    return fence + value + fence


def _escape_text(
    segment: _Text, *, line_start: bool, line_end: bool, block_edge_start: bool, next_raw: str
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


class _Inline:
    """Writes the inline content of one textblock."""

    def __init__(self, content: Sequence[Inline], *, in_table: bool, in_heading: bool) -> None:
        self.in_table = in_table
        self.in_heading = in_heading
        pieces = list(self.normalise(content))
        # A hard break ending a paragraph is not Markdown (its backslash would be text).
        while pieces and isinstance(pieces[-1], Node) and pieces[-1].name == schema.HARD_BREAK:
            pieces.pop()
        self.pieces = tuple(pieces)

    def normalise(self, content: Sequence[Inline]) -> tuple[Inline, ...]:
        out: list[Inline] = []
        for item in content:
            if isinstance(item, Text):
                marks = [m for m in item.marks if m.name in _INLINE_MARKS]
                out.append(Text(item.text, tuple(marks)))
            elif item.name == schema.HARD_BREAK and (self.in_table or self.in_heading):
                out.append(text(" "))
            elif item.name in schema.INLINE_ATOMS:
                out.append(Node(item.name, item.attrs))
            else:
                out.extend(self.normalise(item.content))
        return inline(out)

    # -- building segments ----------------------------------------------------------------

    def extent(self, found: Mark, start: int) -> int:
        end = start
        while end < len(self.pieces):
            piece = self.pieces[end]
            if not isinstance(piece, Text) or found not in piece.marks:
                break
            end += 1
        return end - start

    def segments(self, pieces: Sequence[Inline]) -> list[_Seg]:
        out: list[_Seg] = []
        stack: list[tuple[Mark, int]] = []
        spans = 0
        for index, piece in enumerate(pieces):
            marks = (
                [m for m in piece.marks if m.name != schema.CODE] if isinstance(piece, Text) else []
            )
            keep = 0
            while keep < len(stack) and stack[keep][0] in marks:
                keep += 1
            for open_mark, span in reversed(stack[keep:]):
                out.append(self.closer(open_mark, span))
            del stack[keep:]
            already = {open_mark for open_mark, _ in stack}
            fresh = [m for m in marks if m not in already]
            fresh.sort(key=lambda m: (-self.extent(m, index), schema.MARK_RANK[m.name]))
            for new_mark in fresh:
                spans += 1
                out.append(self.opener(new_mark, spans))
                stack.append((new_mark, spans))
            out.append(self.piece(piece))
        for open_mark, span in reversed(stack):
            out.append(self.closer(open_mark, span))
        return out

    @staticmethod
    def opener(found: Mark, span: int) -> _Seg:
        if found.name == schema.LINK:
            return _Raw("[", "link_open")
        return _Delim("*", 2 if found.name == schema.STRONG else 1, opening=True, span=span)

    @staticmethod
    def closer(found: Mark, span: int) -> _Seg:
        if found.name == schema.LINK:
            href = str(found.attr("href") or "")
            return _Raw(f"]({_destination(href)}{_title(found.attr('title'))})", "link_close")
        return _Delim("*", 2 if found.name == schema.STRONG else 1, opening=False, span=span)

    def piece(self, piece: Inline) -> _Seg:
        if isinstance(piece, Text):
            if piece.has(schema.CODE):
                return _Raw(_code_span(piece.text), "code")
            return _Text(piece.text)
        if piece.name == schema.HARD_BREAK:
            return _Raw("\\\n", "break")
        if piece.name == schema.IMAGE:
            alt = _plain_escape(str(piece.attr("alt") or ""))
            src = _destination(str(piece.attr("src") or ""))
            return _Raw(f"![{alt}]({src}{_title(piece.attr('title'))})", "image")
        return _Raw(civic_ref_comment(piece), "ref")

    # -- delimiters -------------------------------------------------------------------------

    @staticmethod
    def separate_runs(segs: list[_Seg]) -> None:
        """A closing delimiter followed by an opening one of the same character would merge
        into one run: switch the opening span to the other character."""
        for _ in range(8):
            changed = False
            for index in range(1, len(segs)):
                before, after = segs[index - 1], segs[index]
                if (
                    isinstance(before, _Delim)
                    and isinstance(after, _Delim)
                    and not before.opening
                    and after.opening
                    and before.char == after.char
                ):
                    other = "_" if after.char == "*" else "*"
                    for seg in segs:
                        if isinstance(seg, _Delim) and seg.span == after.span:
                            seg.char = other
                    changed = True
            if not changed:
                return

    def escape(self, segs: list[_Seg]) -> None:
        for index, seg in enumerate(segs):
            if not isinstance(seg, _Text):
                continue
            before = segs[index - 1] if index > 0 else None
            after = segs[index + 1] if index + 1 < len(segs) else None
            # Heading and cell text follows `#` or `|` on its line: only a paragraph's
            # lines can start a block.
            block_start = before is None and not (self.in_heading or self.in_table)
            line_start = block_start or (isinstance(before, _Raw) and before.kind == "break")
            line_end = after is None or (isinstance(after, _Raw) and after.kind == "break")
            _escape_text(
                seg,
                line_start=line_start,
                line_end=line_end,
                block_edge_start=before is None,
                next_raw=after.value if isinstance(after, _Raw) else "",
            )
            if self.in_heading and after is None and seg.chars.endswith("#"):
                seg.units[-1] = "\\#"

    @staticmethod
    def fix_flanking(segs: list[_Seg], strict: bool) -> None:
        """Make every delimiter run able to open or close as intended (CommonMark's
        left/right-flanking rules), by writing a neighbouring character as an entity."""
        for _ in range(16):
            changed = False
            index = 0
            while index < len(segs):
                seg = segs[index]
                if not isinstance(seg, _Delim):
                    index += 1
                    continue
                end = index
                while (
                    end + 1 < len(segs)
                    and isinstance(segs[end + 1], _Delim)
                    and segs[end + 1].char == seg.char  # type: ignore[union-attr]
                ):
                    end += 1
                run = [s for s in segs[index : end + 1] if isinstance(s, _Delim)]
                before = segs[index - 1] if index > 0 else None
                after = segs[end + 1] if end + 1 < len(segs) else None
                if any(d.opening for d in run):
                    changed |= _fix_opener(seg.char, before, after, strict)
                if any(not d.opening for d in run):
                    changed |= _fix_closer(seg.char, before, after, strict)
                index = end + 1
            if not changed:
                return

    # -- output ---------------------------------------------------------------------------

    def render(
        self,
        pieces: Sequence[Inline],
        underscored: frozenset[int] = frozenset(),
        strict: bool = False,
    ) -> str:
        """Markdown for `pieces`; the emphasis spans numbered in `underscored` use `_`, and
        `strict` keeps delimiters inside words from being able to both open and close."""
        segs = self.segments(pieces)
        for seg in segs:
            if isinstance(seg, _Delim) and seg.span in underscored:
                seg.char = "_"
        self.separate_runs(segs)
        self.escape(segs)
        self.fix_flanking(segs, strict)
        out: list[str] = []
        html_line = True  # is the line being written read as a civic-ref HTML block?
        for index, seg in enumerate(segs):
            before = segs[index - 1] if index > 0 else None
            if before is None or (isinstance(before, _Raw) and before.kind == "break"):
                starts_with_ref = isinstance(seg, _Raw) and seg.kind == "ref"
                if starts_with_ref and before is not None and not html_line:
                    # A comment starting a line would end the paragraph and start an HTML
                    # block; four spaces make the line a continuation line instead.
                    out.append("    ")
                    html_line = False
                else:
                    # A line starting with a comment is an HTML block; the reader joins
                    # such lines after a hard break into one paragraph (`markdown_reader`).
                    html_line = starts_with_ref and html_line
            if isinstance(seg, _Text):
                out.append("".join(seg.units))
            elif isinstance(seg, _Delim):
                out.append(seg.char * seg.size)
            elif self.in_table:
                # GFM splits a row on every pipe not preceded by a backslash, before any
                # inline parsing (code spans, link titles and comments included).
                out.append(seg.value.replace("|", "\\|"))
            else:
                out.append(seg.value)
        return "".join(out)

    def has_delimited_marks(self) -> bool:
        return any(
            isinstance(p, Text) and any(m.name in _DELIMITED for m in p.marks) for p in self.pieces
        )


def _source_char(seg: _Seg | None, *, at_end: bool) -> str:
    if seg is None:
        return " "  # the start or end of the line counts as whitespace
    if isinstance(seg, _Text):
        return seg.last if at_end else seg.first
    if isinstance(seg, _Delim):
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


def _encode_first(seg: _Seg | None) -> bool:
    if isinstance(seg, _Text) and seg.units and not seg.units[0].startswith("&#"):
        seg.units[0] = _entity(seg.chars[0])
        return True
    return False


def _encode_last(seg: _Seg | None) -> bool:
    if isinstance(seg, _Text) and seg.units and not seg.units[-1].startswith("&#"):
        seg.units[-1] = _entity(seg.chars[-1])
        return True
    return False


def _is_word(char: str) -> bool:
    return not (_is_space(char) or _is_punct(char))


def _fix_opener(char: str, before: _Seg | None, after: _Seg | None, strict: bool) -> bool:
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


def _fix_closer(char: str, before: _Seg | None, after: _Seg | None, strict: bool) -> bool:
    last, nxt = _source_char(before, at_end=True), _source_char(after, at_end=False)
    if _can_close(char, last, nxt):
        if strict and _can_open(char, last, nxt) and _is_word(last) and _is_word(nxt):
            return _encode_first(after)
        return False
    if _is_space(last) and _encode_last(before):
        return True
    return _encode_first(after)


def _strip_delimited(pieces: Iterable[Inline]) -> tuple[Inline, ...]:
    return inline(
        Text(p.text, tuple(m for m in p.marks if m.name not in _DELIMITED))
        if isinstance(p, Text)
        else p
        for p in pieces
    )


def _expected_inline(blocks: Sequence[Node], wrapper: str) -> tuple[Inline, ...] | None:
    """The inline content of the one textblock that `blocks` should be."""
    if wrapper == "cell":
        # table > row > cell > paragraph
        found: Sequence[Inline] = blocks[:1]
        for _ in range(4):
            first = found[0] if found else None
            if not isinstance(first, Node):
                return None
            found = first.content
        return tuple(found)
    if len(blocks) != 1:
        return None
    return blocks[0].content


def _delimiter_choices(spans: int) -> Iterable[tuple[frozenset[int], bool]]:
    """How to write the emphasis of one textblock, most readable first: which spans use `_`
    instead of `*` (a `_` run cannot pair with a `*` one), and whether delimiters inside
    words are made unambiguous with an entity next to them."""
    yield frozenset(), False
    yield frozenset(), True
    numbers = range(1, min(spans, _MAX_SPANS_SEARCHED) + 1)
    for span in numbers:
        yield frozenset({span}), True
    for first in numbers:
        for second in numbers:
            if first < second:
                yield frozenset({first, second}), True
    yield frozenset(range(1, spans + 1)), True


def _write_inline(content: Sequence[Inline], *, in_table: bool = False, heading: int = 0) -> str:
    writer = _Inline(content, in_table=in_table, in_heading=heading > 0)
    if not writer.has_delimited_marks():
        return writer.render(writer.pieces)
    spans = sum(
        1 for seg in writer.segments(writer.pieces) if isinstance(seg, _Delim) and seg.opening
    )
    for underscored, strict in _delimiter_choices(spans):
        rendered = writer.render(writer.pieces, underscored, strict)
        if in_table:
            probe, wrapper = f"| {rendered} |\n| --- |\n", "cell"
        elif heading:
            probe, wrapper = f"{'#' * heading} {rendered}\n", "heading"
        else:
            probe, wrapper = rendered + "\n", "paragraph"
        if _expected_inline(parse_markdown(probe)[0], wrapper) == writer.pieces:
            return rendered
    log.warning("emphasis could not be written exactly; written without it: %r", rendered)
    return writer.render(_strip_delimited(writer.pieces))


# -- blocks -------------------------------------------------------------------------------


def _is_empty_paragraph(block: Node) -> bool:
    return block.name == schema.PARAGRAPH and not block.content


def _can_interrupt_paragraph(block: Node) -> bool:
    """Can `block` follow a paragraph line directly (no blank line) and still start?"""
    if block.name not in schema.LISTS or not block.content:
        return False
    if block.name == schema.ORDERED_LIST and block.attr("order") != 1:
        return False
    first_item = block.content[0]
    return (
        isinstance(first_item, Node)
        and bool(first_item.content)
        and not (
            isinstance(first_item.content[0], Node) and _is_empty_paragraph(first_item.content[0])
        )
    )


def _is_tight(items: Sequence[Node]) -> bool:
    for item in items:
        rest = item.content[1:]
        if any(not isinstance(b, Node) or b.name not in schema.LISTS for b in rest):
            return False
        first = item.content[0] if item.content else None
        if (
            rest
            and isinstance(first, Node)
            and not _is_empty_paragraph(first)
            and not _can_interrupt_paragraph(rest[0])  # type: ignore[arg-type]
        ):
            return False
    return True


def _indent(lines: Iterable[str], prefix: str) -> list[str]:
    return [prefix + line if line else "" for line in lines]


class _Blocks:
    def blocks(self, nodes: Sequence[Inline], *, tight: bool = False) -> list[str]:
        out: list[str] = []
        previous_list: tuple[str, str] | None = None  # (list type, marker style) just written
        for child in nodes:
            item = child if isinstance(child, Node) else Node(schema.PARAGRAPH, (), (child,))
            if _is_empty_paragraph(item):
                continue
            if item.name in schema.LISTS:
                style = self.list_style(item.name, previous_list)
                lines = self.list_lines(item, style)
                previous_list = (item.name, style)
            else:
                lines = self.block(item)
                previous_list = None
            if not lines:
                continue
            if out and not tight:
                out.append("")
            out.extend(lines)
        return out

    @staticmethod
    def list_style(name: str, previous: tuple[str, str] | None) -> str:
        # Two lists of one kind in a row would merge into one: alternate the marker.
        if name == schema.BULLET_LIST:
            return "*" if previous == (name, "-") else "-"
        return ")" if previous == (name, ".") else "."

    def block(self, item: Node) -> list[str]:
        name = item.name
        if name == schema.PARAGRAPH:
            return _write_inline(item.content).split("\n") if item.content else []
        if name == schema.HEADING:
            level = min(max(int(item.attr("level") or 1), 1), 6)
            content = _write_inline(item.content, heading=level)
            return [f"{'#' * level} {content}" if content else "#" * level]
        if name == schema.CODE_BLOCK:
            return self.code_block(item)
        if name == schema.HORIZONTAL_RULE:
            return ["---"]
        if name == schema.BLOCKQUOTE:
            inner = self.blocks(item.content) or [""]
            return [f"> {line}" if line else ">" for line in inner]
        if name == schema.TABLE:
            return self.table(item)
        if any(isinstance(c, Text) or c.name in schema.INLINE_ATOMS for c in item.content):
            return _write_inline(item.content).split("\n")
        return self.blocks(item.content)

    @staticmethod
    def code_block(item: Node) -> list[str]:
        code = "".join(c.text for c in item.content if isinstance(c, Text))
        params = str(item.attr("params") or "")
        longest = max((len(run) for run in _FENCE_RUN.findall(code) if run[0] == "`"), default=0)
        fence = "`" * max(3, longest + 1)
        if "`" in params:
            longest = max(
                (len(run) for run in _FENCE_RUN.findall(code) if run[0] == "~"), default=0
            )
            fence = "~" * max(3, longest + 1)
        params = params.replace("\n", " ")
        lines = [fence + params]
        if code:
            lines.extend(code.split("\n"))
        lines.append(fence)
        return lines

    def list_lines(self, item: Node, style: str) -> list[str]:
        items = [i for i in item.content if isinstance(i, Node)]
        tight = _is_tight(items)
        order = int(item.attr("order") or 0) if item.name == schema.ORDERED_LIST else 0
        out: list[str] = []
        for index, list_item in enumerate(items):
            marker = style if item.name == schema.BULLET_LIST else f"{order + index}{style}"
            body = self.item_body(list_item, tight)
            if index and not tight:
                out.append("")
            pad = " " * (len(marker) + 1)
            if not body:
                out.append(marker)
                continue
            out.append(f"{marker} {body[0]}" if body[0] else marker)
            out.extend(_indent(body[1:], pad))
        return out

    def item_body(self, item: Node, tight: bool) -> list[str]:
        children = [c for c in item.content if isinstance(c, Node)]
        if not children:
            return []
        first, rest = children[0], children[1:]
        if _is_empty_paragraph(first):
            # The item starts on the marker's line: nothing may come between.
            rest_lines = self.blocks(rest, tight=tight)
            return ["", *rest_lines] if rest_lines else []
        lines = self.block(first)
        rest_lines = self.blocks(rest, tight=tight)
        if rest_lines:
            lines = [*lines, *([] if tight else [""]), *rest_lines]
        return lines

    def table(self, item: Node) -> list[str]:
        rows = [r for r in item.content if isinstance(r, Node)]
        grid = [[c for c in row.content if isinstance(c, Node)] for row in rows]
        columns = max((len(cells) for cells in grid), default=0)
        if columns == 0:
            return []
        header = grid[0]
        aligns = [
            header[col].attr("align") if col < len(header) else None for col in range(columns)
        ]
        lines = []
        for row_index, cells in enumerate(grid):
            written = [self.cell(cell) for cell in cells]
            written += [""] * (columns - len(written))
            lines.append("| " + " | ".join(written) + " |")
            if row_index == 0:
                lines.append("| " + " | ".join(_ALIGN_ROW.get(a, "---") for a in aligns) + " |")
        return lines

    @staticmethod
    def cell(cell: Node) -> str:
        content: list[Inline] = []
        for block in _textblocks(cell.content):
            if content:
                content.append(text(" "))
            content.extend(block.content)
        return _write_inline(content, in_table=True)


_ALIGN_ROW: dict[object, str] = {"left": ":---", "center": ":---:", "right": "---:"}


def _textblocks(nodes: Iterable[Inline]) -> Iterable[Node]:
    for item in nodes:
        if isinstance(item, Node):
            if item.name in schema.TEXTBLOCKS or item.name == schema.PARAGRAPH:
                yield item
            else:
                yield from _textblocks(item.content)


def write_markdown(blocks: Sequence[Node]) -> str:
    """Markdown for a document tree: blocks separated by blank lines, one final newline."""
    lines = _Blocks().blocks(blocks)
    return "\n".join(lines) + "\n" if lines else ""
