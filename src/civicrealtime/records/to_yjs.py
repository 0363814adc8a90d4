"""Seed a record's Yjs document from its Markdown body.

`markdown_to_fragment` parses the body (CommonMark + GFM tables) and appends the editor's
form of it (see `yjs_form`) to a `XmlFragment`, normally the doc's `"default"` fragment.
Seed only an empty fragment: appending to a live document would duplicate its content for
every editor (the original server also seeded only when the fragment was empty).

Unsupported-content policy: nothing in the body is dropped without a trace. What the
editor's schema cannot express is mapped onto the nearest node that keeps its text, and
each occurrence is listed in `ConversionReport.unsupported` as (line, kind, excerpt):

- `html_block`: a raw HTML block (anything but a civic-ref comment line) becomes a
  `code_block` with `params="html"` holding the HTML verbatim: visible and editable in the
  editor, written back as a fenced `html` block.
- `html_inline`: an inline tag or comment other than a civic ref stays literal text
  (written back escaped, so it reads as text).
- `footnote`: `[^x]` references and `[^x]: ...` definitions (not CommonMark) stay literal
  text; a definition that CommonMark reads as a link reference turns its references into
  links to its target.
- `strikethrough`: `~~text~~` (not in the schema) stays literal text, tildes included.
- `link_on_image`: an image inside a link keeps the image; the link cannot be kept, since
  y-prosemirror stores no marks on inline nodes.
- `marks_on_civic_ref`: emphasis or a link around a civic ref; the civicRef is kept
  without them (same reason).
- `civic_ref_type`: a civic ref whose type is not record, geography or attachment; kept as
  written.

Line numbers count from the first line of the body (add the front matter's lines for the
file's line numbers: `Record.body_line`).
"""

from __future__ import annotations

import attrs
from pycrdt import XmlFragment

from .markdown_reader import Unsupported, parse_markdown
from .model import count_nodes
from .yjs_form import write_fragment


@attrs.frozen
class ConversionReport:
    unsupported: tuple[Unsupported, ...]
    elements: int  # Y.XmlElements written: what a reader of the fragment must find again


def markdown_to_fragment(body: str, fragment: XmlFragment) -> ConversionReport:
    """Append the editor's form of a Markdown body to `fragment` (integrated in a doc)."""
    blocks, unsupported = parse_markdown(body)
    write_fragment(fragment, blocks)
    return ConversionReport(unsupported=unsupported, elements=count_nodes(blocks))
