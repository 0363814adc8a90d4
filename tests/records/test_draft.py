"""Drafts: front matter verbatim, body replaced, written atomically."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from civicrealtime.records import (
    RecordIndex,
    fragment_to_markdown,
    markdown_to_fragment,
    render_draft,
    write_draft_atomically,
)
from civicrealtime.records import draft as draft_module
from civicrealtime.records.source import Record

from .helpers import DATA_DIR, new_fragment


def test_render_keeps_front_matter_verbatim() -> None:
    index = RecordIndex(DATA_DIR)
    index.scan()
    record = index.read("bylaw-2026-004")
    _, fragment = new_fragment()
    markdown_to_fragment(record.body, fragment)
    body = fragment_to_markdown(fragment)
    text = render_draft(record, body)
    assert text.startswith(record.raw_front_matter)
    assert text == record.raw_front_matter + "\n" + body
    # Read back, the draft is the same record.
    reread = index.read("bylaw-2026-004")
    assert reread.front_matter == record.front_matter


def test_render_without_front_matter_and_with_crlf() -> None:
    bare = Record(id="a", path=Path("a.md"), front_matter={}, body="x\n", raw_front_matter="")
    assert render_draft(bare, "# Nouveau\n") == "# Nouveau\n"
    crlf = Record(
        id="b",
        path=Path("b.md"),
        front_matter={"id": "b"},
        body="\r\n\r\nancien\r\n",
        raw_front_matter="---\r\nid: b\r\n---\r\n",
    )
    assert render_draft(crlf, "nouveau\n") == "---\r\nid: b\r\n---\r\n\r\n\r\nnouveau\n"
    closed_at_eof = Record(
        id="c", path=Path("c.md"), front_matter={}, body="", raw_front_matter="---\nid: c\n---"
    )
    assert render_draft(closed_at_eof, "corps\n") == "---\nid: c\n---\ncorps\n"


def test_write_draft_atomically_replaces_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "bylaw-2026-004.draft.md"
    write_draft_atomically(target, "premier été ☀️\n")
    assert target.read_text(encoding="utf-8") == "premier été ☀️\n"
    assert target.stat().st_mode & 0o777 == draft_module.DEFAULT_MODE
    target.chmod(0o640)
    write_draft_atomically(target, "second\n")
    assert target.read_text(encoding="utf-8") == "second\n"
    assert target.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_failed_write_leaves_the_old_file_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "draft.md"
    target.write_text("ancien\n", encoding="utf-8")

    def failing_replace(src: object, dst: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk on fire"):
        write_draft_atomically(target, "nouveau\n")
    assert target.read_text(encoding="utf-8") == "ancien\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["draft.md"]


def test_draft_next_to_a_fixture_record(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(DATA_DIR, data)
    index = RecordIndex(data)
    index.scan()
    record = index.read("res-2025-118")
    draft_path = record.path.with_suffix(".draft.md")
    write_draft_atomically(draft_path, render_draft(record, "# Résolution modifiée\n"))
    text = draft_path.read_text(encoding="utf-8")
    assert text.startswith(record.raw_front_matter)
    assert text.endswith("\n\n# Résolution modifiée\n")
