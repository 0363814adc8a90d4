"""docs/architecture.md against src/: the module table and the task tree name what exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "civicrealtime"
ARCHITECTURE = ROOT / "docs" / "architecture.md"


def module_rows() -> list[tuple[list[str], str]]:
    """(names in the first cell, the whole row) for each row of the "Modules" table."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    section = text[text.index("## Modules") : text.index("## Task tree")]
    rows = []
    for line in section.splitlines():
        cells = line.split("|")
        if len(cells) < 3 or not cells[1].strip().startswith("`"):
            continue
        rows.append((re.findall(r"`([^`]+)`", cells[1]), line))
    return rows


def test_every_top_level_module_and_package_is_in_the_table() -> None:
    named = {name for names, _ in module_rows() for name in names}
    present = {
        path.name + "/" if path.is_dir() else path.name
        for path in PACKAGE.iterdir()
        if not path.name.startswith(("_", ".")) or path.name == "__main__.py"
        if path.is_dir() or path.suffix == ".py"
    }
    present.discard("static/")
    assert present - named == set(), "modules missing from docs/architecture.md"
    assert named - present == set(), "docs/architecture.md names modules that do not exist"


def test_every_file_a_package_row_names_exists_in_that_package() -> None:
    for names, row in module_rows():
        packages = [name for name in names if name.endswith("/")]
        if len(packages) != 1:
            continue
        directory = PACKAGE / packages[0]
        for file in re.findall(r"`([a-z_]+\.py)`", row):
            assert (directory / file).is_file(), f"{packages[0]}{file} in docs/architecture.md"


def test_the_task_tree_names_classes_and_functions_that_exist() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    tree = text[text.index("```mermaid") :]
    tree = tree[: tree.index("```", 3)]
    source = "\n".join(path.read_text(encoding="utf-8") for path in PACKAGE.rglob("*.py"))
    labels = re.findall(r'\["([^"]+)"\]', tree)
    owners = [m for label in labels for m in re.findall(r"\b([A-Z]\w+)\.(\w+)\b", label)]
    assert len(owners) >= 8
    for cls, method in owners:
        assert re.search(rf"^class {cls}\b", source, re.MULTILINE), cls
        assert re.search(rf"def {method}\(", source), f"{cls}.{method}"
    functions = [m for label in labels for m in re.findall(r"^(\w+_\w+): ", label)]
    for function in functions:
        assert re.search(rf"def {function}\(", source), function


def test_the_persistence_module_table_lists_every_module_of_the_package() -> None:
    text = (ROOT / "docs" / "persistence.md").read_text(encoding="utf-8")
    section = text[text.index("## Modules") :]
    section = section[: section.index("\n## ")]
    named = {
        name
        for line in section.splitlines()
        if line.startswith("| `")
        for name in re.findall(r"`([a-z_]+\.py)`", line)
    }
    present = {path.name for path in (PACKAGE / "persistence").glob("[a-z]*.py")}
    assert present - named == set(), "persistence modules missing from docs/persistence.md"
    assert named - present == set(), "docs/persistence.md names modules that do not exist"
