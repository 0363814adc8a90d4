"""Hypothesis strategies: documents built from the editor schema's node types."""

from __future__ import annotations

from hypothesis import strategies as st
from markdown_it import MarkdownIt

from civicrealtime.records import schema
from civicrealtime.records.model import Inline, Mark, Node, Text, inline, mark, node, text

_LINKS = MarkdownIt("commonmark")

# Markdown-special characters, accents, emoji, Unicode punctuation and spaces.
SPECIAL = "\\*_`[]|<>&!#+-=~.()\"':;/{}^$%@,?"
CHARS = st.sampled_from(
    list("abcxyzABC019")
    + list(SPECIAL)
    + list("éèàçÉÀ«»—\u2019")
    + ["☀️", "🏛", "🙂", " ", " ", " ", "\t", "\u00a0", "\n"]
)
WORDS = st.lists(CHARS, min_size=1, max_size=10).map("".join)
LINE_WORDS = st.lists(CHARS.filter(lambda c: c != "\n"), min_size=1, max_size=10).map("".join)


@st.composite
def hrefs(draw: st.DrawFn) -> str:
    path = draw(st.text(st.sampled_from(list("abz09-_./?=&#%()é ")), max_size=12))
    scheme = draw(st.sampled_from(["https://example.org/", "/records/", "mailto:clerk@", ""]))
    # What markdown-it stores for a link: the destination, percent-normalised.
    return str(_LINKS.normalizeLink(scheme + path))


@st.composite
def marks(draw: st.DrawFn) -> tuple[Mark, ...]:
    found: list[Mark] = []
    for name in (schema.EM, schema.STRONG, schema.CODE):
        if draw(st.booleans()):
            found.append(mark(name))
    if draw(st.integers(0, 4)) == 0:
        title = draw(st.none() | LINE_WORDS)
        found.append(mark(schema.LINK, href=draw(hrefs()), title=title))
    return tuple(found)


@st.composite
def texts(draw: st.DrawFn) -> Text:
    chosen = draw(marks())
    words = LINE_WORDS if any(m.name == schema.CODE for m in chosen) else WORDS
    return text(draw(words), *chosen)


@st.composite
def civic_refs(draw: st.DrawFn) -> Node:
    return node(
        schema.CIVIC_REF,
        refType=draw(st.sampled_from(sorted(schema.CIVIC_REF_TYPES))),
        id=draw(st.from_regex(r"rec-[a-z0-9]{1,6}", fullmatch=True)),
        label=draw(st.none() | LINE_WORDS),
    )


@st.composite
def images(draw: st.DrawFn) -> Node:
    return node(
        schema.IMAGE,
        src=draw(hrefs()),
        alt=draw(st.none() | LINE_WORDS),
        title=draw(st.none() | LINE_WORDS),
    )


def inline_content(*, breaks: bool, min_size: int = 1) -> st.SearchStrategy[tuple[Inline, ...]]:
    atoms: list[st.SearchStrategy[Inline]] = [civic_refs(), images()]
    if breaks:
        atoms.append(st.just(node(schema.HARD_BREAK)))
    item = st.one_of(texts(), texts(), texts(), *atoms)

    def canonical(items: list[Inline]) -> tuple[Inline, ...]:
        merged = list(inline(items))
        # A hard break at the end of a paragraph is not Markdown (and means nothing).
        while merged and isinstance(merged[-1], Node) and merged[-1].name == schema.HARD_BREAK:
            merged.pop()
        return tuple(merged)

    return (
        st.lists(item, min_size=min_size, max_size=6)
        .map(canonical)
        .filter(lambda c: len(c) >= min_size)
    )


def paragraphs() -> st.SearchStrategy[Node]:
    return inline_content(breaks=True).map(lambda c: node(schema.PARAGRAPH, c))


@st.composite
def headings(draw: st.DrawFn) -> Node:
    content = draw(inline_content(breaks=False, min_size=0))
    return node(schema.HEADING, content, level=draw(st.integers(1, 6)))


@st.composite
def code_blocks(draw: st.DrawFn) -> Node:
    pieces = st.sampled_from([*"ab `~\n#>*<\\ é🙂", "```", "~~~"])
    code = "".join(draw(st.lists(pieces, max_size=20)))
    params = draw(st.sampled_from(["", "python", "yaml title=x", "js {1,3}"]))
    return node(schema.CODE_BLOCK, [Text(code)] if code else [], params=params)


@st.composite
def tables(draw: st.DrawFn) -> Node:
    columns = draw(st.integers(1, 3))
    aligns = [draw(st.sampled_from([None, "left", "center", "right"])) for _ in range(columns)]
    rows = []
    for row in range(draw(st.integers(1, 3))):
        name = schema.TABLE_HEADER if row == 0 else schema.TABLE_CELL
        cells = [
            node(
                name,
                [node(schema.PARAGRAPH, draw(inline_content(breaks=False, min_size=0)))],
                align=aligns[col],
            )
            for col in range(columns)
        ]
        rows.append(node(schema.TABLE_ROW, cells))
    return node(schema.TABLE, rows)


def blocks(depth: int) -> st.SearchStrategy[Node]:
    leaves: list[st.SearchStrategy[Node]] = [
        paragraphs(),
        paragraphs(),
        headings(),
        code_blocks(),
        st.just(node(schema.HORIZONTAL_RULE)),
        tables(),
    ]
    if depth <= 0:
        return st.one_of(*leaves)
    inner = blocks(depth - 1)
    items = st.tuples(paragraphs(), st.lists(inner, max_size=2)).map(
        lambda pair: node(schema.LIST_ITEM, [pair[0], *pair[1]])
    )
    containers = [
        st.lists(inner, min_size=1, max_size=3).map(lambda c: node(schema.BLOCKQUOTE, c)),
        st.lists(items, min_size=1, max_size=3).map(lambda c: node(schema.BULLET_LIST, c)),
        st.tuples(st.integers(0, 12), st.lists(items, min_size=1, max_size=3)).map(
            lambda pair: node(schema.ORDERED_LIST, pair[1], order=pair[0])
        ),
    ]
    return st.one_of(*leaves, *containers)


def documents(depth: int = 2) -> st.SearchStrategy[tuple[Node, ...]]:
    return st.lists(blocks(depth), min_size=1, max_size=5).map(tuple)
