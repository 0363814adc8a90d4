"""A record's draft holds what its editors see when one of them splits an emoji.

Two editors through the stock stack (yjs, y-websocket, y-prosemirror) on a seeded record:
A adds `Avis 😀 public`, B inserts `é` between the emoji's halves (tests/js/record_split.mjs).
The draft written after the snapshot must be the Markdown of the editors' own state, as
our converter writes it: `Avis \\uFFFDé\\uFFFD public`, not the emoji yrs would keep.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, XmlFragment

from civicrealtime.auth.minting import mint_token
from civicrealtime.records import read_fragment, write_markdown

from . import processes

JS_DIR = Path(__file__).resolve().parent / "js"
FIXTURES = Path(__file__).resolve().parent / "records" / "fixtures" / "data"
NODE = shutil.which("node")
SECRET = "records-split-" + "s" * 40
RECORD = "minutes-2026-04-14"

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(NODE is None, reason="node (Node.js) not found on PATH"),
    pytest.mark.skipif(
        not (JS_DIR / "node_modules" / "y-prosemirror").is_dir(),
        reason="run `npm ci --prefix tests/js` (nox -s tests does it)",
    ),
]


def test_draft_is_the_markdown_the_editors_see(tmp_path: Path) -> None:
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
        tokens = [mint_token(SECRET.encode(), user=u, role="clerk") for u in ("a", "b")]
        url = f"ws://127.0.0.1:{port}/realtime"
        result = subprocess.run(
            [NODE, str(JS_DIR / "record_split.mjs"), url, RECORD, *tokens],
            cwd=JS_DIR,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        seen: dict[str, Any] = json.loads(result.stdout.splitlines()[0])
        assert seen["paragraph"] == "Avis \ufffdé\ufffd public"
        editors: Doc[Any] = Doc()
        editors.apply_update(bytes.fromhex(seen["state"]))
        body = write_markdown(read_fragment(editors.get("default", type=XmlFragment)))
        assert body.rstrip().endswith("Avis \ufffdé\ufffd public")
        draft = tmp_path / ".system-data" / "drafts" / "minutes" / f"{RECORD}.md"
        deadline = time.monotonic() + 15
        # No event announces a draft: poll the file, under a deadline.
        while not (draft.exists() and draft.read_text(encoding="utf-8").endswith(body)):
            assert time.monotonic() < deadline, (
                f"the draft never became the editors' Markdown; it ends with "
                f"{draft.read_text(encoding='utf-8')[-200:]!r}"
                if draft.exists()
                else "no draft written"
            )
            time.sleep(0.05)
        assert processes.terminate(daemon) == 0
    finally:
        processes.stop(daemon)
