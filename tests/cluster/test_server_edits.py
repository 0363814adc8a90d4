"""A server-side edit sent to a node that does not hold the room's editors reaches them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import trio
from pycrdt import XmlFragment

from civicrealtime.app import RealtimeService
from civicrealtime.auth import DevelopmentAuthenticator
from civicrealtime.records import read_fragment, write_markdown

from ..conftest import RunningServer
from ..ydoc_client import YClient
from .conftest import cluster_config


@pytest.fixture
async def nodes(
    nursery: trio.Nursery, redis_prefix: str, pg_url: str
) -> AsyncIterator[list[RunningServer]]:
    services: list[RealtimeService] = []
    running: list[RunningServer] = []
    for _ in range(2):
        service = RealtimeService(
            cluster_config(redis_prefix, pg_url), authenticator=DevelopmentAuthenticator()
        )
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


async def test_put_on_another_node_reaches_the_editors(nodes: list[RunningServer]) -> None:
    holder, other = nodes
    editor = await YClient.connect(holder.nursery, holder.url("clustered"), token="ada")
    fragment = editor.doc.get("default", type=XmlFragment)
    url = f"http://127.0.0.1:{other.service.http_port}/admin/rooms/records:clustered/content"
    headers = {"Authorization": "Bearer root", "Content-Type": "text/markdown"}
    async with httpx.AsyncClient(timeout=10) as client:
        first = await client.put(url, content=b"# Title\n\nOne paragraph.\n", headers=headers)
        assert first.status_code == 200, first.text
        await editor.wait_for(lambda: "One paragraph." in write_markdown(read_fragment(fragment)))
        blocks = list(fragment.children)
        second = await client.put(
            url, content=b"# Title\n\nOne edited paragraph.\n", headers=headers
        )
        assert second.status_code == 200, second.text
        await editor.wait_for(lambda: "edited" in write_markdown(read_fragment(fragment)))
    assert write_markdown(read_fragment(fragment)) == "# Title\n\nOne edited paragraph.\n"
    assert list(fragment.children) == blocks  # a change in place, not new blocks
