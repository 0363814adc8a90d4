"""Writing one textblock's inline content (text, marks, links, images, civic refs).

`write_inline` renders the content and, when it carries `em` or `strong`, parses it back
and tries the next way of writing the delimiters until the marks survive (see
`markdown_writer.py` for the style and the guarantees).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from . import schema
from .markdown_escape import (
    DelimSegment,
    RawSegment,
    Segment,
    TextSegment,
    civic_ref_comment,
    code_span,
    escape_text,
    fix_closer,
    fix_opener,
    link_destination,
    link_title,
    plain_escape,
)
from .markdown_reader import parse_markdown
from .model import Inline, Mark, Node, Text, inline, text

log = logging.getLogger("civicrealtime.records.markdown_writer")

_DELIMITED = (schema.EM, schema.STRONG)
_MAX_SPANS_SEARCHED = 8
_INLINE_MARKS = frozenset({schema.LINK, schema.EM, schema.STRONG, schema.CODE})


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

    def segments(self, pieces: Sequence[Inline]) -> list[Segment]:
        out: list[Segment] = []
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
    def opener(found: Mark, span: int) -> Segment:
        if found.name == schema.LINK:
            return RawSegment("[", "link_open")
        return DelimSegment("*", 2 if found.name == schema.STRONG else 1, opening=True, span=span)

    @staticmethod
    def closer(found: Mark, span: int) -> Segment:
        if found.name == schema.LINK:
            href = str(found.attr("href") or "")
            return RawSegment(
                f"]({link_destination(href)}{link_title(found.attr('title'))})", "link_close"
            )
        return DelimSegment("*", 2 if found.name == schema.STRONG else 1, opening=False, span=span)

    def piece(self, piece: Inline) -> Segment:
        if isinstance(piece, Text):
            if piece.has(schema.CODE):
                return RawSegment(code_span(piece.text), "code")
            return TextSegment(piece.text)
        if piece.name == schema.HARD_BREAK:
            return RawSegment("\\\n", "break")
        if piece.name == schema.IMAGE:
            alt = plain_escape(str(piece.attr("alt") or ""))
            src = link_destination(str(piece.attr("src") or ""))
            return RawSegment(f"![{alt}]({src}{link_title(piece.attr('title'))})", "image")
        return RawSegment(civic_ref_comment(piece), "ref")

    # -- delimiters -------------------------------------------------------------------------

    @staticmethod
    def separate_runs(segs: list[Segment]) -> None:
        """A closing delimiter followed by an opening one of the same character would merge
        into one run: switch the opening span to the other character."""
        for _ in range(8):
            changed = False
            for index in range(1, len(segs)):
                before, after = segs[index - 1], segs[index]
                if (
                    isinstance(before, DelimSegment)
                    and isinstance(after, DelimSegment)
                    and not before.opening
                    and after.opening
                    and before.char == after.char
                ):
                    other = "_" if after.char == "*" else "*"
                    for seg in segs:
                        if isinstance(seg, DelimSegment) and seg.span == after.span:
                            seg.char = other
                    changed = True
            if not changed:
                return

    def escape(self, segs: list[Segment]) -> None:
        for index, seg in enumerate(segs):
            if not isinstance(seg, TextSegment):
                continue
            before = segs[index - 1] if index > 0 else None
            after = segs[index + 1] if index + 1 < len(segs) else None
            # Heading and cell text follows `#` or `|` on its line: only a paragraph's
            # lines can start a block.
            block_start = before is None and not (self.in_heading or self.in_table)
            line_start = block_start or (isinstance(before, RawSegment) and before.kind == "break")
            line_end = after is None or (isinstance(after, RawSegment) and after.kind == "break")
            escape_text(
                seg,
                line_start=line_start,
                line_end=line_end,
                block_edge_start=before is None,
                next_raw=after.value if isinstance(after, RawSegment) else "",
            )
            if self.in_heading and after is None and seg.chars.endswith("#"):
                seg.units[-1] = "\\#"

    @staticmethod
    def fix_flanking(segs: list[Segment], strict: bool) -> None:
        """Make every delimiter run able to open or close as intended (CommonMark's
        left/right-flanking rules), by writing a neighbouring character as an entity."""
        for _ in range(16):
            changed = False
            index = 0
            while index < len(segs):
                seg = segs[index]
                if not isinstance(seg, DelimSegment):
                    index += 1
                    continue
                end = index
                while (
                    end + 1 < len(segs)
                    and isinstance(segs[end + 1], DelimSegment)
                    and segs[end + 1].char == seg.char  # type: ignore[union-attr]
                ):
                    end += 1
                run = [s for s in segs[index : end + 1] if isinstance(s, DelimSegment)]
                before = segs[index - 1] if index > 0 else None
                after = segs[end + 1] if end + 1 < len(segs) else None
                if any(d.opening for d in run):
                    changed |= fix_opener(seg.char, before, after, strict)
                if any(not d.opening for d in run):
                    changed |= fix_closer(seg.char, before, after, strict)
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
            if isinstance(seg, DelimSegment) and seg.span in underscored:
                seg.char = "_"
        self.separate_runs(segs)
        self.escape(segs)
        self.fix_flanking(segs, strict)
        out: list[str] = []
        html_line = True  # is the line being written read as a civic-ref HTML block?
        for index, seg in enumerate(segs):
            before = segs[index - 1] if index > 0 else None
            if before is None or (isinstance(before, RawSegment) and before.kind == "break"):
                starts_with_ref = isinstance(seg, RawSegment) and seg.kind == "ref"
                if starts_with_ref and before is not None and not html_line:
                    # A comment starting a line would end the paragraph and start an HTML
                    # block; four spaces make the line a continuation line instead.
                    out.append("    ")
                    html_line = False
                else:
                    # A line starting with a comment is an HTML block; the reader joins
                    # such lines after a hard break into one paragraph (`markdown_reader`).
                    html_line = starts_with_ref and html_line
            if isinstance(seg, TextSegment):
                out.append("".join(seg.units))
            elif isinstance(seg, DelimSegment):
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


def write_inline(content: Sequence[Inline], *, in_table: bool = False, heading: int = 0) -> str:
    writer = _Inline(content, in_table=in_table, in_heading=heading > 0)
    if not writer.has_delimited_marks():
        return writer.render(writer.pieces)
    spans = sum(
        1 for seg in writer.segments(writer.pieces) if isinstance(seg, DelimSegment) and seg.opening
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
