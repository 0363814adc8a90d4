"""history_read.py: rendering versions, blocks and diffs."""

from __future__ import annotations

import json
from typing import Any

from pycrdt import Array, Doc, Map, Text, XmlFragment

from civicrealtime.history_read import blocks_of, diff_texts, render
from civicrealtime.records.to_yjs import markdown_to_fragment


def test_a_record_renders_as_markdown() -> None:
    doc: Doc[Any] = Doc()
    markdown_to_fragment("# Title\n\n- one\n- two\n", doc.get("default", type=XmlFragment))
    assert render("records:r", [doc.get_update()]) == "# Title\n\n- one\n- two\n"


def test_another_room_type_renders_as_json_of_its_roots() -> None:
    doc: Doc[Any] = Doc()
    doc.get("settings", type=Map)["colour"] = "blue"
    doc.get("notes", type=Text).insert(0, "hello")
    doc.get("items", type=Array).append(3)
    shown = json.loads(render("notes:n", [doc.get_update()]))
    assert shown == {"settings": {"colour": "blue"}, "notes": "hello", "items": [3.0]}


def test_blocks_are_paragraphs_headings_list_items_and_table_rows() -> None:
    text = (
        "# Title\n\nA paragraph\non two lines.\n\n- one\n- two\n\n| a | b |\n| - | - |\n| 1 | 2 |\n"
    )
    assert blocks_of(text) == [
        "# Title",
        "A paragraph\non two lines.",
        "- one",
        "- two",
        "| a | b |",
        "| - | - |",
        "| 1 | 2 |",
    ]


def test_a_diff_has_a_unified_text_and_a_block_summary() -> None:
    diff = diff_texts(
        "# T\n\nOne.\n\nTwo.\n\nGone.\n",
        "# T\n\nOne!\n\nTwo.\n\nNew.\n\nMore.\n",
        before_label="version 1",
        after_label="version 2",
    )
    assert diff.unified.startswith("--- version 1\n+++ version 2\n")
    assert "-One.\n+One!\n" in diff.unified
    assert diff.summary == {"added": 1, "removed": 0, "changed": 2, "unchanged": 2}
    assert {"change": "changed", "block": 1, "before": "One.", "after": "One!"} in diff.blocks
    assert {"change": "added", "block": 4, "before": None, "after": "More."} in diff.blocks
