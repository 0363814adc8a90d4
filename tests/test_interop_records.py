"""The editor's stack (yjs + y-websocket + y-prosemirror + its schema) on a seeded record.

It opens a record the daemon seeded from Markdown, must see its structure (headings, list
items, table cells, civic refs) through y-prosemirror, edits it the way the editor does,
and the draft written after the next snapshot must hold the edit as Markdown.
"""

from __future__ import annotations

from pathlib import Path

from civicrealtime.auth.minting import mint_token

from . import processes
from .interop_support import (
    needs_node,
    run_node_json,
    spawn_records_daemon,
    wait_for_file,
)

SECRET = "records-interop-" + "s" * 40

pytestmark = needs_node("y-prosemirror")


def test_editor_stack_sees_structure_and_its_edit_reaches_the_draft(tmp_path: Path) -> None:
    daemon, port, _ = spawn_records_daemon(tmp_path, SECRET)
    try:
        token = mint_token(SECRET.encode(), user="clerk", role="clerk")
        addition = "Modifié dans l'éditeur : séance reportée ✓"
        seen = run_node_json(
            "record_editor.mjs",
            f"ws://127.0.0.1:{port}/realtime",
            "minutes-2026-04-14",
            token,
            addition,
        )
        types = seen["types"]
        for node_type in ("heading", "bullet_list", "list_item", "paragraph", "civicRef"):
            assert types.get(node_type), f"{node_type} missing from {types}"
        assert types.get("table_cell") and types.get("table_header"), types
        draft = tmp_path / ".system-data" / "drafts" / "minutes" / "minutes-2026-04-14.md"
        text = wait_for_file(
            draft, lambda text: addition in text, lambda: "the draft never received the edit"
        )
        assert text.startswith("---\n")
        assert text.rstrip().endswith(addition)
        assert processes.terminate(daemon) == 0
    finally:
        processes.stop(daemon)
