"""The editor's stack (yjs + y-websocket + y-prosemirror + its schema) on a seeded record.

It opens a record the daemon seeded from Markdown, must see its structure (headings, list
items, table cells, civic refs) through y-prosemirror, edits it the way the editor does,
and the draft written after the next snapshot must hold the edit as Markdown.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from civicrealtime.auth.minting import mint_token

from . import processes

JS_DIR = Path(__file__).resolve().parent / "js"
FIXTURES = Path(__file__).resolve().parent / "records" / "fixtures" / "data"
NODE = shutil.which("node")
SECRET = "records-interop-" + "s" * 40

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(NODE is None, reason="node (Node.js) not found on PATH"),
    pytest.mark.skipif(
        not (JS_DIR / "node_modules" / "y-prosemirror").is_dir(),
        reason="run `npm ci --prefix tests/js` (nox -s tests does it)",
    ),
]


def test_editor_stack_sees_structure_and_its_edit_reaches_the_draft(tmp_path: Path) -> None:
    assert NODE is not None
    data = tmp_path / "civicpress"
    shutil.copytree(FIXTURES, data)
    port = processes.free_port()
    daemon = processes.spawn(
        tmp_path,
        f"host: 127.0.0.1\nport: {port}\nhttp:\n  port: 0\n"
        f"records:\n  data_dir: {data}\n"
        "snapshots:\n  max_updates: 1\n  interval: 0\n  flush_ms: 20\n",
        port=port,
        env={"CIVICREALTIME_JWT_SECRET": SECRET},
    )
    try:
        token = mint_token(SECRET.encode(), user="clerk", role="clerk")
        addition = "Modifié dans l'éditeur : séance reportée ✓"
        result = subprocess.run(
            [
                NODE,
                str(JS_DIR / "record_editor.mjs"),
                f"ws://127.0.0.1:{port}/realtime",
                "minutes-2026-04-14",
                token,
                addition,
            ],
            cwd=JS_DIR,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        seen = json.loads(result.stdout.splitlines()[0])
        types = seen["types"]
        for node_type in ("heading", "bullet_list", "list_item", "paragraph", "civicRef"):
            assert types.get(node_type), f"{node_type} missing from {types}"
        assert types.get("table_cell") and types.get("table_header"), types
        draft = tmp_path / ".system-data" / "drafts" / "minutes" / "minutes-2026-04-14.md"
        deadline = time.monotonic() + 15
        while not (draft.exists() and addition in draft.read_text()):
            assert time.monotonic() < deadline, "the draft never received the edit"
            time.sleep(0.05)
        text = draft.read_text()
        assert text.startswith("---\n")
        assert text.rstrip().endswith(addition)
        assert processes.terminate(daemon) == 0
    finally:
        processes.stop(daemon)
