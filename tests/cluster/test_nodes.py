"""Several `RealtimeService`s in one process sharing rooms through the local Redis.

Faster than daemons, and the services' insides can be looked at: leases, trims, counts.
The daemon tests (test_daemons.py) drive real processes with the JavaScript client.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest
import trio
from pycrdt import Text

from civicrealtime.app import RealtimeService
from civicrealtime.auth import DevelopmentAuthenticator
from civicrealtime.auth.revocation import Revocation
from civicrealtime.cluster import ClusterService
from civicrealtime.protocol import CloseCode, messages
from civicrealtime.protocol.awareness import AwarenessEntry, decode_awareness_update
from civicrealtime.startup import StoreSetupError

from ..conftest import RunningServer, make_config
from ..polling import eventually
from ..ydoc_client import YClient

# The in-process nodes (`cluster_config`, the `start_node` fixture) are in conftest.py.
from .conftest import StartNode, free_port, redis_command


def cluster_of(node: RunningServer) -> ClusterService:
    assert node.service.cluster is not None
    return node.service.cluster


async def type_text(client: YClient, text: str) -> None:
    await client.edit(lambda doc: doc.get("text", type=Text).insert(0, text))


async def test_edits_and_presence_cross_nodes(start_node: StartNode) -> None:
    a, b = await start_node(), await start_node()
    on_a = await a.client("fanout", token="alice")
    on_b = await b.client("fanout", token="bob")
    await type_text(on_a, "from a;")
    await on_b.wait_for(lambda: on_b.text("text") == "from a;")
    await type_text(on_b, "from b;")
    await on_a.wait_for(lambda: "from b;" in on_a.text("text"))
    await on_b.wait_for(lambda: on_b.text("text") == on_a.text("text"))

    await on_a.set_awareness(1111, {"user": {"name": "alice"}})
    await on_b.wait_for(lambda: on_b.awareness.get(1111) == {"user": {"name": "alice"}})
    # A leaving takes its presence away on the other node too.
    await on_a.ws.aclose()
    await on_b.wait_for(lambda: 1111 not in on_b.awareness)
    # Remote updates are applied, fanned out, and not published again.
    assert cluster_of(b).stats.delivered >= 1
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{b.service.http_port}") as http:
        metrics = (await http.get("/metrics")).text
    delivered = re.search(r"civicrealtime_cluster_entries_delivered_total ([\d.]+)", metrics)
    assert delivered is not None
    assert float(delivered.group(1)) >= 1
    assert "civicrealtime_cluster_redis_up 1.0" in metrics
    # Every cluster metric is in the operations guide's table.
    exported = set(re.findall(r"^# TYPE (civicrealtime_cluster_\w+) ", metrics, re.MULTILINE))
    guide = (Path(__file__).parents[2] / "docs" / "operations.md").read_text()
    documented = set(re.findall(r"^\| `(civicrealtime_cluster_\w+?)(?:_total)?`", guide, re.M))
    assert len(exported) == 12
    assert {m.removesuffix("_total") for m in exported} == documented


async def test_a_room_opened_later_on_another_node_gets_every_edit(
    start_node: StartNode,
) -> None:
    a = await start_node(snapshots={"flush_ms": 60000})  # nothing reaches the store
    writer = await a.client("tail", token="alice")
    for i in range(20):
        await type_text(writer, f"<{i}>")
    await eventually(lambda: cluster_of(a).stats.published >= 20)
    b = await start_node()
    reader = await b.client("tail", token="bob")
    await reader.wait_for(lambda: reader.text("text") == writer.text("text"))


async def test_presence_of_a_room_is_asked_for_when_it_opens(start_node: StartNode) -> None:
    a, b = await start_node(), await start_node()
    on_a = await a.client("ask", token="alice")
    await on_a.set_awareness(2222, {"user": {"name": "alice"}})
    await eventually(lambda: cluster_of(a).stats.published >= 1)
    on_b = await b.client("ask", token="bob")
    await on_b.wait_for(lambda: 2222 in on_b.awareness)


async def test_a_client_that_moves_node_is_told_of_its_removal(start_node: StartNode) -> None:
    """It comes back on a node that never saw its removal, with its old clock.

    The node that removed it sends the removal back through Redis; the new node hands it to
    the client, whose y-protocols code then raises its clock past it (yjs/y-websocket#122).
    """
    a, b = await start_node(), await start_node()
    observer = await a.client("move", token="olga")
    await observer.set_awareness(61, {"user": "olga"})
    mover = await a.client("move", token="max")
    mover._clock = 4
    await mover.set_awareness(62, {"user": "max"})  # clock 5
    await observer.wait_for(lambda: 62 in observer.awareness)
    await mover.ws._stream.aclose()  # node a removes 62 at clock 6
    await observer.wait_for(lambda: 62 not in observer.awareness)

    moved = await b.client("move", token="max")  # the room opens on node b now
    await moved.wait_for(lambda: 61 in moved.awareness)
    moved._clock = 4
    await moved.set_awareness(62, {"user": "max"})  # clock 5 again: node a ignores it
    removal = AwarenessEntry(client_id=62, clock=6, state="null")

    def told() -> bool:
        return any(
            removal in decode_awareness_update(m.payload)
            for m in moved.binary
            if isinstance(m, messages.AwarenessMessage)
        )

    await moved.wait_for(told)
    moved._clock = 6
    await moved.set_awareness(62, {"user": "max", "moved": True})  # clock 7 outranks it
    await observer.wait_for(lambda: observer.awareness.get(62) == {"user": "max", "moved": True})


async def test_one_node_writes_snapshots_and_trims_the_stream(start_node: StartNode) -> None:
    snapshots = {"max_updates": 5, "interval": 0}
    a, b = await start_node(snapshots=snapshots), await start_node(snapshots=snapshots)
    for node in (a, b):
        cluster_of(node).leases.trim_delay = 0.1
    on_a = await a.client("lease", token="alice")
    on_b = await b.client("lease", token="bob")
    await eventually(lambda: bool(cluster_of(a).leases.held) or bool(cluster_of(b).leases.held))
    for i in range(12):
        await type_text(on_a if i % 2 else on_b, f"<{i}>")
    await on_a.wait_for(lambda: on_a.text("text").count("<") == 12)
    holders = [n for n in (a, b) if "records:lease" in cluster_of(n).leases.held]
    assert len(holders) == 1
    holder = holders[0].service.rooms.get("records:lease")
    other = (b if holders[0] is a else a).service.rooms.get("records:lease")
    assert holder is not None and other is not None
    await eventually(lambda: holder.room.snapshots_taken >= 1)
    assert other.room.snapshots_taken == 0
    stream = f"{cluster_of(a).keys.prefix}:room:records:lease:stream"

    def trimmed() -> bool:
        # XINFO STREAM, in RESP2: ... "length" :<n> ... "entries-added" :<n> ...
        answer = redis_command("XINFO", "STREAM", stream).split(b"\r\n")
        length = int(answer[answer.index(b"length") + 1][1:])
        added = int(answer[answer.index(b"entries-added") + 1][1:])
        return length < added

    await eventually(trimmed, within=10)
    # What was trimmed is in the store: a third node opening the room has everything.
    c = await start_node()
    on_c = await c.client("lease", token="carol")
    await on_c.wait_for(lambda: on_c.text("text") == on_a.text("text"))


async def test_revocation_on_one_node_closes_sessions_on_all(start_node: StartNode) -> None:
    a, b = await start_node(), await start_node()
    victim_on_b = await b.client("revoked", token="mallory")
    bystander = await b.client("revoked", token="alice")
    await eventually(lambda: len(b.service.server.connections) == 2)
    await trio.sleep(0.3)  # the reader of node B has the revocations stream in its read
    outcome = await a.service.revoking.revoke(
        user_id="mallory", token_id=None, reason="account disabled"
    )
    assert (outcome.status, outcome.body["connections_closed"]) == (200, 0)
    assert outcome.body["persisted"] is True  # in the shared PostgreSQL store
    await victim_on_b.wait_for(lambda: victim_on_b.closed is not None)
    assert victim_on_b.closed is not None
    assert victim_on_b.closed[0] == CloseCode.AUTH_FAILED  # 4001 SESSION_REVOKED
    assert victim_on_b.events("session.revoked")[0]["reason"] == "account disabled"
    assert bystander.closed is None
    # Every node refuses the same tokens: the origin's revocation time travels with it.
    revoked_at = a.service.revocations._users["mallory"]
    assert b.service.revocations._users["mallory"] == revoked_at
    # A node that starts later reads it from the store.
    c = await start_node()
    assert c.service.revocations._users["mallory"] == revoked_at


async def test_stored_revocations_are_read_again_once_the_stream_is_tailed(
    start_node: StartNode,
) -> None:
    """One stored before this node tailed the stream, but published before: not missed."""
    a = await start_node()
    eve = await a.client("reread", token="eve")
    await eve.wait_for(lambda: len(eve.binary) >= 2)
    persistence = a.service.persistence
    assert persistence is not None
    revocation = Revocation(kind="user", subject="eve", revoked_at=time.time(), until=None)
    await persistence.store.save_revocation(revocation)  # as another node would have
    await a.service.revoking.restore_when_tailing(persistence.store)
    await eve.wait_for(lambda: eve.closed is not None)
    assert eve.closed is not None
    assert eve.closed[0] == CloseCode.AUTH_FAILED


async def test_per_user_limit_counts_every_node(start_node: StartNode) -> None:
    limits = {"connections_per_user": 2}
    a = await start_node(rate_limiting=limits)
    b = await start_node(rate_limiting=limits)
    first = await a.client("limit-1", token="dora")
    second = await b.client("limit-2", token="dora")
    servers = (a.service.server, b.service.server)
    await eventually(lambda: sum(len(s.connections) for s in servers) == 2)
    third = await b.client("limit-3", token="dora")
    await third.wait_for(lambda: third.closed is not None)
    assert third.closed is not None and third.closed[0] == CloseCode.LIMIT_EXCEEDED
    await first.ws.aclose()
    await eventually(lambda: not a.service.server.connections)
    await trio.sleep(0.3)  # node A writes its new count without waiting
    fourth = await b.client("limit-4", token="dora")
    await eventually(lambda: len(b.service.server.connections) == 2)
    assert fourth.closed is None and second.closed is None


async def test_redis_unreachable_at_start_degrades_but_serves(
    start_node: StartNode,
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}"
    node = await start_node(cluster={"redis_url": dead})
    client = await node.client("alone", token="alice")
    await type_text(client, "still editing")
    echo = await node.client("alone", token="bob")
    await echo.wait_for(lambda: echo.text("text") == "still editing")
    reason = node.service.cluster_health()
    assert reason is not None and "Redis unreachable" in reason


async def test_clustering_refuses_a_store_of_one_machine(nursery: trio.Nursery) -> None:
    config = make_config(
        cluster={"enabled": True}, snapshots={"enabled": True, "database_url": "/tmp/x.db"}
    )
    service = RealtimeService(config, authenticator=DevelopmentAuthenticator())
    with pytest.raises(StoreSetupError, match="postgresql://"):
        await service.run()
