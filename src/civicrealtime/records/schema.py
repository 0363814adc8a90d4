"""The editor's ProseMirror schema, by name: what the Yjs form of a record may contain.

y-prosemirror names every `Y.XmlElement` after its ProseMirror node type and every
formatting attribute on `Y.XmlText` after its mark; a name the editor's schema does not know
is dropped (with its content) in every editor that opens the document. So these strings are
a wire contract with the CivicPress editor, mirrored in `tests/js/prosemirror_schema.mjs`.

Attribute defaults matter too: y-prosemirror writes every attribute whose value is not null
(defaults included) and, reading, fills a missing attribute from the schema default. The
defaults below are the ones the editor's schema declares.
"""

from __future__ import annotations

from typing import Final

# Block nodes.
PARAGRAPH: Final = "paragraph"
BLOCKQUOTE: Final = "blockquote"
HORIZONTAL_RULE: Final = "horizontal_rule"
HEADING: Final = "heading"
CODE_BLOCK: Final = "code_block"
BULLET_LIST: Final = "bullet_list"
ORDERED_LIST: Final = "ordered_list"
LIST_ITEM: Final = "list_item"
TABLE: Final = "table"
TABLE_ROW: Final = "table_row"
TABLE_CELL: Final = "table_cell"
TABLE_HEADER: Final = "table_header"

# Inline nodes. `text` never becomes an element: it is the content of a `Y.XmlText`.
TEXT: Final = "text"
IMAGE: Final = "image"
HARD_BREAK: Final = "hard_break"
CIVIC_REF: Final = "civicRef"

# Marks, in the editor schema's order (ProseMirror ranks marks by definition order).
LINK: Final = "link"
EM: Final = "em"
STRONG: Final = "strong"
CODE: Final = "code"

MARKS: Final = (LINK, EM, STRONG, CODE)
MARK_RANK: Final = {name: rank for rank, name in enumerate(MARKS)}

# Attribute values as y-prosemirror stores them: numbers are numbers, absent means null.
AttrValue = str | int | None

# Per node (or mark) type: attribute name -> default, in the schema's declaration order.
# `None` is ProseMirror's null default; a required attribute (no default) is listed with
# `None` too, and our writers always supply it.
NODE_ATTRS: Final[dict[str, tuple[tuple[str, AttrValue], ...]]] = {
    HEADING: (("level", 1),),
    CODE_BLOCK: (("params", ""),),
    ORDERED_LIST: (("order", 1),),
    TABLE_CELL: (("align", None),),
    TABLE_HEADER: (("align", None),),
    IMAGE: (("src", None), ("alt", None), ("title", None)),
    CIVIC_REF: (("refType", "record"), ("id", None), ("label", None)),
}
MARK_ATTRS: Final[dict[str, tuple[tuple[str, AttrValue], ...]]] = {
    LINK: (("href", None), ("title", None)),
}

# Attributes holding numbers: Yjs stores a JavaScript number (a float once read by pycrdt).
INTEGER_ATTRS: Final = frozenset({"level", "order"})

BLOCK_NODES: Final = frozenset(
    {
        PARAGRAPH,
        BLOCKQUOTE,
        HORIZONTAL_RULE,
        HEADING,
        CODE_BLOCK,
        BULLET_LIST,
        ORDERED_LIST,
        TABLE,
    }
)
INLINE_ATOMS: Final = frozenset({IMAGE, HARD_BREAK, CIVIC_REF})
TEXTBLOCKS: Final = frozenset({PARAGRAPH, HEADING, CODE_BLOCK})
LISTS: Final = frozenset({BULLET_LIST, ORDERED_LIST})
CELLS: Final = frozenset({TABLE_CELL, TABLE_HEADER})
KNOWN_NODES: Final = (
    BLOCK_NODES | INLINE_ATOMS | {LIST_ITEM, TABLE_ROW, TABLE_CELL, TABLE_HEADER, TEXT}
)

CIVIC_REF_TYPES: Final = frozenset({"record", "geography", "attachment"})
ALIGNMENTS: Final = frozenset({"left", "center", "right"})
