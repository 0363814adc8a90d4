"""Server-side edits (the content API and the published file) with the editor's JS stack.

Live y-prosemirror editors: two type offline in the paragraphs that the API and the file
change, one keeps typing live in the paragraph both change, one holds carets. Everyone
converges, every change and every typed character is kept, carets do not move
(tests/js/server_edits.mjs does the editing and the checks).
"""

from __future__ import annotations

from pathlib import Path

from civicrealtime.auth.minting import mint_token

from . import processes
from .interop_support import needs_node, run_node_json, spawn_records_daemon

SECRET = "server-edits-" + "s" * 40
ADMIN_TOKEN = "admin-" + "t" * 30
RECORD = "minutes-2026-04-14"

pytestmark = needs_node("y-prosemirror")


def test_api_and_file_edits_reach_live_editors_without_losing_typing(tmp_path: Path) -> None:
    (tmp_path / "admin.token").write_text(ADMIN_TOKEN)
    http_port = processes.free_port()
    daemon, port, data = spawn_records_daemon(
        tmp_path,
        SECRET,
        http=f"  port: {http_port}\n  admin_token_file: {tmp_path / 'admin.token'}\n",
        records="  watch_seconds: 0.1\n",
    )
    record_file = data / "records" / "minutes" / "2026" / f"{RECORD}.md"
    try:
        token = mint_token(SECRET.encode(), user="clerk", role="clerk")
        seen = run_node_json(
            "server_edits.mjs",
            f"ws://127.0.0.1:{port}/realtime",
            f"http://127.0.0.1:{http_port}",
            ADMIN_TOKEN,
            RECORD,
            token,
            str(record_file),
        )
        assert seen["carets_moved"] == 0
        opening = seen["text"].split("La séance ordinaire est ouverte à 19 h 05.")[1]
        # D's typing, A's offline text and the next heading: all in that one paragraph.
        assert opening.split("2. Adoption")[0].count("✎") == seen["typed"]
        assert "[A]" in opening.split("2. Adoption")[0]
        assert seen["typed"] >= 20
        assert seen["typed_kept"] == seen["typed"]
        assert processes.terminate(daemon) == 0
    finally:
        processes.stop(daemon)
