"""A room actor crashes mid-update while other rooms are busy: only its clients notice.

Four rooms with three editors each edit continuously. In a fifth room, of a room type whose
hooks raise on a marker, two clients edit too, until one sends the marker: the actor fails
in the middle of applying an update. Its two clients get an error frame and close 4500;
every other client keeps its connection, and each busy room converges to every edit made
in it. The crashed room's key is free again: a new client gets a fresh actor.
"""

from __future__ import annotations

import trio
from pycrdt import Text
from trio_websocket import ConnectionClosed

from civicrealtime.protocol.closecodes import CloseCode
from civicrealtime.rooms import MemoryOnly, RoomType, RoomTypeRegistry

from ..conftest import RunningServer, StartServer
from ..polling import eventually
from ..ydoc_client import YClient, state_vector
from .support import catch_tracebacks

BUSY_ROOMS = 4
EDITORS = 3
EDITS = 30


class CrashOnMarker(MemoryOnly):
    """Hooks whose `received` raises for an update carrying the marker."""

    def received(self, key: str, update: bytes, origin: object = None) -> None:
        if b"BOOM" in update:
            raise RuntimeError("simulated room failure")


def _append(tag: str) -> object:
    def change(doc: object) -> None:
        text = doc.get("t", type=Text)  # type: ignore[attr-defined]
        text.insert(len(str(text)), tag)

    return change


async def test_a_crashing_room_closes_only_its_clients(start_server: StartServer) -> None:
    registry = RoomTypeRegistry(
        [RoomType(name="records"), RoomType(name="fragile", hooks=CrashOnMarker())]
    )
    running: RunningServer = await start_server(room_types=registry)
    fragile_url = running.url("doomed", room_type="fragile")
    with catch_tracebacks() as caught, trio.fail_after(60):
        busy = {
            f"busy{r}": [await running.client(f"busy{r}") for _ in range(EDITORS)]
            for r in range(BUSY_ROOMS)
        }
        doomed = [await YClient.connect(running.nursery, fragile_url) for _ in range(2)]
        for client in [c for clients in busy.values() for c in clients] + doomed:
            await client.wait_for(lambda c=client: len(c.binary) >= 2)

        async def edit(client: YClient, name: str) -> None:
            for i in range(EDITS):
                try:
                    await client.edit(_append(f"[{name}:{i}]"))
                except ConnectionClosed:
                    assert client in doomed  # only the crashed room's clients are closed
                    return
                await trio.sleep(0.005)

        async def crash_midway() -> None:
            await trio.sleep(0.05)  # the busy rooms are editing
            await doomed[0].edit(_append("BOOM"))

        async with trio.open_nursery() as nursery:
            for room, clients in busy.items():
                for n, client in enumerate(clients):
                    nursery.start_soon(edit, client, f"{room}.{n}")
            nursery.start_soon(edit, doomed[1], "doomed")
            nursery.start_soon(crash_midway)

        for client in doomed:
            await client.wait_for(lambda c=client: c.closed is not None)
            assert client.closed is not None
            assert client.closed[0] == CloseCode.ROOM_FAILED
            assert any(f["error"]["code"] == "UNKNOWN_ERROR" for f in client.events("error"))
        assert running.service.rooms.crashes == 1

        # Every other client is still connected, and each busy room converges.
        for room, clients in busy.items():
            expected = {f"[{room}.{n}:{i}]" for n in range(EDITORS) for i in range(EDITS)}
            for client in clients:
                await client.wait_for(
                    lambda c=client, e=expected: all(tag in c.text("t") for tag in e), within=10
                )
                assert client.closed is None
            texts = {c.text("t") for c in clients}
            vectors = [state_vector(c.doc) for c in clients]
            assert len(texts) == 1, texts
            assert all(v == vectors[0] for v in vectors)

        # The crashed room's key is free: a new client gets a fresh, empty actor.
        again = await YClient.connect(running.nursery, fragile_url)
        await again.wait_for(lambda: len(again.binary) >= 2)
        assert again.closed is None
        assert again.text("t") == ""
        await eventually(lambda: running.service.rooms.get("fragile:doomed") is not None)
    crashes = [r for r in caught.records if r.getMessage().startswith("room.crashed")]
    others = [r for r in caught.records if not r.getMessage().startswith("room.crashed")]
    assert len(crashes) == 1
    assert not others, caught.lines()
