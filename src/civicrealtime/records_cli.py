"""`civicrealtime records ...`: the records the daemon serves, and their Markdown."""

from __future__ import annotations

import argparse
import sys

import trio
from pycrdt import XmlFragment

from .config import RealtimeConfig
from .persistence import StoreError, store_for
from .protocol import InvalidUpdate
from .protocol.document import YDocument
from .records import RecordError, RecordIndex, parse_markdown, read_fragment, write_markdown


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


def run(config: RealtimeConfig, args: argparse.Namespace) -> int:
    if args.action == "list":
        return _list(config)
    return _show(config, args.id)


def _index(config: RealtimeConfig) -> RecordIndex | None:
    if not config.records.data_dir:
        return None
    index = RecordIndex(config.records.data_dir)
    index.scan()
    return index


def _list(config: RealtimeConfig) -> int:
    index = _index(config)
    if index is None:
        print("records.data_dir is not set", file=sys.stderr)
        return 2
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
