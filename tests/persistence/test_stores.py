"""One behaviour suite for every store: SQLite, filesystem and PostgreSQL (when reachable)."""

from __future__ import annotations

import json
import time
from hashlib import sha256
from pathlib import Path

import pytest

from civicrealtime.auth.revocation import Revocation
from civicrealtime.persistence import Store, StoreError
from civicrealtime.persistence.filesystem import FilesystemStore
from civicrealtime.protocol import InvalidUpdate

from .conftest import MakeStore
from .helpers import Editor, FakeClock, Tamper, text_of


async def test_append_assigns_increasing_seqs_per_room(store: Store) -> None:
    a, b = Editor(), Editor()
    seqs = await store.append([("a", a.type("one ")), ("b", b.type("x")), ("a", a.type("two"))])
    assert seqs == [1, 1, 2]
    assert await store.append([("a", a.type(" three"))]) == [3]
    loaded = await store.load("a")
    assert [r.seq for r in loaded.log] == [1, 2, 3]
    assert loaded.snapshot is None and loaded.problems == ()
    assert text_of(loaded.updates()) == "one two three"
    assert loaded.covered_seq == 3
    assert await store.list_rooms() == ["a", "b"]


async def test_empty_room_loads_empty(store: Store) -> None:
    loaded = await store.load("nobody")
    assert loaded.updates() == [] and loaded.covered_seq == 0


async def test_snapshot_truncates_log_and_later_log_follows(make_store: MakeStore) -> None:
    store = await make_store(keep=1)
    editor = Editor()
    await store.append([("r", editor.type(w)) for w in ("a", "b", "c")])
    record = await store.write_snapshot("r", editor.state(), covers_seq=3)
    assert record.version == 1 and record.log_seq == 3
    assert record.id == f"r-1-{record.created_at}"
    await store.append([("r", editor.type("d"))])
    loaded = await store.load("r")
    assert loaded.snapshot is not None and loaded.snapshot.id == record.id
    assert [r.seq for r in loaded.log] == [4]  # seqs keep increasing after truncation
    assert text_of(loaded.updates()) == "abcd"
    report = await store.verify_all()
    assert report.ok and report.log_records == 1 and report.snapshots == 1


async def test_carry_survives_truncation(make_store: MakeStore) -> None:
    store = await make_store(keep=1)
    editor, other = Editor(), Editor()
    await store.append([("r", editor.type("abc"))])
    extra = other.type("zzz")  # pretend: a raw update the document holds as pending
    await store.write_snapshot("r", editor.state(), covers_seq=1, carry=[extra])
    loaded = await store.load("r")
    assert [r.data for r in loaded.log] == [extra]
    assert loaded.log[0].seq == 2


async def test_pending_updates_move_behind_the_snapshot(make_store: MakeStore) -> None:
    store = await make_store(keep=1)
    editor = Editor()
    first = editor.type("hello")
    second = editor.type(" world")
    # The log holds `second` only: its dependency `first` never arrived.
    await store.append([("r", second)])
    state_without = Editor().state()  # an empty document: `second` stayed pending in it
    await store.write_snapshot("r", state_without, covers_seq=1)
    loaded = await store.load("r")
    assert [r.data for r in loaded.log] == [second]
    assert loaded.log[0].seq > loaded.covered_seq - 1
    assert text_of([*loaded.updates(), first]) == "hello world"


async def test_retention_keeps_newest_and_log_back_to_oldest_kept(make_store: MakeStore) -> None:
    store = await make_store(keep=2)
    editor = Editor()
    for round_ in range(4):
        seqs = await store.append([("r", editor.type(f"{round_}"))])
        await store.write_snapshot("r", editor.state(), covers_seq=seqs[-1])
    infos = await store.snapshots("r")
    assert [i.version for i in infos] == [4, 3]
    assert [i.log_seq for i in infos] == [4, 3]
    # Seq 4 stays: falling back to version 3 must still find it.
    report = await store.verify_all()
    assert report.log_records == 1


async def test_falls_back_from_corrupt_newest_snapshot(store: Store, tamper: Tamper) -> None:
    editor = Editor()
    await store.append([("r", editor.type("one "))])
    await store.write_snapshot("r", editor.state(), covers_seq=1)
    await store.append([("r", editor.type("two "))])
    newest = await store.write_snapshot("r", editor.state(), covers_seq=2, compress=True)
    await store.append([("r", editor.type("three"))])
    await tamper.corrupt_snapshot(newest.id)

    loaded = await store.load("r")
    assert loaded.snapshot is not None and loaded.snapshot.version == 1
    assert text_of(loaded.updates()) == "one two three"
    assert [p.ident for p in loaded.problems] == [newest.id]
    assert "snapshot" in str(loaded.problems[0])
    # The bad row is kept, listed, and reported by verify_all.
    assert newest.id in [i.id for i in await store.snapshots("r")]
    assert [p.ident for p in (await store.verify_all()).problems] == [newest.id]


