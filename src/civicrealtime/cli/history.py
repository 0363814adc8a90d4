"""`civicrealtime history list|show|diff|blame|restore ROOM ...`.

The reading commands open the configured store read-only (they work beside a running
daemon, also on the filesystem store, whose write lock they do not take). `restore` asks
the running daemon through its ops port (http.host, http.port) with the admin token of
`http.admin_token_file` or $CIVICREALTIME_ADMIN_TOKEN: only the daemon can change a live
room so that its editors see it at once.

Exit codes: 0 done; 1 unknown room or version, or a failure (the message says which);
2 bad arguments or configuration.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import trio

from ..config import RealtimeConfig
from ..history_read import HistoryReader, NotFound, Unsupported
from ..persistence import FilesystemStore, SqliteStore, Store, StoreError, store_for
from ..persistence.historystores import history_for
from ..protocol import InvalidUpdate

ENV_ADMIN_TOKEN = "CIVICREALTIME_ADMIN_TOKEN"
HTTP_TIMEOUT = 60.0


def add_parser(commands: argparse._SubParsersAction[Any]) -> None:
    history = commands.add_parser(
        "history",
        help="who changed a room, its versions, diffs, blame, and restoring one",
        description="Read a room's history from the store configured by snapshots.*, or "
        "restore a version through the running daemon.",
    )
    actions = history.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="a room's versions with their authors")
    listing.add_argument("room", help="room key, e.g. records:abc123")
    listing.add_argument("--user", help="only versions this user (token sub) changed")
    listing.add_argument("--since", help="only versions ending at or after (ISO 8601, UTC)")
    listing.add_argument("--until", help="only versions starting at or before (ISO 8601)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    show = actions.add_parser("show", help="one version (Markdown for records, else JSON)")
    show.add_argument("room")
    show.add_argument("version", type=int)
    diff = actions.add_parser("diff", help="unified diff between two versions, with a summary")
    diff.add_argument("room")
    diff.add_argument("a", type=int)
    diff.add_argument("b", type=int)
    blame = actions.add_parser("blame", help="the last author and time of each block")
    blame.add_argument("room")
    blame.add_argument("--json", action="store_true", help="print JSON")
    restore = actions.add_parser(
        "restore", help="make the live room equal to a version (through the daemon)"
    )
    restore.add_argument("room")
    restore.add_argument("version", type=int)
    restore.add_argument("--url", help="the ops port (default: http://<http.host>:<http.port>)")


def run(config: RealtimeConfig, args: argparse.Namespace) -> int:
    if args.action == "restore":
        return _restore(config, args)
    if not config.snapshots.enabled or not config.history.enabled:
        print("snapshots.enabled or history.enabled is false: no history", file=sys.stderr)
        return 2
    location = config.snapshots.location(config.data_dir)
    store = _read_only(location, config.snapshots.keep)
    history = history_for(store)
    if history is None:  # pragma: no cover - every configured kind keeps history
        print(f"{store.description}: keeps no history", file=sys.stderr)
        return 2
    reader = HistoryReader(history)
    action: Callable[[HistoryReader, argparse.Namespace], Awaitable[int]] = {
        "list": _list,
        "show": _show,
        "diff": _diff,
        "blame": _blame,
    }[args.action]

    async def main() -> int:
        async with store:
            return await action(reader, args)

    try:
        return trio.run(main)
    except (NotFound, Unsupported) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (StoreError, InvalidUpdate, OSError) as exc:
        print(f"{store.description}: {exc}", file=sys.stderr)
        return 1


def _read_only(location: str, keep: int) -> Store:
    if location.startswith("filesystem:"):
        return FilesystemStore(location.removeprefix("filesystem:"), keep=keep, read_only=True)
    if not location.startswith(("postgresql://", "postgres://")):
        return SqliteStore(location.removeprefix("sqlite:"), keep=keep, read_only=True)
    return store_for(location, keep=keep)


def _when(ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _ms(text: str | None, what: str) -> int | None:
    if text is None:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--{what}: not an ISO 8601 time: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1000)


async def _list(reader: HistoryReader, args: argparse.Namespace) -> int:
    versions = await reader.versions(
        args.room,
        since_ms=_ms(args.since, "since"),
        until_ms=_ms(args.until, "until"),
        user=args.user,
    )
    if args.json:
        print(json.dumps([v.as_json() for v in versions], indent=1))
        return 0
    for v in versions:
        authors = ", ".join(
            f"{a.author}{f' ({a.name})' if a.name else ''}: {a.changes}" for a in v.authors
        )
        print(
            f"{v.number:>5}  {_when(v.started_ms)} .. {_when(v.ended_ms)}  {v.reason:<8} {authors}"
        )
    if not versions:
        print("(no version matches)", file=sys.stderr)
    return 0


async def _show(reader: HistoryReader, args: argparse.Namespace) -> int:
    sys.stdout.write(await reader.show(args.room, args.version))
    return 0


async def _diff(reader: HistoryReader, args: argparse.Namespace) -> int:
    diff = await reader.diff(args.room, args.a, args.b)
    sys.stdout.write(diff.unified)
    summary = diff.summary
    print(
        f"blocks: {summary['changed']} changed, {summary['added']} added, "
        f"{summary['removed']} removed, {summary['unchanged']} unchanged",
        file=sys.stderr,
    )
    return 0


async def _blame(reader: HistoryReader, args: argparse.Namespace) -> int:
    blocks = await reader.blame(args.room)
    if args.json:
        print(json.dumps(blocks, indent=1, ensure_ascii=False))
        return 0
    for block in blocks:
        when = _when(block["at"]) if block["at"] is not None else "?"
        first_line = block["text"].split("\n", 1)[0]
        print(f"{block['user'] or '?':<16} {when}  v{block['version'] or '-':<4} {first_line}")
    return 0


def _restore(config: RealtimeConfig, args: argparse.Namespace) -> int:
    token = os.environ.get(ENV_ADMIN_TOKEN)
    if token is None and config.http.admin_token_file:
        try:
            token = Path(config.http.admin_token_file).read_text().strip()
        except OSError as exc:
            print(f"cannot read http.admin_token_file: {exc.strerror}", file=sys.stderr)
            return 2
    if not token:
        print(f"no admin token: set http.admin_token_file or ${ENV_ADMIN_TOKEN}", file=sys.stderr)
        return 2
    base = args.url or f"http://{config.http.host}:{config.http.port}"
    url = f"{base.rstrip('/')}/admin/rooms/{quote(args.room, safe='')}/restore"
    request = urllib.request.Request(
        url,
        data=json.dumps({"version": args.version}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            reason = json.loads(exc.read()).get("error", "")
        except ValueError:
            reason = exc.reason
        print(f"error: {exc.code}: {reason}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot reach the daemon at {base}: {exc}", file=sys.stderr)
        return 1
    changed = "restored" if body.get("changed") else "already equal to"
    print(f"{args.room}: {changed} version {body['restored']} (new version {body['version']})")
    return 0
