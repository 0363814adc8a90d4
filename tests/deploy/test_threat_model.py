"""docs/security.md's threat model table: every test it cites as proof exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECURITY = ROOT / "docs" / "security.md"
# `file.py` or `file.py::test_name`, relative to tests/ (or fuzz/ when it says so).
CITATION = re.compile(r"`((?:fuzz/)?[\w/]+\.py)(?:::(\w+))?`")


def table_rows() -> list[str]:
    text = SECURITY.read_text(encoding="utf-8")
    section = text.split("### Who can do what", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]


def test_every_actor_row_cites_a_proof() -> None:
    rows = table_rows()[1:]  # the header row names the columns
    assert len(rows) >= 8
    for row in rows:
        proof = row.rstrip(" |").rsplit("|", 1)[1]
        assert CITATION.search(proof), f"no test cited in: {row[:80]}"


def test_every_cited_test_exists() -> None:
    cited = [match for row in table_rows() for match in CITATION.findall(row)]
    assert cited
    for path, name in cited:
        file = ROOT / path if path.startswith("fuzz/") else ROOT / "tests" / path
        assert file.is_file(), f"docs/security.md cites {path}, which does not exist"
        if name:
            tree = ast.parse(file.read_text(encoding="utf-8"))
            defined = {
                node.name
                for node in ast.walk(tree)
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            }
            assert name in defined, f"docs/security.md cites {path}::{name}, not defined there"