async def test_falls_back_from_too_new_format(store: Store, tamper: Tamper) -> None:
    editor = Editor()
    await store.append([("r", editor.type("one "))])
    await store.write_snapshot("r", editor.state(), covers_seq=1)
    await store.append([("r", editor.type("two"))])
    newest = await store.write_snapshot("r", editor.state(), covers_seq=2)
    await tamper.set_format(newest.id, 2)
    loaded = await store.load("r")
    assert loaded.snapshot is not None and loaded.snapshot.version == 1
    assert text_of(loaded.updates()) == "one two"
    assert "newer than this build supports" in loaded.problems[0].reason


async def test_retention_never_deletes_a_corrupt_snapshot(
    make_store: MakeStore, request: pytest.FixtureRequest
) -> None:
    store = await make_store(keep=1)
    tamper = Tamper(request.node.callspec.params["backend"], store)
    editor = Editor()
    await store.append([("r", editor.type("a"))])
    first = await store.write_snapshot("r", editor.state(), covers_seq=1)
    await tamper.corrupt_snapshot(first.id)
    await store.append([("r", editor.type("b"))])
    second = await store.write_snapshot("r", editor.state(), covers_seq=2)
    await store.append([("r", editor.type("c"))])
    third = await store.write_snapshot("r", editor.state(), covers_seq=3)
    ids = [i.id for i in await store.snapshots("r")]
    assert ids == [third.id, first.id]  # the sound old one went, the corrupt one stayed
    assert second.id not in ids


async def test_corrupt_log_record_is_skipped_reported_and_kept(
    make_store: MakeStore, request: pytest.FixtureRequest
) -> None:
    store = await make_store(keep=1)
    tamper = Tamper(request.node.callspec.params["backend"], store)
    editor = Editor()
    updates = [editor.type(w) for w in ("a", "b", "c")]
    await store.append([("r", u) for u in updates])
    await tamper.corrupt_log("r", 2)
    loaded = await store.load("r")
    assert [r.seq for r in loaded.log] == [1, 3]
    assert [p.what for p in loaded.problems] == ["log"]
    assert "seq 2" in str(loaded.problems[0])
    await store.write_snapshot("r", editor.state(), covers_seq=3)
    # Still there after the truncation (the filesystem store moves it to a quarantine file).
    problems = (await store.verify_all()).problems
    assert [(p.room_id, p.what) for p in problems] == [("r", "log")]


async def test_sweep_removes_old_dead_rooms_only(make_store: MakeStore, clock: FakeClock) -> None:
    store = await make_store()
    editor = Editor()
    for room in ("old", "live", "log-only"):
        await store.append([(room, editor.type(room))])
    await store.write_snapshot("old", editor.state(), covers_seq=1)
    await store.write_snapshot("live", editor.state(), covers_seq=1)
    cutoff = clock.now + 1
    clock.now += 10_000
    await store.append([("recent", editor.type("r"))])
    assert await store.sweep(cutoff, live_rooms={"live"}) == 2
    assert await store.list_rooms() == ["live", "recent"]
    assert (await store.load("old")).updates() == []
    assert await store.sweep(cutoff, live_rooms=set()) == 1  # "live" is no longer live


async def test_export_compact_import(make_store: MakeStore) -> None:
    store = await make_store(keep=1)
    editor = Editor()
    await store.append([("r", editor.type(f"{i},")) for i in range(50)])
    exported = await store.export_state("r")
    assert text_of([exported]) == str(editor)

    compacted = await store.compact("r")
    assert compacted is not None and compacted.log_seq == 50
    loaded = await store.load("r")
    assert loaded.log == () and text_of(loaded.updates()) == str(editor)
    assert await store.compact("r") is None  # nothing left to fold

    other = Editor()
    imported = await store.import_state("r", other.type("more"))
    assert imported.version == 2
    merged = text_of((await store.load("r")).updates())
    assert "more" in merged and "49," in merged
    with pytest.raises(InvalidUpdate):
        await store.import_state("r", b"\xff\xff\xff\xff")


async def test_compressed_snapshot_round_trips(store: Store) -> None:
    editor = Editor()
    editor.type("x" * 10_000)
    record = await store.write_snapshot("r", editor.state(), covers_seq=0, compress=True)
    assert record.compression == "zlib" and len(record.data) < record.byte_size
    info = (await store.snapshots("r"))[0]
    assert info.compression == "zlib" and info.stored_size == len(record.data)
    assert text_of((await store.load("r")).updates()) == str(editor)


