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

from collections.abc import Iterable, Sequence

from . import schema
from .markdown_escape import FENCE_RUN
from .markdown_inline import write_inline
from .model import Inline, Node, Text, text

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
            return write_inline(item.content).split("\n") if item.content else []
        if name == schema.HEADING:
            level = min(max(int(item.attr("level") or 1), 1), 6)
            content = write_inline(item.content, heading=level)
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
            return write_inline(item.content).split("\n")
        return self.blocks(item.content)

    @staticmethod
    def code_block(item: Node) -> list[str]:
        code = "".join(c.text for c in item.content if isinstance(c, Text))
        params = str(item.attr("params") or "")
        longest = max((len(run) for run in FENCE_RUN.findall(code) if run[0] == "`"), default=0)
        fence = "`" * max(3, longest + 1)
        if "`" in params:
            longest = max((len(run) for run in FENCE_RUN.findall(code) if run[0] == "~"), default=0)
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
        return write_inline(content, in_table=True)


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
