"""The "saved" acknowledgement in cluster mode: the node that wrote the update acks it.

Each node logs the updates its own clients send to the shared PostgreSQL store (another
node's updates are applied, never logged twice), so each client is acknowledged by its own
node, after that node's commit; a client on another node that sent nothing gets nothing.
"""

from __future__ import annotations

from typing import Any

import trio
from pycrdt import Doc, Text

from ..conftest import RunningServer
from ..ydoc_client import state_vector
from .conftest import StartNode


async def _stored_text(node: RunningServer, key: str) -> str:
    assert node.service.persistence is not None
    loaded = await node.service.persistence.store.load(key)
    doc: Doc[Any] = Doc()
    for update in loaded.updates():
        doc.apply_update(update)
    return str(doc.get("text", type=Text))


async def test_each_client_is_acknowledged_by_its_own_node(start_node: StartNode) -> None:
    a, b = await start_node(), await start_node()
    on_a = await a.client("saved", token="alice")
    on_b = await b.client("saved", token="bob")
    for client in (on_a, on_b):
        await client.wait_for(lambda c=client: len(c.binary) >= 2)
    await on_a.edit(lambda d: d.get("text", type=Text).insert(0, "from a;"))
    await on_a.wait_for(lambda: bool(on_a.events("saved")))
    # Acknowledged after node A's commit to the shared store.
    assert "from a;" in await _stored_text(a, "records:saved")
    own = on_a.doc.client_id
    assert on_a.events("saved")[-1]["through"] == {str(own): state_vector(on_a.doc)[own]}
    await on_b.wait_for(lambda: on_b.text("text") == "from a;")
    await on_b.edit(lambda d: d.get("text", type=Text).insert(0, "from b;"))
    await on_b.wait_for(lambda: bool(on_b.events("saved")))
    assert "from b;" in await _stored_text(b, "records:saved")
    frame = on_b.events("saved")[-1]
    assert frame["updates"] == 1
    assert list(frame["through"]) == [str(on_b.doc.client_id)]
    await on_a.wait_for(lambda: "from b;" in on_a.text("text"))
    await trio.sleep(0.2)
    # Each got frames for its own updates only.
    assert len(on_a.events("saved")) == 1
    assert len(on_b.events("saved")) == 1
