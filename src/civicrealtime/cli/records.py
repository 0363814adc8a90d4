"""`civicrealtime records ...`: the records the daemon serves, and their Markdown."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import trio
from pycrdt import XmlFragment

from ..config import RealtimeConfig
from ..persistence import StoreError, store_for
from ..protocol import InvalidUpdate
from ..protocol.document import YDocument
from ..records import (
    RecordError,
    RecordIndex,
    parse_markdown,
    read_fragment,
    write_fragment,
    write_markdown,
)
from ..records.diff import apply_blocks
from ..records.edit import ContentError, decode, parse_content

ENV_ADMIN_TOKEN = "CIVICREALTIME_ADMIN_TOKEN"


def add_parser(commands: argparse._SubParsersAction[Any]) -> None:
    records = commands.add_parser(
        "records",
        help="list the records of records.data_dir, or show one as the server serialises it",
    )
    actions = records.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="every record of the data directory")
    show = actions.add_parser(
        "show",
        help="the Markdown the server would produce for a record: from its stored room if "
        "there is one, else from the record file as the room would be seeded",
    )
    show.add_argument("id", help="record id")
    apply = actions.add_parser(
        "apply",
        help="make a record's live document hold FILE.md (a minimal change, merged with what "
        "its editors type) through the daemon's operations port",
    )
    apply.add_argument("id", help="record id")
    apply.add_argument("file", help="Markdown: a whole record file or a bare body")
    apply.add_argument("--actor", default="cli", help="who made the change (default: cli)")
    apply.add_argument(
        "--url", help="the operations port (default: http://<http.host>:<http.port>)"
    )
    apply.add_argument(
        "--token-file",
        help=f"the admin token (default: ${ENV_ADMIN_TOKEN}, else http.admin_token_file)",
    )
    apply.add_argument(
        "--direct",
        action="store_true",
        help="the daemon is stopped: change the stored room directly (never while it runs)",
    )


def run(config: RealtimeConfig, args: argparse.Namespace) -> int:
    if args.action == "list":
        return _list(config)
    if args.action == "apply":
        return _apply(config, args)
    return _show(config, args.id)


def _index(config: RealtimeConfig) -> RecordIndex | None:
    if not config.records.data_dir:
        return None
    index = RecordIndex(config.records.data_dir)
    index.scan()
    return index


def _list(config: RealtimeConfig) -> int:
    data_dir = config.records.data_dir
    if data_dir and not Path(data_dir).is_dir():
        # An index of a missing directory is empty: "0 records" would hide the typo.
        print(f"records.data_dir {data_dir} is not a directory", file=sys.stderr)
        return 2
    index = _index(config)
    if index is None:
        print("records.data_dir is not set", file=sys.stderr)
        return 2
    print(f"{'id':32}  {'type':12}  title")
    for record_id in index.ids():
        try:
            record = index.read(record_id)
        except RecordError as exc:
            print(f"{record_id:32}  (unreadable: {exc})")
            continue
        kind = record.front_matter.get("type", "")
        title = record.front_matter.get("title", "")
        archived = " [archived]" if record.archived else ""
        print(f"{record_id:32}  {kind!s:12}  {title}{archived}")
    print(f"{len(index)} records in {config.records.data_dir}")
    return 0


def _show(config: RealtimeConfig, record_id: str) -> int:
    stored = _stored_state(config, f"records:{record_id}")
    if stored is not None:
        document = YDocument(label=f"records:{record_id}")
        try:
            document.apply(stored)
        except InvalidUpdate as exc:
            print(f"the stored room cannot be read: {exc}", file=sys.stderr)
            return 1
        print(write_markdown(read_fragment(document.doc.get("default", type=XmlFragment))), end="")
        return 0
    index = _index(config)
    if index is None or index.lookup(record_id) is None:
        print(f"no stored room and no record file for {record_id!r}", file=sys.stderr)
        return 1
    blocks, unsupported = parse_markdown(index.read(record_id).body)
    for item in unsupported:
        print(f"note: line {item.line}: {item.kind}: {item.excerpt}", file=sys.stderr)
    print(write_markdown(blocks), end="")
    return 0


def _stored_state(config: RealtimeConfig, key: str) -> bytes | None:
    if not config.snapshots.enabled:
        return None
    store = store_for(config.snapshots.location(config.data_dir), keep=config.snapshots.keep)

    async def read() -> bytes | None:
        async with store:
            if key not in await store.list_rooms():
                return None
            return await store.export_state(key)

    try:
        return trio.run(read)
    except StoreError as exc:
        print(f"{store.description}: {exc}; showing the record file instead", file=sys.stderr)
        return None


def _apply(config: RealtimeConfig, args: argparse.Namespace) -> int:
    try:
        data = Path(args.file).read_bytes()
        parsed = parse_content(decode(data))
    except OSError as exc:
        print(f"{args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    except ContentError as exc:
        print(f"{args.file}: {exc}", file=sys.stderr)
        return 1
    if args.direct:
        return _apply_directly(config, args.id, parsed.blocks)
    token = _admin_token(config, args.token_file)
    if token is None:
        print(
            f"no admin token: use --token-file, ${ENV_ADMIN_TOKEN} or http.admin_token_file",
            file=sys.stderr,
        )
        return 2
    base = args.url or _ops_url(config)
    key = urllib.parse.quote(f"records:{args.id}", safe=":")
    query = urllib.parse.urlencode({"actor": args.actor})
    request = urllib.request.Request(
        f"{base.rstrip('/')}/admin/rooms/{key}/content?{query}",
        data=data,
        method="PUT",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "text/markdown"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        print(f"{exc.code}: {exc.read().decode(errors='replace')}", file=sys.stderr)
        return 1
    except urllib.error.URLError as exc:
        print(
            f"cannot reach the daemon at {base} ({exc.reason}); with the daemon stopped, "
            "use --direct",
            file=sys.stderr,
        )
        return 1
    for note in answer.get("notes", []):
        print(f"note: line {note['line']}: {note['kind']}: {note['excerpt']}", file=sys.stderr)
    changed = "changed" if answer.get("changed") else "unchanged (it already held this)"
    print(f"records:{args.id} {changed}, {answer.get('update_bytes', 0)} bytes")
    return 0


def _ops_url(config: RealtimeConfig) -> str:
    host = config.http.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.http.port}"


def _admin_token(config: RealtimeConfig, token_file: str | None) -> str | None:
    if token_file is None and os.environ.get(ENV_ADMIN_TOKEN):
        return os.environ[ENV_ADMIN_TOKEN].strip()
    path = token_file or config.http.admin_token_file
    if path is None:
        return None
    try:
        return Path(path).read_text().strip() or None
    except OSError as exc:
        print(f"{path}: {exc.strerror}", file=sys.stderr)
        return None


def _apply_directly(config: RealtimeConfig, record_id: str, blocks: Any) -> int:
    """Merge the change into the stored room (the daemon must be stopped: a running one
    would not see it, and its next snapshot of the room would not hold it)."""
    if not config.snapshots.enabled:
        print("snapshots are disabled: there is no stored room to change", file=sys.stderr)
        return 2
    key = f"records:{record_id}"
    store = store_for(config.snapshots.location(config.data_dir), keep=config.snapshots.keep)
    index = _index(config)

    async def change() -> bool:
        async with store:
            document = YDocument(label=key)
            doc = document.doc
            fragment = doc.get("default", type=XmlFragment)
            if key in await store.list_rooms():
                # Through YDocument, as the daemon loads it (surrogate-pair splits).
                document.apply(await store.export_state(key))
                doc = document.doc
                fragment = doc.get("default", type=XmlFragment)
            elif index is not None and index.lookup(record_id) is not None:
                # Never opened: its room would be seeded from the record file.
                write_fragment(fragment, parse_markdown(index.read(record_id).body)[0])
            else:
                raise KeyError(record_id)
            before = doc.get_update()
            with doc.transaction(origin="cli"):
                stats = apply_blocks(fragment, blocks)
            if doc.get_update() != before:
                await store.import_state(key, doc.get_update())
            return stats.changed

    try:
        changed = trio.run(change)
    except KeyError:
        print(f"no stored room and no record file for {record_id!r}", file=sys.stderr)
        return 1
    except (StoreError, InvalidUpdate, RecordError) as exc:
        print(f"{store.description}: {exc}", file=sys.stderr)
        return 1
    print(f"{key} {'changed' if changed else 'unchanged'} in {store.description}")
    return 0
