"""A room whose every snapshot is corrupt (issue #20, failure 5), on every store.

250 updates, a snapshot every 60 (three kept), then all three snapshot blobs corrupted:
the log was truncated by the first snapshot, so what is left of it cannot rebuild the room.
Before: the room loaded as a blank document and compaction wrote that over the real data.
"""

from __future__ import annotations

import pytest

from civicrealtime.persistence import RoomDamaged, Store, StoreWriter

from .helpers import Editor, Tamper, text_of

UPDATES = 250


async def _edited(store: Store, editor: Editor, *, every: int = 60) -> str:
    written = []
    for i in range(UPDATES):
        seqs = await store.append([("r", editor.type(f"<{i}>"))])
        written.append(f"<{i}>")
        if (i + 1) % every == 0:
            await store.write_snapshot("r", editor.state(), covers_seq=seqs[-1])
    return "".join(written)


async def test_every_snapshot_corrupt_and_a_truncated_log_is_damaged(
    store: Store, tamper: Tamper
) -> None:
    editor = Editor()
    text = await _edited(store, editor)
    infos = await store.snapshots("r")
    assert len(infos) == 3
    for info in infos:
        await tamper.corrupt_snapshot(info.id)

    loaded = await store.load("r")
    assert loaded.snapshot is None
    assert loaded.damaged
    assert text_of(loaded.updates()) == ""  # what used to be served: a blank room
    assert "all 3 snapshots failed verification" in loaded.damage()
    # Nothing writes over it unasked: not compaction, not an import, not a rebuild.
    with pytest.raises(RoomDamaged):
        await store.compact("r")
    with pytest.raises(RoomDamaged):
        await store.import_state("r", Editor().type("new"))
    with pytest.raises(RoomDamaged):
        await store.rebuild_room("r")
    assert [i.id for i in await store.snapshots("r")] == [i.id for i in infos]
    # The daemon's loader refuses it too.
    with pytest.raises(RoomDamaged):
        await StoreWriter(store).load("r")

    # The operator accepts the loss: what the log holds becomes the room; bad rows stay.
    loaded, record = await store.rebuild_room("r", accept_loss=True)
    after = await store.load("r")
    assert not after.damaged
    assert after.snapshot is not None and after.snapshot.id == record.id
    assert {i.id for i in infos} <= {i.id for i in await store.snapshots("r")}
    assert text != text_of(after.updates())


async def test_every_snapshot_corrupt_but_the_log_reaches_back_rebuilds(
    store: Store, tamper: Tamper
) -> None:
    editor = Editor()
    # Snapshots covering no log record (taken before the first flush) truncate nothing.
    written = []
    for i in range(3):
        await store.write_snapshot("r", editor.state(), covers_seq=0)
        for j in range(5):
            await store.append([("r", editor.type(f"<{i}.{j}>"))])
            written.append(f"<{i}.{j}>")
    for info in await store.snapshots("r"):
        await tamper.corrupt_snapshot(info.id)
    loaded = await store.load("r")
    assert loaded.snapshot is None and loaded.log[0].seq == 1
    assert not loaded.damaged
    assert text_of(loaded.updates()) == "".join(written)
    assert list(await StoreWriter(store).load("r"))
    _, record = await store.rebuild_room("r")
    again = await store.load("r")
    assert again.snapshot is not None and again.snapshot.id == record.id
    assert text_of(again.updates()) == "".join(written)


async def test_a_sound_older_snapshot_is_not_damage(store: Store, tamper: Tamper) -> None:
    editor = Editor()
    text = await _edited(store, editor)
    newest, *_ = await store.snapshots("r")
    await tamper.corrupt_snapshot(newest.id)
    loaded = await store.load("r")
    assert not loaded.damaged
    assert text_of(loaded.updates()) == text
