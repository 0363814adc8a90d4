"""Measurements for docs/persistence.md (a script, not a test: it prints, it asserts nothing).

    python -m tests.persistence.bench_sqlite [DIRECTORY]

1. Group commit: rows/s appending small updates to SQLite with one transaction per flush
   (100 updates per append) against one transaction per update, for synchronous FULL and
   NORMAL.
2. Cold load: a room whose document is about 1 MB, written as a snapshot plus 1,000 log
   records, read back through a freshly opened store and applied into a new Doc.
3. Compaction of 20,000 log records.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
from pycrdt import Doc

from civicrealtime.persistence import SqliteStore

from .helpers import Editor

UPDATES = 2000


def updates(count: int) -> list[bytes]:
    editor = Editor()
    return [editor.type(f"word{i} ") for i in range(count)]


async def group_commit(directory: Path, synchronous: str) -> None:
    data = updates(UPDATES)
    for label, batch_size in (("1 transaction per flush (100 updates)", 100), ("1 per update", 1)):
        path = directory / f"gc-{synchronous}-{batch_size}.sqlite3"
        async with SqliteStore(path, synchronous=synchronous) as store:  # type: ignore[arg-type]
            started = time.perf_counter()
            for start in range(0, UPDATES, batch_size):
                await store.append([("room", u) for u in data[start : start + batch_size]])
            elapsed = time.perf_counter() - started
        print(f"  synchronous={synchronous:6} {label:40} {UPDATES / elapsed:10.0f} rows/s")


async def cold_load(directory: Path) -> None:
    editor = Editor()
    chunk = "lorem ipsum dolor sit amet " * 40
    while len(editor.state()) < 1_000_000:
        editor.type(chunk)
    log = [editor.type(f"edit {i} ") for i in range(1000)]
    path = directory / "cold.sqlite3"
    async with SqliteStore(path) as store:
        await store.write_snapshot("big", editor.state(), covers_seq=0)
        await store.append([("big", u) for u in log])
    size = len(editor.state())
    for run in range(3):
        started = time.perf_counter()
        async with SqliteStore(path) as store:
            loaded = await store.load("big")
        read = time.perf_counter()
        doc: Doc[Any] = Doc()
        for update in loaded.updates():
            doc.apply_update(update)
        done = time.perf_counter()
        print(
            f"  run {run + 1}: {size / 1e6:.2f} MB state + {len(loaded.log)} log records: "
            f"open+read {1000 * (read - started):.1f} ms, apply {1000 * (done - read):.1f} ms"
        )


async def compaction(directory: Path) -> None:
    async with SqliteStore(directory / "compact.sqlite3", keep=1) as store:
        data = updates(20_000)
        for start in range(0, len(data), 1000):
            await store.append([("room", u) for u in data[start : start + 1000]])
        started = time.perf_counter()
        record = await store.compact("room")
        elapsed = time.perf_counter() - started
        assert record is not None
        print(f"  20,000 log records folded into a {record.byte_size} B snapshot: {elapsed:.2f} s")


async def main(directory: Path) -> None:
    print(f"directory: {directory}")
    print("group commit:")
    for synchronous in ("FULL", "NORMAL"):
        await group_commit(directory, synchronous)
    print("cold load of a ~1 MB room:")
    await cold_load(directory)
    print("compaction:")
    await compaction(directory)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        trio.run(main, Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as temp:
            trio.run(main, Path(temp))
