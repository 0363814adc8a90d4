"""`civicrealtime snapshots ...`: inspect and maintain the store, daemon running or not.

SQLite in WAL mode and PostgreSQL allow this next to a running daemon. The filesystem store
takes a per-directory lock for writes, so `import` and `compact` refuse with a clear error
while the daemon runs (stop it first); reads always work.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import trio

from ..config import RealtimeConfig
from ..persistence import RoomDamaged, Store, StoreError, store_for
from ..persistence.historyexport import MAGIC, export_room, import_room
from ..protocol import InvalidUpdate

T = TypeVar("T")


def add_parser(commands: argparse._SubParsersAction[Any]) -> None:
    snapshots = commands.add_parser(
        "snapshots",
        help="inspect, export, import, verify and compact stored rooms",
        description="Work on the store configured by snapshots.* (the daemon may be running).",
    )
    actions = snapshots.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="every stored room with its snapshots")
    show = actions.add_parser("show", help="one room's snapshots and log")
    show.add_argument("room", help="room key, e.g. records:abc123")
    export = actions.add_parser(
        "export",
        help="write a room's full state and its history to FILE",
        description="Write the stored state of ROOM (snapshot and update log merged) to FILE, "
        "with the room's history (attributed updates, client ids, versions) if it has any; "
        "without history FILE is one plain Yjs update. A room with no stored state is an "
        "error (exit 1), and FILE is then not written.",
    )
    export.add_argument("room", help="stored room key, e.g. records:abc123 (see `list`)")
    export.add_argument("file", type=Path, help="file to write (replaced if it exists)")
    load = actions.add_parser(
        "import",
        help="merge an export (or a plain Yjs update) from FILE into a room",
        description="Merge the state in FILE (as written by `export`, or a plain Yjs update) "
        "into ROOM and store the result as a new snapshot. A merge, never a replacement: "
        "nothing stored is lost. The history in FILE is restored when ROOM has none here.",
    )
    load.add_argument("room", help="room key to merge into, e.g. records:abc123 (created if new)")
    load.add_argument("file", type=Path, help="a Yjs update, e.g. from `snapshots export`")
    actions.add_parser("verify", help="check every snapshot and log record (progress, summary)")
    inspect = actions.add_parser(
        "inspect", help="one room's rows, each verified, and whether the room can be served"
    )
    inspect.add_argument("room")
    repair = actions.add_parser(
        "rebuild",
        help="write a new snapshot of what loads (a sound snapshot, or the whole log)",
    )
    repair.add_argument("room")
    loss = actions.add_parser(
        "accept-loss",
        help="serve a damaged room again from what its log still holds (the rest is lost)",
    )
    loss.add_argument("room")
    loss.add_argument("--yes", action="store_true", help="confirm: the lost content stays lost")
    compact = actions.add_parser("compact", help="fold update logs into new snapshots")
    compact.add_argument("rooms", nargs="*", help="rooms to compact (default: all)")


def run(config: RealtimeConfig, args: argparse.Namespace) -> int:
    """Exit code: 0 fine, 1 problems found or a command failed, 2 bad arguments."""
    if not config.snapshots.enabled:
        print("snapshots.enabled is false: there is no store to work on", file=sys.stderr)
        return 2
    location = config.snapshots.location(config.data_dir)
    store = store_for(location, keep=config.snapshots.keep)
    action: Callable[[Store, argparse.Namespace], Awaitable[int]] = {
        "list": _list,
        "show": _show,
        "export": _export,
        "import": _import,
        "verify": _verify,
        "compact": _compact,
        "inspect": _inspect,
        "rebuild": _rebuild,
        "accept-loss": _accept_loss,
    }[args.action]

    async def main() -> int:
        async with store:
            return await action(store, args)

    try:
        return trio.run(main)
    except (StoreError, InvalidUpdate, OSError) as exc:
        print(f"{store.description}: {exc}", file=sys.stderr)
        return 1


def _when(ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


async def _list(store: Store, args: argparse.Namespace) -> int:
    rooms = await store.list_rooms()
    if not rooms:
        print(f"no rooms in {store.description}")
        return 0
    print(f"{'room':40} {'snapshots':>9} {'newest':>7} {'bytes':>10}  written")
    for room in rooms:
        snapshots = await store.snapshots(room)
        if snapshots:
            newest = snapshots[0]
            print(
                f"{room:40} {len(snapshots):>9} {'v' + str(newest.version):>7} "
                f"{newest.byte_size:>10}  {_when(newest.created_at)}"
            )
        else:
            print(f"{room:40} {0:>9} {'-':>7} {'-':>10}  (update log only)")
    print(f"{len(rooms)} rooms in {store.description}")
    return 0


async def _show(store: Store, args: argparse.Namespace) -> int:
    snapshots = await store.snapshots(args.room)
    loaded = await store.load(args.room)
    if not snapshots and not loaded.log:
        print(f"no stored state for {args.room!r}", file=sys.stderr)
        return 1
    print(f"room {args.room}")
    for info in snapshots:
        flags = f" {info.compression}" if info.compression else ""
        verified = "" if info.integrity_hash else " (no hash: CivicPress row)"
        print(
            f"  v{info.version}  {_when(info.created_at)}  {info.byte_size} bytes{flags}"
            f"  covers log to seq {info.log_seq}  id={info.id}{verified}"
        )
    print(f"  update log after the loaded snapshot: {len(loaded.log)} records")
    for problem in loaded.problems:
        print(f"  PROBLEM {problem}")
    return 1 if loaded.problems else 0


async def _export(store: Store, args: argparse.Namespace) -> int:
    # An unknown room merges to an empty update (2 bytes): refuse it rather than write a
    # file that looks like a backup and holds nothing.
    if not await store.snapshots(args.room) and not (await store.load(args.room)).log:
        print(f"no stored state for {args.room!r}: nothing written", file=sys.stderr)
        return 1
    data = await export_room(store, args.room)
    await trio.Path(args.file).write_bytes(data)
    what = "state and history" if data.startswith(MAGIC) else "state (no history)"
    print(f"wrote {len(data)} bytes of {args.room} ({what}) to {args.file}")
    return 0


async def _import(store: Store, args: argparse.Namespace) -> int:
    data = await trio.Path(args.file).read_bytes()
    done = await import_room(store, args.room, data)
    record = done.record
    print(
        f"merged {args.file} into {args.room}: snapshot v{record.version}, {record.byte_size} bytes"
    )
    if done.versions:
        print(f"restored its history: {done.versions} versions")
    if done.history_skipped:
        print(
            f"history of {args.file} NOT imported: {args.room} already has history here "
            "(the state was merged; its history stays as it was)"
        )
    return 0


async def _each(
    rooms: list[str], label: str, work: Callable[[str], Awaitable[T]]
) -> list[tuple[str, T]]:
    results = []
    try:
        from tqdm import tqdm  # noqa: PLC0415 - the optional [progress] extra
    except ModuleNotFoundError:
        # No progress bar without tqdm; the summary line that follows says the same.
        for room in rooms:
            results.append((room, await work(room)))
        return results
    with tqdm(total=len(rooms), desc=label, unit="room", file=sys.stderr, leave=True) as bar:
        for room in rooms:
            results.append((room, await work(room)))
            bar.update(1)
    return results


async def _verify(store: Store, args: argparse.Namespace) -> int:
    rooms = await store.list_rooms()
    results = await _each(rooms, "verify", store.load)
    problems = [problem for _, loaded in results for problem in loaded.problems]
    snapshots = sum(1 for _, loaded in results if loaded.snapshot is not None)
    records = sum(len(loaded.log) for _, loaded in results)
    for problem in problems:
        print(f"PROBLEM {problem}")
    for room, loaded in results:
        if loaded.damaged:
            print(f"DAMAGED {room}: refused by the daemon (civicrealtime snapshots inspect {room})")
    print(
        f"verified {len(rooms)} rooms: {snapshots} loadable snapshots, {records} log records "
        f"after them, {len(problems)} problems (bad rows are kept, never deleted)"
    )
    return 1 if problems else 0


async def _compact(store: Store, args: argparse.Namespace) -> int:
    rooms = args.rooms or await store.list_rooms()

    async def fold(room: str) -> object:
        try:
            return await store.compact(room)
        except RoomDamaged as exc:
            return exc

    results = await _each(rooms, "compact", fold)
    damaged = [room for room, outcome in results if isinstance(outcome, RoomDamaged)]
    folded = [room for room, outcome in results if outcome is not None and room not in damaged]
    for room in damaged:
        print(f"DAMAGED {room}: left alone (civicrealtime snapshots inspect {room})")
    print(f"compacted {len(folded)} of {len(rooms)} rooms (the others had no log to fold)")
    return 1 if damaged else 0


async def _inspect(store: Store, args: argparse.Namespace) -> int:
    """Every snapshot with its verdict, the log's extent, and what the daemon will do."""
    loaded = await store.load(args.room)
    snapshots = await store.snapshots(args.room)
    if not snapshots and not loaded.log and not loaded.problems:
        print(f"no stored state for {args.room!r}", file=sys.stderr)
        return 1
    bad = {p.ident: p.reason for p in loaded.problems if p.what == "snapshot"}
    print(f"room {args.room}")
    for info in snapshots:
        if info.id in bad:
            verdict = f"CORRUPT ({bad[info.id]})"
        elif loaded.snapshot is not None and info.id == loaded.snapshot.id:
            verdict = "ok, loaded"
        elif loaded.snapshot is not None and info.version < loaded.snapshot.version:
            verdict = "older (not checked)"
        else:
            verdict = "ok"
        print(
            f"  snapshot v{info.version}  {_when(info.created_at)}  {info.byte_size} bytes  "
            f"covers log to seq {info.log_seq}  {verdict}  id={info.id}"
        )
    if loaded.log:
        print(
            f"  update log after it: {len(loaded.log)} records, seq {loaded.log[0].seq} to "
            f"{loaded.log[-1].seq}"
        )
    else:
        print("  update log after it: empty")
    for problem in loaded.problems:
        if problem.what == "log":
            print(f"  PROBLEM {problem}")
    if loaded.damaged:
        print(
            "DAMAGED: every snapshot failed and the log does not reach back to seq 1; the "
            "daemon refuses this room (4500 ROOM_DAMAGED). Restore the rows from a backup, "
            f"or run `civicrealtime snapshots accept-loss {args.room} --yes` to serve what "
            "the log holds."
        )
        return 1
    if loaded.snapshot is None and bad:
        print(
            "REBUILDABLE: every snapshot failed, but the log reaches back to seq 1 and the "
            "daemon rebuilds the room from it (unless a snapshot held an import alone); "
            f"`civicrealtime snapshots rebuild {args.room}` writes that as a new snapshot."
        )
        return 1
    if loaded.problems:
        print("SERVED: bad rows are skipped; the room loads from the rows that verify.")
        return 1
    print("OK")
    return 0


async def _rebuild(store: Store, args: argparse.Namespace) -> int:
    try:
        loaded, record = await store.rebuild_room(args.room)
    except RoomDamaged as exc:
        print(f"{exc}\nnothing written", file=sys.stderr)
        return 1
    source = f"snapshot v{loaded.snapshot.version}" if loaded.snapshot else "the update log"
    print(
        f"rebuilt {args.room} from {source} and {len(loaded.log)} log records: snapshot "
        f"v{record.version}, {record.byte_size} bytes (bad rows kept: {len(loaded.problems)})"
    )
    return 0


async def _accept_loss(store: Store, args: argparse.Namespace) -> int:
    if not args.yes:
        print(
            "accept-loss makes the daemon serve what the log still holds; the content only "
            "the corrupt snapshots held stays lost. Run `inspect` first, then add --yes.",
            file=sys.stderr,
        )
        return 2
    loaded, record = await store.rebuild_room(args.room, accept_loss=True)
    print(
        f"{args.room}: snapshot v{record.version} of what the log held ({record.byte_size} "
        f"bytes, from {len(loaded.log)} log records) is now the room's state; the "
        f"{len(loaded.problems)} bad rows are kept"
    )
    return 0
