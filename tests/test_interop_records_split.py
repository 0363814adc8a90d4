"""A record's draft holds what its editors see when one of them splits an emoji.

Two editors through the stock stack (yjs, y-websocket, y-prosemirror) on a seeded record:
A adds `Avis 😀 public`, B inserts `é` between the emoji's halves (tests/js/record_split.mjs).
The draft written after the snapshot must be the Markdown of the editors' own state, as
our converter writes it: `Avis \\uFFFDé\\uFFFD public`, not the emoji yrs would keep.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pycrdt import Doc, XmlFragment

from civicrealtime.auth.minting import mint_token
from civicrealtime.records import read_fragment, write_markdown

from . import processes
from .interop_support import (
    needs_node,
    run_node_json,
    spawn_records_daemon,
    wait_for_file,
)

SECRET = "records-split-" + "s" * 40
RECORD = "minutes-2026-04-14"

pytestmark = needs_node("y-prosemirror")


def test_draft_is_the_markdown_the_editors_see(tmp_path: Path) -> None:
    daemon, port, _ = spawn_records_daemon(tmp_path, SECRET)
    try:
        tokens = [mint_token(SECRET.encode(), user=u, role="clerk") for u in ("a", "b")]
        url = f"ws://127.0.0.1:{port}/realtime"
        seen: dict[str, Any] = run_node_json("record_split.mjs", url, RECORD, *tokens)
        assert seen["paragraph"] == "Avis \ufffdé\ufffd public"
        editors: Doc[Any] = Doc()
        editors.apply_update(bytes.fromhex(seen["state"]))
        body = write_markdown(read_fragment(editors.get("default", type=XmlFragment)))
        assert body.rstrip().endswith("Avis \ufffdé\ufffd public")
        draft = tmp_path / ".system-data" / "drafts" / "minutes" / f"{RECORD}.md"
        wait_for_file(
            draft,
            lambda text: text.endswith(body),
            lambda: (
                f"the draft never became the editors' Markdown; it ends with "
                f"{draft.read_text(encoding='utf-8')[-200:]!r}"
                if draft.exists()
                else "no draft written"
            ),
        )
        assert processes.terminate(daemon) == 0
    finally:
        processes.stop(daemon)
