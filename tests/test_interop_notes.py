"""The `notes` example room type, from configuration alone, edited by a real Yjs client.

The daemon runs as a subprocess with the example's own configuration file
(examples/notes/realtime.yml, with a free port and a temporary notes directory) and the
example's source directory on PYTHONPATH: no code of the daemon names the type. yjs +
y-websocket open a notes room seeded from its file, edit it, and the edit reaches the file.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml

from civicrealtime.auth.minting import mint_token

from . import processes
from .interop_support import needs_node, run_node_json, wait_for_file

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "notes"
SECRET = "notes-interop-" + "n" * 40

pytestmark = needs_node("y-websocket")


def example_config(port: int, notes: Path) -> str:
    """The shipped example configuration, on a free port, with a temporary directory."""
    raw = yaml.safe_load((EXAMPLE / "realtime.yml").read_text())
    raw["port"] = port
    raw["http"] = {"port": 0}
    raw["snapshots"] = {"max_updates": 1, "interval": 0, "flush_ms": 20}
    raw["room_types"]["notes"]["options"]["directory"] = str(notes)
    return yaml.safe_dump(raw)


def test_a_yjs_client_edits_a_notes_room_and_the_edit_reaches_its_file(tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    shutil.copytree(EXAMPLE / "notes", notes)
    seeded = (notes / "welcome.txt").read_text()
    port = processes.free_port()
    python_path = os.pathsep.join(
        p for p in (str(EXAMPLE / "src"), os.environ.get("PYTHONPATH", "")) if p
    )
    daemon = processes.spawn(
        tmp_path,
        example_config(port, notes),
        port=port,
        env={"CIVICREALTIME_JWT_SECRET": SECRET, "PYTHONPATH": python_path},
    )
    try:
        # `editor` may edit notes because the example's `roles` says so (auth.roles
        # grants it only records permissions).
        token = mint_token(SECRET.encode(), user="ed", role="editor")
        addition = "Ajouté par un client Yjs ✓"
        seen = run_node_json(
            "notes_client.mjs",
            f"ws://127.0.0.1:{port}/realtime",
            "welcome",
            token,
            addition,
        )
        assert seen == {"text": seeded}
        saved = notes / "welcome.txt"
        wait_for_file(
            saved,
            lambda text: text == seeded + addition,
            lambda: f"the file never received the edit: {saved.read_text()!r}",
        )
        assert processes.terminate(daemon) == 0
    finally:
        processes.stop(daemon)
