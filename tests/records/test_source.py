"""The data directory index: layout, lookup, freshness, hostile ids, front matter."""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import time
from pathlib import Path

import pytest

from civicrealtime.records import RecordError, RecordIndex
from civicrealtime.records.edit import ContentError, parse_content
from civicrealtime.records.source import parse_front_matter, split_front_matter

from .helpers import DATA_DIR

RECORD = "---\nid: {id}\ntitle: T\n---\n\n# {id}\n"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(DATA_DIR, copy)
    return copy


def _age(root: Path) -> None:
    """Backdate every directory: a scan right after a change is otherwise 'racy'."""
    past = time.time() - 60
    for directory in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        os.utime(directory, (past, past))


def _write(path: Path, record_id: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(RECORD.format(id=record_id), encoding="utf-8")
    return path


def test_scan_finds_active_and_archived_records(data: Path) -> None:
    index = RecordIndex(data)
    assert index.scan() == 6
    assert index.ids() == [
        "bylaw-2019-011",
        "bylaw-2026-004",
        "minutes-2026-04-14",
        "policy-legacy-html",
        "policy-telework",
        "res-2025-118",
    ]
    assert index.lookup("bylaw-2026-004") == data / "records/bylaw/2026/bylaw-2026-004.md"
    assert index.lookup("bylaw-2019-011") == data / "archive/bylaw/2019/bylaw-2019-011.md"
    assert index.lookup("nope") is None


def test_read_splits_front_matter_and_body(data: Path) -> None:
    index = RecordIndex(data)
    index.scan()
    record = index.read("bylaw-2026-004")
    assert record.id == "bylaw-2026-004"
    assert record.front_matter["title"] == "Règlement municipal 2026-04 sur la gestion des parcs"
    assert record.front_matter["tags"] == ["parcs", "été", "règlement"]
    assert record.front_matter["updated"] == dt.datetime(2026, 4, 18, 9, 12, 45, tzinfo=dt.UTC)
    assert record.raw_front_matter.startswith("---\nid: bylaw-2026-004\n")
    assert record.raw_front_matter.endswith(
        "# Comments in the front matter survive drafts untouched.\n---\n"
    )
    assert record.body.startswith("\n# Règlement municipal 2026-04\n")
    assert record.body_line == 15
    source = record.path.read_text(encoding="utf-8")
    assert source == record.raw_front_matter + record.body
    assert not record.archived
    assert index.read("bylaw-2019-011").archived


def test_records_archive_directory_is_an_archive_root(data: Path) -> None:
    _write(data / "records/archive/policy/2020/old-policy.md", "old-policy")
    index = RecordIndex(data)
    index.scan()
    assert index.lookup("old-policy") == data / "records/archive/policy/2020/old-policy.md"
    assert index.read("old-policy").archived


def test_other_depths_hidden_and_non_markdown_files_are_ignored(data: Path) -> None:
    _write(data / "records/bylaw/stray.md", "stray")
    _write(data / "records/bylaw/2026/deep/too-deep.md", "too-deep")
    _write(data / "records/bylaw/2026/.hidden.md", "hidden")
    _write(data / "records/.git/2026/x.md", "x")
    (data / "records/bylaw/2026/notes.txt").write_text("not a record")
    index = RecordIndex(data)
    index.scan()
    for record_id in ("stray", "too-deep", ".hidden", "hidden", "x", "notes"):
        assert index.lookup(record_id) is None


def test_duplicates_active_wins_then_first_path(
    data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write(data / "archive/bylaw/2020/bylaw-2026-004.md", "bylaw-2026-004")
    _write(data / "records/zoning/2026/dup.md", "dup")
    _write(data / "records/bylaw/2026/dup.md", "dup")
    index = RecordIndex(data)
    with caplog.at_level(logging.WARNING, logger="civicrealtime.records.source"):
        index.scan()
    assert index.lookup("bylaw-2026-004") == data / "records/bylaw/2026/bylaw-2026-004.md"
    assert index.lookup("dup") == data / "records/bylaw/2026/dup.md"
    shadowed = [r.getMessage() for r in caplog.records if "duplicate" in r.getMessage()]
    assert len(shadowed) == 2


@pytest.mark.parametrize(
    "record_id",
    ["../records/bylaw/2026/bylaw-2026-004", "..", "a/b", "/etc/passwd", "", ".hidden", "x\0y"],
)
def test_ids_cannot_escape_the_data_directory(data: Path, record_id: str) -> None:
    index = RecordIndex(data)
    index.scan()
    assert index.lookup(record_id) is None
    with pytest.raises(KeyError):
        index.read(record_id)


def test_symlink_out_of_the_data_directory_is_ignored(data: Path, tmp_path: Path) -> None:
    secret = _write(tmp_path / "outside" / "secret.md", "secret")
    link = data / "records/bylaw/2026/secret.md"
    link.symlink_to(secret)
    index = RecordIndex(data)
    index.scan()
    assert index.lookup("secret") is None


def test_symlink_swapped_in_after_the_scan_is_refused(data: Path, tmp_path: Path) -> None:
    secret = _write(tmp_path / "outside" / "secret.md", "secret")
    path = data / "records/bylaw/2026/bylaw-2026-004.md"
    index = RecordIndex(data)
    index.scan()
    path.unlink()
    path.symlink_to(secret)
    with pytest.raises(KeyError):
        index.read("bylaw-2026-004")


def test_refresh_is_cheap_until_a_directory_changes(data: Path) -> None:
    _age(data)
    index = RecordIndex(data)
    index.scan()
    assert index.refresh_if_changed() is False

    new = _write(data / "records/bylaw/2026/bylaw-2026-009.md", "bylaw-2026-009")
    assert index.refresh_if_changed() is True
    assert index.lookup("bylaw-2026-009") == new

    _age(data)
    index.scan()
    new.unlink()
    assert index.refresh_if_changed() is True
    assert index.lookup("bylaw-2026-009") is None

    _age(data)
    index.scan()
    _write(data / "records/notice/2027/notice-1.md", "notice-1")  # new type and year dirs
    assert index.refresh_if_changed() is True
    assert index.lookup("notice-1") is not None


def test_refresh_sees_a_root_created_after_the_scan(tmp_path: Path) -> None:
    index = RecordIndex(tmp_path)
    index.scan()
    assert len(index) == 0
    _write(tmp_path / "records/bylaw/2026/first.md", "first")
    assert index.refresh_if_changed() is True
    assert index.lookup("first") is not None


def test_editing_a_file_needs_no_rescan(data: Path) -> None:
    index = RecordIndex(data)
    index.scan()
    path = index.lookup("policy-telework")
    assert path is not None
    path.write_text(RECORD.format(id="policy-telework").replace("title: T", "title: Nouveau"))
    assert index.read("policy-telework").front_matter["title"] == "Nouveau"


def test_files_without_front_matter_and_broken_front_matter(data: Path) -> None:
    plain = data / "records/bylaw/2026/plain.md"
    plain.write_text("# Sans en-tête\n", encoding="utf-8")
    broken = data / "records/bylaw/2026/broken.md"
    broken.write_text("---\ntitle: [oops\n---\nbody\n", encoding="utf-8")
    unclosed = data / "records/bylaw/2026/unclosed.md"
    unclosed.write_text("---\ntitle: x\n", encoding="utf-8")
    scalar = data / "records/bylaw/2026/scalar.md"
    scalar.write_text("---\njust text\n---\n", encoding="utf-8")
    index = RecordIndex(data)
    index.scan()
    record = index.read("plain")
    assert (record.front_matter, record.raw_front_matter, record.body) == (
        {},
        "",
        "# Sans en-tête\n",
    )
    for record_id in ("broken", "unclosed", "scalar"):
        with pytest.raises(RecordError):
            index.read(record_id)


def test_split_front_matter_keeps_crlf_and_bom() -> None:
    raw, body, line = split_front_matter("\ufeff---\r\nid: a\r\n---\r\nTexte\r\n")
    assert raw == "---\r\nid: a\r\n---\r\n"
    assert body == "Texte\r\n"
    assert line == 4


def test_front_matter_nested_too_deeply_is_a_record_error() -> None:
    """PyYAML recurses per bracket: a RecursionError escaped the file watcher's task and
    stopped the daemon."""
    raw = "---\na: " + "[" * 10_000 + "\n---\n"
    with pytest.raises(RecordError):
        parse_front_matter(raw)
    with pytest.raises(ContentError):
        parse_content(raw + "body\n")
