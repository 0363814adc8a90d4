"""Every `civicrealtime ...` command line the README and docs/*.md show parses as shown."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from civicrealtime.cli.main import _parser

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def code_lines(text: str) -> list[str]:
    """The lines of fenced blocks and of blocks indented by four spaces."""
    lines = []
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif fenced or line.startswith("    "):
            lines.append(line.strip())
    return lines


def documented_commands() -> list[tuple[str, str]]:
    """(where, command) for each line of a code block that runs `civicrealtime`."""
    found = []
    for document in DOCUMENTS:
        for line in code_lines(document.read_text(encoding="utf-8")):
            command = line.split("  #")[0].strip()
            # Optional parts written as [--user SUB] in a usage summary are left out.
            command = re.sub(r" *\[[^\]]*\]", "", command)
            # A command, not a diagram label ("civicrealtime 127.0.0.1:3001 ...").
            if re.fullmatch(r"civicrealtime( +(--?[a-z]|[a-z][a-z-]*( |$)).*)?", command):
                found.append((document.name, command))
    return found


COMMANDS = documented_commands()


def test_the_documents_show_commands() -> None:
    assert len(COMMANDS) >= 10
    assert {where for where, _ in COMMANDS} >= {"README.md", "history.md"}


@pytest.mark.parametrize(("where", "command"), COMMANDS, ids=[c for _, c in COMMANDS])
def test_documented_command_parses(where: str, command: str) -> None:
    # Placeholders (ROOM, N, FILE) stand for values; 1 is a valid one for each of them.
    words = ["1" if re.fullmatch(r"[A-Z][A-Z_]*", word) else word for word in shlex.split(command)]
    words = words[1:]
    try:
        _parser().parse_args(words)
    except SystemExit as exc:
        # argparse exits 0 for --version and --help, 2 for anything it does not know.
        assert exc.code == 0, f"{where}: `{command}` is not a valid command line"
