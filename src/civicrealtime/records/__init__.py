"""Record content: the CivicPress data directory, and record bodies as Yjs documents.

`source` finds and reads records; `to_yjs` seeds a `XmlFragment` from a Markdown body in
the editor's y-prosemirror form; `to_markdown` serialises it back; `draft` writes the
result next to the record's front matter. Nothing here knows trio.

Each conversion is also available in two phases, so that only the cheap half touches the
document (which only its room may touch) and the rest can run in a worker thread:
`parse_markdown` (pure) then `write_fragment` (document); `read_fragment` (document) then
`write_markdown` (pure). The document tree in between (`model.Node`) is immutable.
"""

from .draft import render_draft, write_draft_atomically
from .markdown_reader import Unsupported, parse_markdown
from .markdown_writer import write_markdown
from .model import Node, Text
from .source import Record, RecordError, RecordIndex
from .to_markdown import fragment_to_markdown
from .to_yjs import ConversionReport, markdown_to_fragment
from .yjs_form import read_fragment, write_fragment

__all__ = [
    "ConversionReport",
    "Node",
    "Record",
    "RecordError",
    "RecordIndex",
    "Text",
    "Unsupported",
    "fragment_to_markdown",
    "markdown_to_fragment",
    "parse_markdown",
    "read_fragment",
    "render_draft",
    "write_draft_atomically",
    "write_fragment",
    "write_markdown",
]
