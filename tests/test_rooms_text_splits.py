"""A room contains a split inside a surrogate pair on each path an update comes in by.

Through the in-process server: a client's updates (`Room._apply`) and another node's
(`Room._from_node`). The updates are real Yjs output (tests/protocol/data/yjs_structs.json);
the daemon-level story with real Yjs editors is tests/test_interop_split.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pycrdt import Text

from civicrealtime.protocol import messages
from civicrealtime.rooms.messages import FromNode

from .conftest import StartServer, make_config
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
