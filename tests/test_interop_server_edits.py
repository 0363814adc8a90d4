"""Server-side edits (the content API and the published file) with the editor's JS stack.

Live y-prosemirror editors: two type offline in the paragraphs that the API and the file
change, one keeps typing live in the paragraph both change, one holds carets. Everyone
converges, every change and every typed character is kept, carets do not move
(tests/js/server_edits.mjs does the editing and the checks).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from civicrealtime.auth.minting import mint_token

from . import processes

JS_DIR = Path(__file__).resolve().parent / "js"
FIXTURES = Path(__file__).resolve().parent / "records" / "fixtures" / "data"
NODE = shutil.which("node")
SECRET = "server-edits-" + "s" * 40
ADMIN_TOKEN = "admin-" + "t" * 30
RECORD = "minutes-2026-04-14"

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(NODE is None, reason="node (Node.js) not found on PATH"),
    pytest.mark.skipif(
        not (JS_DIR / "node_modules" / "y-prosemirror").is_dir(),
        reason="run `npm ci --prefix tests/js` (nox -s tests does it)",
    ),
]


def test_api_and_file_edits_reach_live_editors_without_losing_typing(tmp_path: Path) -> None:
    assert NODE is not None
    data = tmp_path / "civicpress"
    shutil.copytree(FIXTURES, data)
    record_file = data / "records" / "minutes" / "2026" / f"{RECORD}.md"
    (tmp_path / "admin.token").write_text(ADMIN_TOKEN)
    port, http_port = processes.free_port(), processes.free_port()
    daemon = processes.spawn(
        tmp_path,
        f"host: 127.0.0.1\nport: {port}\n"
        f"http:\n  port: {http_port}\n  admin_token_file: {tmp_path / 'admin.token'}\n"
        f"records:\n  data_dir: {data}\n  watch_seconds: 0.1\n"
        "snapshots:\n  max_updates: 1\n  interval: 0\n  flush_ms: 20\n",
        port=port,
        env={"CIVICREALTIME_JWT_SECRET": SECRET},
    )
    try:
        token = mint_token(SECRET.encode(), user="clerk", role="clerk")
        result = subprocess.run(
            [
                NODE,
                str(JS_DIR / "server_edits.mjs"),
                f"ws://127.0.0.1:{port}/realtime",
                f"http://127.0.0.1:{http_port}",
                ADMIN_TOKEN,
                RECORD,
                token,
                str(record_file),
            ],
            cwd=JS_DIR,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr + result.stdout
        seen = json.loads(result.stdout.splitlines()[0])
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
