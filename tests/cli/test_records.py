"""`civicrealtime records apply ID FILE.md`: through a running daemon, or on its store."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx

from .. import processes

FIXTURES = Path(__file__).parent.parent / "records" / "fixtures" / "data"
RECORD = "res-2025-118"
ADMIN_TOKEN = "cli-admin-" + "x" * 20


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "civicrealtime", "--config", str(tmp_path / "rt.yml"), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def edited_copy(tmp_path: Path) -> Path:
    published = next((tmp_path / "civicpress").rglob(f"{RECORD}.md"))
    edited = tmp_path / "edited.md"
    edited.write_text(published.read_text() + "\nA paragraph from the command line.\n")
    return edited


def test_apply_through_the_running_daemon(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES, tmp_path / "civicpress")
    (tmp_path / "admin.token").write_text(ADMIN_TOKEN)
    port, http_port = processes.free_port(), processes.free_port()
    daemon = processes.spawn(
        tmp_path,
        f"host: 127.0.0.1\nport: {port}\ndata_dir: state\n"
        f"http:\n  host: 127.0.0.1\n  port: {http_port}\n"
        f"  admin_token_file: {tmp_path / 'admin.token'}\n"
        f"records:\n  data_dir: {tmp_path / 'civicpress'}\n",
        port=port,
    )
    try:
        applied = cli(tmp_path, "records", "apply", RECORD, str(edited_copy(tmp_path)))
        assert applied.returncode == 0, applied.stderr
        assert "changed" in applied.stdout
        again = cli(tmp_path, "records", "apply", RECORD, str(edited_copy(tmp_path)))
        assert "unchanged" in again.stdout
        broken = tmp_path / "broken.md"
        broken.write_text("---\ntitle: [oops\n---\n\nText.\n")
        refused = cli(tmp_path, "records", "apply", RECORD, str(broken))
        assert refused.returncode == 1
        assert "line 3" in refused.stderr
        content = httpx.get(
            f"http://127.0.0.1:{http_port}/admin/rooms/records:{RECORD}/content",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert content.text.rstrip().endswith("A paragraph from the command line.")
        assert processes.terminate(daemon) == 0
    finally:
        processes.stop(daemon)


def test_apply_directly_to_the_store_of_a_stopped_daemon(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES, tmp_path / "civicpress")
    (tmp_path / "rt.yml").write_text(
        f"records:\n  data_dir: {tmp_path / 'civicpress'}\ndata_dir: state\n"
    )
    unreachable = cli(tmp_path, "records", "apply", RECORD, str(edited_copy(tmp_path)))
    assert unreachable.returncode in (1, 2)
    applied = cli(tmp_path, "records", "apply", "--direct", RECORD, str(edited_copy(tmp_path)))
    assert applied.returncode == 0, applied.stderr
    shown = cli(tmp_path, "records", "show", RECORD)
    assert shown.stdout.rstrip().endswith("A paragraph from the command line.")
