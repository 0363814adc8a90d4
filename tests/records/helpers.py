"""Shared helpers: fixtures on disk, and a raw view of a pycrdt fragment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pycrdt import Doc, XmlElement, XmlFragment, XmlText

from civicrealtime.records import ConversionReport, markdown_to_fragment

FIXTURES = Path(__file__).resolve().parent / "fixtures"
DATA_DIR = FIXTURES / "data"


def new_fragment() -> tuple[Doc[Any], XmlFragment]:
    doc: Doc[Any] = Doc()
    return doc, doc.get("default", type=XmlFragment)


def convert(body: str) -> tuple[XmlFragment, ConversionReport]:
    _, fragment = new_fragment()
    return fragment, markdown_to_fragment(body, fragment)


def raw(item: XmlFragment | XmlElement | XmlText) -> Any:
    """The fragment exactly as pycrdt holds it: (tag, attributes, children) for elements,
    ("#text", [(chunk, formatting), ...]) for texts. Independent of our reader."""
    if isinstance(item, XmlText):
        return ("#text", [(chunk, attrs or {}) for chunk, attrs in item.diff()])
    children = [raw(child) for child in item.children]
    if isinstance(item, XmlElement):
        attributes = dict(item.attributes.__iter__())
        return (item.tag, attributes, children)
    return children


def blocks_of(body: str) -> list[Any]:
    fragment, _ = convert(body)
    result: list[Any] = raw(fragment)
    return result