async def test_data_survives_reopening(make_store: MakeStore) -> None:
    store = await make_store()
    editor = Editor()
    await store.append([("r", editor.type("kept"))])
    await store.close()
    again = await make_store()
    assert text_of((await again.load("r")).updates()) == "kept"
    await again.ping()


# --- revoked sessions --------------------------------------------------------------------


def _user(subject: str, at: float) -> Revocation:
    return Revocation(kind="user", subject=subject, revoked_at=at, until=None)


def _token(subject: str, at: float, until: float) -> Revocation:
    return Revocation(kind="token", subject=subject, revoked_at=at, until=until)


async def test_revocations_survive_reopening(make_store: MakeStore) -> None:
    now = time.time()
    store = await make_store()
    assert await store.load_revocations() == []
    await store.save_revocation(_user("alice", now - 10))
    await store.save_revocation(_token("jti-1", now - 5, now + 3600))
    await store.close()
    again = await make_store()
    assert await again.load_revocations() == [
        _user("alice", now - 10),
        _token("jti-1", now - 5, now + 3600),
    ]


async def test_a_new_revocation_replaces_the_one_kept_for_the_same_subject(
    store: Store,
) -> None:
    now = time.time()
    await store.save_revocation(_user("alice", now - 10))
    await store.save_revocation(_user("alice", now))
    # A user id and a token id may be the same string: they are different subjects.
    await store.save_revocation(_token("alice", now, now + 60))
    assert await store.load_revocations() == [_user("alice", now), _token("alice", now, now + 60)]


async def test_expired_token_revocations_are_left_out_then_dropped(store: Store) -> None:
    now = time.time()
    await store.save_revocation(_token("old", now - 100, now - 1))
    assert await store.load_revocations() == []
    await store.save_revocation(_token("new", now, now + 60))  # drops what has expired
    assert await store.load_revocations() == [_token("new", now, now + 60)]


async def test_unreadable_revocations_file_is_an_error_not_an_empty_list(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)
    await store.open()
    try:
        (tmp_path / "realtime" / "revocations.json").write_text('{"revocations": [{"kind": ')
        with pytest.raises(StoreError, match=r"revocations\.json is not a revocations file"):
            await store.load_revocations()
        with pytest.raises(StoreError):
            await store.save_revocation(_user("alice", time.time()))  # never overwrites it
    finally:
        await store.close()


async def test_an_older_revocation_written_last_does_not_win(store: Store) -> None:
    """A write that commits late (retried after a timeout) must not shorten a revocation."""
    now = time.time()
    await store.save_revocation(_user("alice", now))
    await store.save_revocation(_user("alice", now - 60))
    await store.save_revocation(_token("t", now, now + 600))
    await store.save_revocation(_token("t", now - 60, now + 60))
    assert await store.load_revocations() == [_user("alice", now), _token("t", now, now + 600)]


@pytest.mark.parametrize(
    "item",
    [
        {"kind": "group", "subject": "x", "revoked_at": 1.0, "until": None},
        {"kind": "user", "subject": "x", "revoked_at": "NaN", "until": None},
        {"kind": "token", "subject": "x", "revoked_at": 1.0, "until": "Infinity"},
        {"kind": "user", "subject": "x"},
    ],
)
async def test_revocations_file_entries_are_checked(tmp_path: Path, item: object) -> None:
    store = FilesystemStore(tmp_path)
    await store.open()
    try:
        path = tmp_path / "realtime" / "revocations.json"
        path.write_text(json.dumps({"format": 1, "revocations": [item]}))
        with pytest.raises(StoreError, match="not a revocations file"):
            await store.load_revocations()
    finally:
        await store.close()


async def test_discarded_pending_updates_are_deleted_not_moved(make_store: MakeStore) -> None:
    store = await make_store()
    editor, stray = Editor(), Editor()
    stray.type("never ")
    dropped = stray.type("resolved")  # waits for "never ", which is never stored
    kept_pending = Editor()
    kept_pending.type("other ")
    kept = kept_pending.type("base")
    await store.append([("r", editor.type("one")), ("r", dropped), ("r", kept)])
    await store.write_snapshot(
        "r", editor.state(), covers_seq=3, discard=frozenset({sha256(dropped).digest()})
    )
    data = [record.data for record in (await store.load("r")).log]
    assert dropped not in data
    assert kept in data  # pending, not discarded: carried behind the snapshot as before
