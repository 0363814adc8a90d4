"""Filesystem only: CivicPress's layout, atomic writes, the log file, safe names."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from civicrealtime.persistence import FilesystemStore, StoreBusy, StoreReadOnly
from civicrealtime.persistence.filenames import MAX_NAME, room_from_name, safe_name

from .helpers import Editor, text_of

HOSTILE = [
    "../x",
    "..",
    ".",
    "CON",
    "con",
    "con.txt",
    "Nul",
    "lpt1",
    "a/b",
    "a\\b",
    "a:b",
    "records:abc",
    "Abc",
    "abc",
    "trailing.",
    ".hidden",
    "sp ace",
    "ünïcødé",
    "e\u0301",  # decomposed é
    "\u00e9",  # composed é
    "%41",
    "A",
    "",
    "x" * 255,
    "x" * 254 + "y",
    "é" * 127,
    "nul\x00byte",
]


def test_hostile_room_keys_map_to_safe_distinct_names() -> None:
    names = [safe_name(key) for key in HOSTILE]
    assert len(set(names)) == len(HOSTILE)
    assert len({name.lower() for name in names}) == len(HOSTILE)  # case-insensitive disks
    for key, name in zip(HOSTILE, names, strict=True):
        assert name not in (".", "..")
        assert all(ch.isascii() and (ch.isalnum() or ch in "._-%~") for ch in name), name
        assert not name.startswith(".") and not name.endswith(".")
        assert name.split(".")[0].lower() not in {"con", "prn", "aux", "nul", "lpt1"}
        assert len(name) <= MAX_NAME
        assert room_from_name(name) in (key, None)
        if len(key) < 30:
            assert room_from_name(name) == key


async def test_hostile_room_keys_round_trip_through_the_store(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)
    await store.open()
    for index, key in enumerate(HOSTILE):
        editor = Editor()
        await store.append([(key, editor.type(f"room {index}"))])
        await store.write_snapshot(key, editor.state(), covers_seq=1)
        await store.append([(key, editor.type("!"))])
    assert sorted(await store.list_rooms()) == sorted(HOSTILE)
    for index, key in enumerate(HOSTILE):
        assert text_of((await store.load(key)).updates()) == f"room {index}!"
    # Everything stayed inside the store's directory.
    assert os.listdir(tmp_path) == ["realtime"]
    await store.close()


async def test_layout_matches_civicpress(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)
    await store.open()
    editor = Editor()
    editor.type("hello")
    record = await store.write_snapshot("doc-1", editor.state(), covers_seq=0)
    base = tmp_path / "realtime" / "snapshots" / "doc-1" / f"doc-1-1-{record.created_at}"
    assert base.with_name(base.name + ".snapshot").read_bytes() == editor.state()
    meta = json.loads(base.with_name(base.name + ".meta.json").read_text())
    assert meta == {
        "id": record.id,
        "room_id": "doc-1",
        "version": 1,
        "integrity_hash": record.integrity_hash,
        "format_version": 1,
        "byte_size": len(editor.state()),
        "created_at": record.created_at,
        "compression": None,
        "log_seq": 0,
    }
    await store.close()


def civicpress_snapshot(root: Path, room: str, name: str, state: bytes) -> None:
    """A snapshot as CivicPress wrote it before it added the .meta.json sidecar."""
    room_dir = root / "realtime" / "snapshots" / room
    room_dir.mkdir(parents=True)
    (room_dir / name).write_bytes(state)


async def test_reads_a_civicpress_snapshot_without_sidecar(tmp_path: Path) -> None:
    editor = Editor()
    editor.type("legacy")
    civicpress_snapshot(tmp_path, "old-room", "old-room-7-1600000000000.snapshot", editor.state())
    store = FilesystemStore(tmp_path, read_only=True)
    await store.open()
    loaded = await store.load("old-room")
    assert loaded.snapshot is not None and loaded.snapshot.version == 7
    assert loaded.snapshot.created_at == 1600000000000
    assert text_of(loaded.updates()) == "legacy"
    assert await store.list_rooms() == ["old-room"]
    with pytest.raises(StoreReadOnly):
        await store.append([("old-room", b"\x00\x00")])
    await store.close()


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


async def test_atomic_writes_leave_no_temporary_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FilesystemStore(tmp_path, keep=1)
    await store.open()
    editor = Editor()
    for word in ("a", "b", "c"):
        seqs = await store.append([("r", editor.type(word))])
        await store.write_snapshot("r", editor.state(), covers_seq=seqs[-1], carry=[b"\x00\x00"])
    before = files_under(tmp_path)
    assert not [name for name in before if ".tmp-" in name]

    def failing_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(Exception, match="No space left"):
        await store.write_snapshot("r", editor.state(), covers_seq=3)
    with pytest.raises(Exception, match="No space left"):
        await store.append([("r", editor.type("d"))])
    monkeypatch.undo()
    assert files_under(tmp_path) == before  # no temp file, no half-written snapshot
    assert text_of((await store.load("r")).updates()) == "abc"
    await store.close()


async def test_torn_last_record_is_ignored_and_later_appends_are_found(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path, keep=1)
    await store.open()
    editor = Editor()
    await store.append([("r", editor.type(w)) for w in ("one ", "two ", "three ")])
    log_file = tmp_path / "realtime" / "log" / "r.log"
    # A crash in the middle of the last append: its record is cut short.
    log_file.write_bytes(log_file.read_bytes()[:-5])
    await store.close()

    store = FilesystemStore(tmp_path, keep=1)
    await store.open()
    loaded = await store.load("r")
    assert [r.seq for r in loaded.log] == [1, 2]
    assert "torn record" in str(loaded.problems[0])
    await store.append([("r", editor.type("four"))])
    loaded = await store.load("r")
    # The torn record was never acknowledged, so its seq is handed out again.
    assert [r.seq for r in loaded.log] == [1, 2, 3]
    assert len(loaded.problems) == 1

    # The next snapshot rewrites the log; the unreadable bytes go to a quarantine file.
    await store.write_snapshot("r", editor.state(), covers_seq=3)
    assert (await store.load("r")).problems == ()
    quarantine = tmp_path / "realtime" / "log" / "r.log.quarantine"
    assert quarantine.stat().st_size > 0
    assert [p.ident for p in (await store.verify_all()).problems] == ["quarantine"]
    await store.close()


async def test_one_writer_per_directory(tmp_path: Path) -> None:
    first = FilesystemStore(tmp_path)
    await first.open()
    with pytest.raises(StoreBusy, match="another process"):
        await FilesystemStore(tmp_path).open()
    reader = FilesystemStore(tmp_path, read_only=True)
    await reader.open()  # readers take no lock
    await first.close()
    second = FilesystemStore(tmp_path)
    await second.open()
    await second.close()
