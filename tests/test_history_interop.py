"""A record's history built by three users over several sessions of the editor's stack.

Real clients (yjs + y-websocket + y-prosemirror, tests/js/history_editor.mjs) edit a record
in turn on a daemon process; the ops port must then list the versions with their authors,
show and compare them, blame each block on the right person, and restore an earlier
version that two connected editors see at once.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from civicrealtime.auth.minting import mint_token

from . import processes

JS_DIR = Path(__file__).resolve().parent / "js"
NODE = shutil.which("node")
SECRET = "history-interop-" + "s" * 40
RECORD = "bylaw-12"
ROOM = f"records:{RECORD}"

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(NODE is None, reason="node (Node.js) not found on PATH"),
    pytest.mark.skipif(
        not (JS_DIR / "node_modules" / "y-prosemirror").is_dir(),
        reason="run `npm ci --prefix tests/js` (nox -s tests does it)",
    ),
]

TITLE = ["heading", "Bylaw 12"]
FREE = ["paragraph", "Article 1: parking is free."]
LEASH = ["paragraph", "Article 2: dogs on a leash."]
LEASH_PARKS = ["paragraph", "Article 2: dogs on a leash in parks."]
FIREWORKS = ["paragraph", "Article 3: no fireworks."]
PAID = ["paragraph", "Article 1: parking costs 2 EUR an hour."]


def token(user: str, *permissions: str, role: str = "editor") -> str:
    return mint_token(
        SECRET.encode(),
        user=user,
        name=user.capitalize(),
        role=role,
        permissions=permissions,
    )


class Api:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}/admin/rooms/{ROOM}"

    def call(
        self, path: str, bearer: str, body: object | None = None
    ) -> tuple[int, dict[str, Any]]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path,
            data=data,
            headers={"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"},
            method="GET" if body is None else "POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def versions_until(self, bearer: str, count: int) -> list[dict[str, Any]]:
        """Poll until the room has `count` versions (they close after `version_idle`)."""
        deadline = time.monotonic() + 20
        while True:
            status, body = self.call("/history", bearer)
            found = body.get("versions", []) if status == 200 else []
            if len(found) >= count:
                return list(found)
            assert time.monotonic() < deadline, f"versions never reached {count}: {body}"
            time.sleep(0.05)


def run_js(port: int, bearer: str, mode: str, arg: object) -> subprocess.CompletedProcess[str]:
    assert NODE is not None
    return subprocess.run(
        [
            NODE,
            str(JS_DIR / "history_editor.mjs"),
            f"ws://127.0.0.1:{port}/realtime",
            RECORD,
            bearer,
            mode,
            json.dumps(arg),
        ],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def watcher(port: int, bearer: str, arg: object) -> subprocess.Popen[str]:
    assert NODE is not None
    proc = subprocess.Popen(
        [
            NODE,
            str(JS_DIR / "history_editor.mjs"),
            f"ws://127.0.0.1:{port}/realtime",
            RECORD,
            bearer,
            "watch",
            json.dumps(arg),
        ],
        cwd=JS_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "synced", proc.stderr.read() if proc.stderr else ""
    return proc


def test_three_users_history_blame_and_a_restore_live_editors_see(tmp_path: Path) -> None:
    port, http_port = processes.free_port(), processes.free_port()
    admin_file = tmp_path / "admin-token"
    admin_file.write_text("admin-" + "a" * 40)
    daemon = processes.spawn(
        tmp_path,
        f"host: 127.0.0.1\nport: {port}\n"
        f"http:\n  port: {http_port}\n  admin_token_file: {admin_file}\n"
        "logging:\n  level: warning\n"
        "snapshots:\n  max_updates: 5\n  interval: 0\n  flush_ms: 20\n"
        "history:\n  version_idle: 0.3\n",
        port=port,
        env={"CIVICREALTIME_JWT_SECRET": SECRET},
    )
    api = Api(http_port)
    admin = admin_file.read_text()
    alice, bob, carol = token("alice"), token("bob"), token("carol")
    clerk = token("clerk", "records:history", role="public")  # may read, not edit
    try:
        sessions = [
            (alice, [TITLE, FREE, LEASH]),
            (bob, [TITLE, FREE, LEASH_PARKS, FIREWORKS]),
            (carol, [TITLE, PAID, LEASH_PARKS, FIREWORKS]),
        ]
        for number, (bearer, blocks) in enumerate(sessions, start=1):
            done = run_js(port, bearer, "edit", blocks)
            assert done.returncode == 0, done.stderr
            api.versions_until(admin, number)

        versions = api.versions_until(clerk, 3)
        assert [[a["user"] for a in v["authors"]] for v in versions] == [
            ["alice"],
            ["bob"],
            ["carol"],
        ]
        assert versions[0]["authors"][0]["name"] == "Alice"
        assert all(v["authors"][0]["changes"] >= 1 for v in versions)
        status, only_bob = api.call("/history?user=bob", clerk)
        assert status == 200
        assert [v["version"] for v in only_bob["versions"]] == [2]
        status, after = api.call(f"/history?since={versions[2]['started_at']}", clerk)
        assert [v["version"] for v in after["versions"]] == [3]

        status, shown = api.call("/history/1", clerk)
        assert status == 200 and shown["format"] == "markdown"
        assert shown["content"] == (
            "# Bylaw 12\n\nArticle 1: parking is free.\n\nArticle 2: dogs on a leash.\n"
        )

        status, diff = api.call("/history/2/diff/3", clerk)
        assert status == 200
        assert "-Article 1: parking is free." in diff["unified"]
        assert "+Article 1: parking costs 2 EUR an hour." in diff["unified"]
        assert diff["summary"] == {"added": 0, "removed": 0, "changed": 1, "unchanged": 3}
        assert diff["blocks"][0]["before"] == "Article 1: parking is free."

        status, blame = api.call("/blame", clerk)
        assert status == 200
        owners = {block["text"]: block["user"] for block in blame["blocks"]}
        assert owners == {
            "# Bylaw 12": "alice",
            "Article 1: parking costs 2 EUR an hour.": "carol",
            "Article 2: dogs on a leash in parks.": "bob",
            "Article 3: no fireworks.": "bob",
        }
        assert {block["version"] for block in blame["blocks"]} == {1, 2, 3}

        # Refusals: an editor's token alone, unknown versions and rooms, a bad body.
        assert api.call("/history", carol)[0] == 403
        assert api.call("/restore", clerk, {"version": 2})[0] == 403  # no edit permission
        assert api.call("/history/9", clerk)[0] == 404
        assert api.call("/restore", admin, {"version": 9})[0] == 404
        status, bad = api.call("/restore", admin, {"version": "two"})
        assert status == 400 and "whole number" in bad["error"]
        missing = Api(http_port)
        missing.base = missing.base.replace(RECORD, "no-such-record")
        assert missing.call("/history", admin)[0] == 404

        # Restore version 2 while two editors are connected: both see it at once.
        expected = {"has": ["parking is free", "in parks", "fireworks"], "lacks": ["EUR"]}
        live = [watcher(port, alice, expected), watcher(port, bob, expected)]
        restorer = token("dana", "records:history", "records:edit")
        status, restored = api.call("/restore", restorer, {"version": 2})
        assert status == 200, restored
        assert restored["restored"] == 2 and restored["changed"] is True
        for proc in live:
            out, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err
            assert json.loads(out.strip()) == [TITLE, FREE, LEASH_PARKS, FIREWORKS]

        versions = api.versions_until(admin, 4)
        assert versions[3]["reason"] == "restore"
        assert [a["user"] for a in versions[3]["authors"]] == ["restore:dana"]
        status, same = api.call("/history/2/diff/4", admin)
        assert same["unified"] == ""  # the restore reads exactly as version 2
        status, blame = api.call("/blame", admin)
        owners = {block["text"]: block["user"] for block in blame["blocks"]}
        assert owners["Article 1: parking is free."] == "restore:dana"
        assert owners["Article 3: no fireworks."] == "bob"
        assert processes.terminate(daemon) == 0
    finally:
        processes.stop(daemon)
