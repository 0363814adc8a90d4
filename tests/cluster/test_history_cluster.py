"""History in a cluster: every node reads the same history, and a restore asked of one node
reaches the editors another node holds (two nodes on Redis and one PostgreSQL store)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import trio
from pycrdt import Doc, XmlFragment

from civicrealtime.app import RealtimeService
from civicrealtime.auth import DevelopmentAuthenticator
from civicrealtime.records.to_markdown import fragment_to_markdown
from civicrealtime.records.to_yjs import markdown_to_fragment

from ..conftest import RunningServer
from ..polling import POLL_INTERVAL
from ..ydoc_client import YClient
from .conftest import cluster_config

ROOM = "records%3Ashared"
ADMIN = {"Authorization": "Bearer root"}


def markdown(doc: Doc) -> str:
    return fragment_to_markdown(doc.get("default", type=XmlFragment))


def write(text: str) -> Any:
    def change(doc: Doc) -> None:
        fragment = doc.get("default", type=XmlFragment)
        with doc.transaction():
            del fragment.children[0 : len(fragment.children)]
            markdown_to_fragment(text, fragment)

    return change


def append(text: str) -> Any:
    def change(doc: Doc) -> None:
        fragment = doc.get("default", type=XmlFragment)
        with doc.transaction():
            markdown_to_fragment(text, fragment)

    return change


@pytest.fixture
async def nodes(
    nursery: trio.Nursery, redis_prefix: str, pg_url: str
) -> AsyncIterator[list[RunningServer]]:
    """Two in-process nodes on one Redis and one PostgreSQL store, versions closing fast."""
    services: list[RealtimeService] = []
    running: list[RunningServer] = []
    for _ in range(2):
        config = cluster_config(redis_prefix, pg_url, history={"version_idle": 0.05})
        service = RealtimeService(config, authenticator=DevelopmentAuthenticator())
        port = await nursery.start(service.run)
        services.append(service)
        running.append(RunningServer(service=service, port=port, nursery=nursery))
    yield running
    for service in services:
        service.shutdown()
    with trio.fail_after(15):
        for service in services:
            await service.stopped.wait()
    nursery.cancel_scope.cancel()


def ops(node: RunningServer) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.service.http_port}", timeout=10)


async def history_of(node: RunningServer) -> list[dict[str, Any]]:
    async with ops(node) as client:
        answer = await client.get(f"/admin/rooms/{ROOM}/history", headers=ADMIN)
    return list(answer.json().get("versions", [])) if answer.status_code == 200 else []


async def blame_of(node: RunningServer) -> list[dict[str, Any]]:
    async with ops(node) as client:
        answer = await client.get(f"/admin/rooms/{ROOM}/blame", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["blocks"])


def authors(versions: list[dict[str, Any]]) -> set[str]:
    return {a["user"] for v in versions for a in v["authors"]}


async def until(
    node: RunningServer, done: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """Versions close on a timer (`version_idle`) inside the daemons, and no event tells a
    client: poll the ops port, under a deadline."""
    with trio.fail_after(15):
        while True:
            versions = await history_of(node)
            if done(versions):
                return versions
            await trio.sleep(POLL_INTERVAL * 10)


async def until_authors(node: RunningServer, wanted: set[str]) -> list[dict[str, Any]]:
    return await until(node, lambda versions: wanted <= authors(versions))


async def test_edits_on_both_nodes_are_in_the_history_read_from_either(
    nodes: list[RunningServer],
) -> None:
    a, b = nodes
    ada = await YClient.connect(a.nursery, a.url("shared"), token="ada")
    bob = await YClient.connect(b.nursery, b.url("shared"), token="bob")
    await ada.edit(write("Ada's paragraph.\n"))
    await bob.wait_for(lambda: markdown(bob.doc) == "Ada's paragraph.\n")
    await until_authors(a, {"ada"})
    await bob.edit(append("Bob's paragraph.\n"))
    await ada.wait_for(lambda: "Bob's paragraph." in markdown(ada.doc))
    on_a = await until_authors(a, {"ada", "bob"})
    on_b = await until_authors(b, {"ada", "bob"})
    # The same versions, whichever node answers: they come from the one shared store.
    assert on_a[: len(on_b)] == on_b[: len(on_a)]
    assert await until(b, lambda versions: versions == on_a) == on_a
    blame = {block["text"]: block["user"] for block in await blame_of(b)}
    assert blame == {"Ada's paragraph.": "ada", "Bob's paragraph.": "bob"}
    assert await blame_of(a) == await blame_of(b)


async def test_a_restore_asked_of_another_node_reaches_the_editors(
    nodes: list[RunningServer],
) -> None:
    holder, other = nodes
    ada = await YClient.connect(holder.nursery, holder.url("shared"), token="ada")
    await ada.edit(write("Good text.\n"))
    good = await until_authors(holder, {"ada"})
    await ada.edit(write("Bad text.\n"))
    await until(holder, lambda versions: len(versions) > len(good))
    version = good[-1]["version"]
    async with ops(other) as client:
        restored = await client.post(
            f"/admin/rooms/{ROOM}/restore", json={"version": version}, headers=ADMIN
        )
    assert restored.status_code == 200, restored.text
    await ada.wait_for(lambda: markdown(ada.doc) == "Good text.\n", within=15)
    # The restore is a version of its own, attributed to who asked, on both nodes.
    for node in (holder, other):
        versions = await until_authors(node, {"restore:root"})
        assert versions[-1]["reason"] == "restore"
    # And the two copies of the room converge: a new editor on the other node reads it.
    late = await YClient.connect(other.nursery, other.url("shared"), token="bob")
    await late.wait_for(lambda: markdown(late.doc) == "Good text.\n", within=15)
