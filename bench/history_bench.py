"""History at scale: a record with 100,000 logged updates from 20 users.

    python bench/history_bench.py [updates] [users] [updates_per_version]

Builds the history in a SQLite store (and the same updates in the document log), through
`HistoryRecorder` exactly as a daemon would, then times what a clerk does: list the
versions, rebuild one (the oldest, the middle and the newest), and blame today's record.
Prints the storage per update without history (the update log alone) and with it
(the log plus the history tables: attributed entries, client map and version states).

Each user types a few characters at a random place of a random paragraph of a 60-paragraph
record (one y-prosemirror paragraph per block), sometimes adds a paragraph, in bursts of
25 updates; a version closes every `updates_per_version` updates (about what two minutes
of quiet between bursts of a busy session give).
"""

from __future__ import annotations

import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
from pycrdt import Doc, XmlElement, XmlFragment, XmlText

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from civicrealtime.history_blame import changed_blocks  # noqa: E402
from civicrealtime.history_read import HistoryReader, render  # noqa: E402
from civicrealtime.persistence import SqliteStore  # noqa: E402
from civicrealtime.persistence.historyrecorder import HistoryRecorder  # noqa: E402
from civicrealtime.persistence.historystores import history_for  # noqa: E402
from civicrealtime.rooms.origin import Origin  # noqa: E402

ROOM = "records:bench"
WORDS = "the council shall adopt bylaw article parking permit fee zone notice".split()


class Clock:
    """Server time: a burst every few seconds, minutes of quiet between versions."""

    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def __call__(self) -> int:
        self.now += 250
        return self.now


def make_updates(count: int, users: int, seed: int = 7) -> list[tuple[int, bytes]]:
    rng = random.Random(seed)
    main: Doc[Any] = Doc()
    fragment = main.get("default", type=XmlFragment)
    with main.transaction():
        for i in range(60):
            fragment.children.append(XmlElement("paragraph", contents=[XmlText(f"Article {i}.")]))
    seed_update = main.get_update()
    docs: list[Doc[Any]] = []
    for _ in range(users):
        doc: Doc[Any] = Doc()
        doc.apply_update(seed_update)
        docs.append(doc)
    out: list[tuple[int, bytes]] = [(0, seed_update)]
    user = 0
    while len(out) < count:
        if len(out) % 25 == 1:
            user = rng.randrange(users)
            docs[user].apply_update(main.get_update(docs[user].get_state()))
        doc = docs[user]
        frag = doc.get("default", type=XmlFragment)
        before = doc.get_state()
        if rng.random() < 0.01:
            index = rng.randrange(len(frag.children) + 1)
            frag.children.insert(index, XmlElement("paragraph", contents=[XmlText("New.")]))
        else:
            paragraph = frag.children[rng.randrange(len(frag.children))]
            text = paragraph.children[0]
            position = rng.randrange(len(str(text)) + 1)
            text.insert(min(position, len(str(text).encode())), " " + rng.choice(WORDS))
        update = doc.get_update(before)
        main.apply_update(update)
        out.append((user, update))
    return out


def db_bytes(path: Path, tables: tuple[str, ...]) -> int:
    """Bytes the tables (and their indexes) take, from SQLite's dbstat."""
    with sqlite3.connect(path) as conn:
        try:
            rows = conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
        except sqlite3.OperationalError:
            return -1  # SQLite built without dbstat
    return sum(size for name, size in rows if any(name.startswith(t) or t in name for t in tables))


def timed(label: str, results: dict[str, list[float]], fn: Any) -> Any:
    async def wrapper() -> Any:
        started = time.perf_counter()
        value = await fn()
        results.setdefault(label, []).append(time.perf_counter() - started)
        return value

    return wrapper


async def main(count: int, users: int, per_version: int) -> None:
    started = time.perf_counter()
    updates = make_updates(count, users)
    print(f"generated {len(updates)} updates from {users} users in "
          f"{time.perf_counter() - started:.1f} s")
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "bench.sqlite3"
        async with SqliteStore(path, synchronous="NORMAL") as store:
            history = history_for(store)
            assert history is not None
            recorder = HistoryRecorder(
                history, node="bench", clock=Clock(), analyse=changed_blocks
            )
            started = time.perf_counter()
            for start in range(0, len(updates), 1000):
                chunk = updates[start : start + 1000]
                await store.append([(ROOM, data) for _, data in chunk])
                for user, data in chunk:
                    recorder.received(ROOM, data, Origin(sub=f"user{user:02d}", conn_id=user))
                await recorder.close_version(ROOM, "idle") if (
                    (start + 1000) % per_version == 0
                ) else await recorder.tick()
            await recorder.close_version(ROOM, "idle")
            print(f"stored in {time.perf_counter() - started:.1f} s")
            reader = HistoryReader(history)
            results: dict[str, list[float]] = {}
            for _ in range(5):
                versions = await timed("list versions", results, lambda: reader.versions(ROOM))()
            numbers = [versions[0].number, versions[len(versions) // 2].number, versions[-1].number]
            for number in numbers:

                async def rebuild(n: int = number) -> str:
                    state = await reader.state(ROOM, n)
                    return await trio.to_thread.run_sync(render, ROOM, [state])

                for _ in range(3):
                    await timed("rebuild a version (state + Markdown)", results, rebuild)()
            for _ in range(3):
                blame = await timed("blame", results, lambda: reader.blame(ROOM))()
            filtered = await timed(
                "list versions of one user", results, lambda: reader.versions(ROOM, user="user03")
            )()
        log_bytes = db_bytes(path, ("realtime_update_log",))
        history_bytes = db_bytes(path, ("realtime_history",))
    print(f"versions: {len(versions)} ({len(filtered)} by user03); blame blocks: {len(blame)}")
    print()
    print("| operation | median | max |")
    print("|---|---|---|")
    for label, times in results.items():
        print(f"| {label} | {statistics.median(times) * 1000:.0f} ms | {max(times) * 1000:.0f} ms |")
    total = len(updates)
    raw = sum(len(data) for _, data in updates)
    print()
    print(f"raw update bytes: {raw / total:.0f} per update")
    print(f"without history (update log): {log_bytes / total:.0f} bytes per update")
    print(f"history tables: {history_bytes / total:.0f} bytes per update")
    print(f"with history (log + history): {(log_bytes + history_bytes) / total:.0f} bytes per update")


if __name__ == "__main__":
    arguments = [int(a) for a in sys.argv[1:]]
    count, users, per_version = (arguments + [100_000, 20, 1000][len(arguments) :])[:3]
    trio.run(main, count, users, per_version)
