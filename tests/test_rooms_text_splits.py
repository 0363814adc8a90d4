"""A room contains a split inside a surrogate pair on each path an update comes in by.

Through the in-process server: a client's updates (`Room._apply`), another node's
(`Room._from_node`), and a split of text the records seed wrote. The updates are real Yjs
output (tests/protocol/data/yjs_structs.json); the daemon-level story with real Yjs editors
is tests/test_interop_split.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import trio
from pycrdt import Text, XmlFragment

from civicrealtime.app import RealtimeService
from civicrealtime.auth import DevelopmentAuthenticator
from civicrealtime.protocol import messages
from civicrealtime.protocol.varint import encode_var_string, encode_var_uint
from civicrealtime.protocol.ystructs import read_layout, utf16_length
from civicrealtime.rooms.messages import FromNode

from .conftest import RunningServer, StartServer, make_config
from .polling import eventually

GOLDEN: dict[str, Any] = json.loads(
    (Path(__file__).parent / "protocol" / "data" / "yjs_structs.json").read_text(encoding="utf-8")
)
TYPED = bytes.fromhex(GOLDEN["cases"]["typed_emoji"]["update"])
INSERTED = bytes.fromhex(GOLDEN["cases"]["insert_inside_pair"]["update"])
EDITORS_TEXT = GOLDEN["editors_text"]


async def test_a_clients_split_is_contained(start_server: StartServer) -> None:
    running = await start_server(make_config())
    a = await running.client("emoji")
    watcher = await running.client("emoji")
    await a.wait_for(lambda: len(a.binary) >= 2)
    for update in (TYPED, INSERTED):
        await a.ws.send_message(messages.encode_sync_update(update))
    handle = running.service.rooms.get("records:emoji")
    assert handle is not None
    await eventually(lambda: handle.room.updates_applied == 2)
    assert str(handle.room.doc.get("text", type=Text)) == EDITORS_TEXT
    assert running.service.stats.text_splits == 1
    # The fan-out kept flowing from the rebuilt document: the watcher got both changes.
    await watcher.wait_for(lambda: watcher.updates_received >= 3)  # step 2, then two updates


async def test_another_nodes_split_is_contained(start_server: StartServer) -> None:
    running = await start_server(make_config())
    a = await running.client("relayed")
    await a.wait_for(lambda: len(a.binary) >= 2)
    handle = running.service.rooms.get("records:relayed")
    assert handle is not None
    for update in (TYPED, INSERTED):
        await handle.mailbox.send(FromNode(node="other", update=update))
    await eventually(lambda: str(handle.room.doc.get("text", type=Text)) == EDITORS_TEXT)
    assert running.service.stats.text_splits == 1


async def test_a_split_of_seeded_text_is_contained(nursery: trio.Nursery, tmp_path: Path) -> None:
    """The records seed writes into the document directly; its emoji are indexed too."""
    data = tmp_path / "civicpress"
    record = data / "records" / "minutes" / "2026" / "emoji.md"
    record.parent.mkdir(parents=True)
    record.write_text("---\nid: emoji\ntitle: Emoji\ntype: minutes\n---\n\nAvis 😀 public\n")
    config = make_config(data_dir=str(tmp_path / "state"), records={"data_dir": str(data)})
    service = RealtimeService(config, authenticator=DevelopmentAuthenticator())
    port = await nursery.start(service.run)
    running = RunningServer(service=service, port=port, nursery=nursery)
    client = await running.client("emoji")
    await client.wait_for(lambda: client.updates_received >= 1)
    # The seeded string item holding the emoji, and the clock of its high half.
    (item,) = [s for s in read_layout(client.doc.get_update()).strings if "😀" in s.text]
    high = item.clock + utf16_length(item.text[: item.text.index("😀")])
    split = (
        encode_var_uint(1)
        + encode_var_uint(1)
        + encode_var_uint(4242)
        + encode_var_uint(0)
        + bytes([0x84])  # an item with an origin: right after the emoji's high half
        + encode_var_uint(item.client)
        + encode_var_uint(high)
        + encode_var_string("é")
        + encode_var_uint(0)
    )
    await client.ws.send_message(messages.encode_sync_update(split))
    handle = service.rooms.get("records:emoji")
    assert handle is not None
    await eventually(lambda: service.stats.text_splits == 1)
    fragment = handle.room.doc.get("default", type=XmlFragment)
    assert "Avis \ufffdé\ufffd public" in str(fragment)
