"""The demo page's pure parts, in Node without a browser: the close-code badge and the schema.

The schema is a wire contract: y-prosemirror drops (from the shared document, for everyone)
any node or mark the editor's schema does not know, so the demo's names, attribute order and
defaults must be the ones `civicrealtime.records.schema` mirrors from the CivicPress editor.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from civicrealtime.records import schema as records_schema

from .support import E2E_DIR, INSTALL_HINT, NODE, NODE_MODULES, REPO

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(NODE is None, reason="node (Node.js) not found on PATH"),
]


def _node(*args: str) -> subprocess.CompletedProcess[str]:
    assert NODE is not None
    return subprocess.run(
        [NODE, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_close_codes_map_like_the_civicpress_editor() -> None:
    result = _node("--test", str(E2E_DIR / "close_codes.test.mjs"))
    print(result.stdout)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"


def test_saved_indicator_labels() -> None:
    result = _node("--test", str(E2E_DIR / "saved_label.test.mjs"))
    print(result.stdout)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"


@pytest.mark.skipif(
    not (NODE_MODULES / "prosemirror-model").is_dir(),
    reason=f"no prosemirror-model: {INSTALL_HINT}",
)
def test_schema_matches_the_records_schema() -> None:
    result = _node(str(E2E_DIR / "dump_schema.mjs"))
    assert result.returncode == 0, result.stderr
    spec = json.loads(result.stdout)
    nodes = {n["name"]: n for n in spec["nodes"]}
    marks = [m["name"] for m in spec["marks"]]

    assert set(nodes) - {"doc"} == set(records_schema.KNOWN_NODES)
    assert tuple(marks) == records_schema.MARKS  # definition order is ProseMirror's mark rank
    assert {n for n, s in nodes.items() if s["group"] == "block"} == records_schema.BLOCK_NODES
    inline = {n for n, s in nodes.items() if s["inline"] and n != "text"}
    assert inline == records_schema.INLINE_ATOMS
    assert nodes[records_schema.CIVIC_REF]["atom"]

    def expected(table: dict[str, tuple[tuple[str, object], ...]], name: str) -> list[object]:
        return [list(pair) for pair in table.get(name, ())]

    def actual(entry: dict[str, object]) -> list[object]:
        # A required attribute (no default) is listed with None in schema.py.
        return [
            [name, attr.get("default")]  # type: ignore[union-attr]
            for name, attr in entry["attrs"]  # type: ignore[union-attr]
        ]

    for name, entry in nodes.items():
        assert actual(entry) == expected(records_schema.NODE_ATTRS, name), name
    for entry in spec["marks"]:
        assert actual(entry) == expected(records_schema.MARK_ATTRS, entry["name"]), entry["name"]
