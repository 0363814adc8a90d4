"""The one atomic-write helper: old or new content, never a part, no temporary file left."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from civicrealtime import atomicfile
from civicrealtime.atomicfile import TEMP_MARK, remove_temp_files, write_atomically


def test_replaces_the_file_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "state.bin"
    write_atomically(target, b"first")
    write_atomically(target, b"second" * 10_000)
    assert target.read_bytes() == b"second" * 10_000
    assert os.listdir(tmp_path) == ["state.bin"]


def test_mode_is_exact_when_given(tmp_path: Path) -> None:
    target = tmp_path / "draft.md"
    write_atomically(target, b"x", mode=0o640)
    assert target.stat().st_mode & 0o777 == 0o640


def test_a_failed_rename_keeps_the_old_file_and_removes_the_temporary_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "state.bin"
    target.write_bytes(b"old")

    def failing_replace(src: object, dst: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk on fire"):
        write_atomically(target, b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["state.bin"]


@pytest.mark.parametrize(("durable", "expected"), [(True, 2), (False, 0)])
def test_durable_fsyncs_the_file_and_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durable: bool, expected: int
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(atomicfile.os, "fsync", counting_fsync)
    write_atomically(tmp_path / "f", b"data", durable=durable)
    assert len(synced) == expected


def test_leftovers_of_a_crash_are_removed(tmp_path: Path) -> None:
    (tmp_path / f".state.bin{TEMP_MARK}0a1b2c3d").write_bytes(b"half")
    (tmp_path / "state.bin").write_bytes(b"whole")
    remove_temp_files(tmp_path)
    assert os.listdir(tmp_path) == ["state.bin"]
