"""Serialise a record's Yjs document back to its Markdown body.

The inverse of `to_yjs`: `fragment_to_markdown(markdown_to_fragment(body))` is the body in
canonical form (see `markdown_writer` for the style), and from there the round trip is
exact: converting that Markdown again gives the same document and the same Markdown.
"""

from __future__ import annotations

from pycrdt import XmlFragment

from .markdown_writer import write_markdown
from .yjs_form import read_fragment


def fragment_to_markdown(fragment: XmlFragment) -> str:
    """Markdown for the document in a y-prosemirror `XmlFragment` ("" when it is empty)."""
    return write_markdown(read_fragment(fragment))
