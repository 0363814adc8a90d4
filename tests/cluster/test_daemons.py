"""Daemon processes sharing rooms through Redis and PostgreSQL, driven by the stock
JavaScript y-websocket client (tests/js/interop.mjs, cluster scenarios) and by Python
clients for revocation and limits.

Each node is `python -m civicrealtime --config ...` on its own ports, with the same
PostgreSQL schema and the same Redis key prefix (both unique to the test module, removed
afterwards). The Redis restart test runs its own redis-server on a free port.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import trio

from civicrealtime.protocol import CloseCode

from ..ydoc_client import YClient
from .daemons import ADMIN_TOKEN, REDIS_SERVER, Node, PrivateRedis, tail

JS_DIR = Path(__file__).resolve().parents[1] / "js"
SCRIPT = JS_DIR / "interop.mjs"
NODE_JS = shutil.which("node")
SCENARIO_TIMEOUT = 90.0  # the script stops itself after --timeout-ms; this is the backstop

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(NODE_JS is None, reason="node (Node.js) not found on PATH"),
    pytest.mark.skipif(
        not (JS_DIR / "node_modules").is_dir(),
        reason="run `npm ci --prefix tests/js` (nox -s tests does it)",
    ),
]


def run_scenario(
    nodes: list[Node],
    scenario: str,
    pauses: dict[str, Callable[[], None]] | None = None,
    logs: list[Node] | None = None,
) -> str:
    """Run one cluster scenario; answer its `PAUSE <what>` lines with `pauses[what]()`."""
    assert NODE_JS is not None
    urls = ",".join(node.base_url for node in nodes)
    prefix = f"pytest-{scenario}-{uuid.uuid4().hex[:8]}"
    cmd = [NODE_JS, str(SCRIPT), urls, scenario, "--prefix", prefix, "--timeout-ms", "75000"]
    proc = subprocess.Popen(
        cmd,
        cwd=JS_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "INTEROP_TOKENS"},
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + SCENARIO_TIMEOUT
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("PAUSE "):
                what = line.split(None, 1)[1].strip()
                action = (pauses or {}).get(what)
                assert action is not None, f"no action for PAUSE {what}"
                action()
                proc.stdin.write("go\n")
                proc.stdin.flush()
            if time.monotonic() > deadline:
                break
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    stdout = "".join(lines)
    stderr = proc.stderr.read()
    print(stdout)
    assert code == 0, (
        f"scenario {scenario} exited {code}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n"
        + "\n".join(tail(node.log) for node in (logs or nodes))
    )
    return stdout


def stop_cleanly(nodes: list[Node]) -> None:
    problems = []
    for node in nodes:
        if node.proc is None or node.proc.returncode is not None:
            continue
        code = node.stop()
        if code != 0:
            problems.append(f"node {node.name} exited {code} after SIGTERM\n{tail(node.log)}")
    for node in nodes:
        text = node.log_text()
        at = text.find("Traceback (most recent call last)")
        if at >= 0:
            problems.append(f"node {node.name} logged a traceback:\n{text[max(0, at - 1500) :]}")
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def three_nodes(
    module_redis_prefix: str, module_pg_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Node]]:
    workdir = tmp_path_factory.mktemp("cluster")
    nodes = [
        Node(
            workdir,
            name=f"node{i}",
            prefix=module_redis_prefix,
            pg_url=module_pg_url,
            rate_limiting={"connections_per_user": 2},
        )
        for i in range(3)
    ]
    try:
        for node in nodes:
            node.start()
        yield nodes
    finally:
        stop_cleanly(nodes)


def test_js_clients_converge_and_see_each_other_across_three_nodes(
    three_nodes: list[Node], record_property: pytest.RecordProperty
) -> None:
    out = run_scenario(three_nodes, "cluster")
    for name in ("CLUSTER_PRESENCE_MS", "CLUSTER_CONVERGED_MS", "CLUSTER_REMOVAL_MS"):
        match = re.search(rf"{name} ([\d.]+)", out)
        assert match, f"no {name} line"
        record_property(name.lower(), float(match.group(1)))


async def test_revocation_on_one_node_closes_sessions_on_every_node(
    three_nodes: list[Node], nursery: trio.Nursery
) -> None:
    node0, node1, node2 = three_nodes
    on_1 = await YClient.connect(nursery, node1.url("revoke-me"), token="mallory")
    on_2 = await YClient.connect(nursery, node2.url("revoke-me"), token="mallory")
    other = await YClient.connect(nursery, node2.url("revoke-me"), token="alice")
    await on_2.wait_for(lambda: bool(on_2.events("connection.ack")))
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{node0.http}/admin/revoke",
            headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
            json={"user_id": "mallory", "reason": "account disabled"},
        )
    assert response.status_code == 200, response.text
    assert response.json()["connections_closed"] == 0  # none of them was on node 0
    for client in (on_1, on_2):
        await client.wait_for(lambda c=client: c.closed is not None, within=5)
        assert client.closed is not None and client.closed[0] == CloseCode.AUTH_FAILED
        assert client.events("session.revoked")[0]["reason"] == "account disabled"
    assert other.closed is None
    await other.ws.aclose()


async def test_per_user_limit_counts_connections_on_every_node(
    three_nodes: list[Node], nursery: trio.Nursery
) -> None:
    node0, node1, node2 = three_nodes  # connections_per_user: 2
    first = await YClient.connect(nursery, node0.url("limit-a"), token="dora")
    second = await YClient.connect(nursery, node1.url("limit-b"), token="dora")
    for client in (first, second):
        await client.wait_for(lambda c=client: bool(c.events("connection.ack")))
    third = await YClient.connect(nursery, node2.url("limit-c"), token="dora")
    await third.wait_for(lambda: third.closed is not None)
    assert third.closed is not None and third.closed[0] == CloseCode.LIMIT_EXCEEDED
    assert "connections_per_user" in (third.closed[1] or "")
    await first.ws.aclose()

    async def admitted() -> YClient:
        client = await YClient.connect(nursery, node2.url("limit-d"), token="dora")
        await client.wait_for(
            lambda: client.closed is not None or bool(client.events("connection.ack"))
        )
        return client

    # Node 0 writes its lower count without waiting; within a moment node 2 admits dora.
    fourth = await admitted()
    with trio.fail_after(5):
        while fourth.closed is not None:
            await trio.sleep(0.1)
            fourth = await admitted()
    await fourth.ws.aclose()
    await second.ws.aclose()


async def test_health_is_ok_with_redis_up(three_nodes: list[Node]) -> None:
    async with httpx.AsyncClient() as http:
        for node in three_nodes:
            health = (await http.get(f"{node.http}/health")).json()
            assert health["status"] == "ok", health


def test_a_killed_node_loses_nothing_and_its_clients_move(
    redis_prefix: str, pg_url: str, tmp_path: Path
) -> None:
    nodes = [Node(tmp_path, name=f"node{i}", prefix=redis_prefix, pg_url=pg_url) for i in range(3)]
    try:
        for node in nodes:
            node.start()
        out = run_scenario(nodes, "cluster-failover", pauses={"kill-node0": nodes[0].kill})
        assert "NODE_GONE_REMOVAL_MS" in out
        assert "cluster.node_gone" in nodes[1].log_text()
    finally:
        nodes[0].kill()
        stop_cleanly(nodes[1:])


@pytest.mark.skipif(
    not Path(REDIS_SERVER).exists(), reason=f"no redis-server binary at {REDIS_SERVER}"
)
def test_redis_restart_mid_session(pg_url: str, tmp_path: Path) -> None:
    redis = PrivateRedis(tmp_path)
    redis.start()
    prefix = f"crt-test-{uuid.uuid4().hex[:8]}"
    nodes = [
        Node(tmp_path, name=f"node{i}", prefix=prefix, pg_url=pg_url, redis_url=redis.url)
        for i in range(2)
    ]

    def degraded() -> bool:
        health = httpx.get(f"{nodes[0].http}/health", timeout=5).json()
        return health["status"] == "degraded" and any(
            "Redis unreachable" in reason for reason in health["reasons"]
        )

    def redis_down() -> None:
        redis.stop()
        deadline = time.monotonic() + 10
        while not degraded():
            assert time.monotonic() < deadline, "health never said degraded"
            time.sleep(0.1)

    try:
        for node in nodes:
            node.start()
        pauses = {"redis-down": redis_down, "redis-up": redis.start}
        out = run_scenario(nodes, "cluster-redis-restart", pauses=pauses)
        assert "REDIS_CATCH_UP_MS" in out
        deadline = time.monotonic() + 5  # each task says so at its next success
        while (health := httpx.get(f"{nodes[0].http}/health", timeout=5).json())["status"] != "ok":
            assert time.monotonic() < deadline, health
            time.sleep(0.1)
    finally:
        stop_cleanly(nodes)
        redis.stop()


def test_clustering_with_sqlite_refuses_to_start(tmp_path: Path) -> None:
    node = Node(tmp_path, name="lonely", prefix="unused", pg_url=str(tmp_path / "x.sqlite3"))
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "civicrealtime", "--config", str(node.config)],
        cwd=node.workdir,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2, result.stderr  # a configuration problem (docs/operations.md)
    assert "needs a store shared by every node" in result.stderr
    assert "postgresql://" in result.stderr
    assert time.monotonic() - started < 30
