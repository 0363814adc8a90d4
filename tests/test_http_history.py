"""The history routes of the ops port (http/history.py) on an in-process daemon."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import trio
from pycrdt import Doc, XmlFragment

from civicrealtime.persistence import StoreUnavailable
from civicrealtime.records.to_markdown import fragment_to_markdown
from civicrealtime.records.to_yjs import markdown_to_fragment

from .conftest import RunningServer, StartServer
from .polling import POLL_INTERVAL, eventually
from .test_http import SECRET, admin_headers, http, start, token

ROOM = "records%3Aminutes"


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def write(markdown: str) -> Any:
    def change(doc: Doc) -> None:
        fragment = doc.get("default", type=XmlFragment)
        with doc.transaction():
            del fragment.children[0 : len(fragment.children)]
            markdown_to_fragment(markdown, fragment)

    return change


def markdown_of(doc: Doc) -> str:
    return fragment_to_markdown(doc.get("default", type=XmlFragment))


async def start_with_history(start_server: StartServer, tmp_path: Path) -> RunningServer:
    return await start(
        start_server,
        data_dir=str(tmp_path),
        snapshots={"enabled": True, "flush_ms": 10},
        history={"version_idle": 0.05},
    )


async def versions(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    answer = await client.get(f"/admin/rooms/{ROOM}/history", headers=admin_headers())
    return list(answer.json().get("versions", [])) if answer.status_code == 200 else []


def store_bytes(directory: Path) -> bytes:
    return b"".join(path.read_bytes() for path in directory.glob("realtime.sqlite3*"))


async def versions_until(client: httpx.AsyncClient, count: int) -> None:
    """Versions close on a timer (`version_idle`): poll for them, as `eventually` does."""
    with trio.fail_after(10):
        # No event exists to wait on from outside the daemon: that is why this polls.
        while len(await versions(client)) < count:  # noqa: ASYNC110
            await trio.sleep(POLL_INTERVAL)


async def test_a_restore_during_a_store_outage_is_refused_whole(
    start_server: StartServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = await start_with_history(start_server, tmp_path)
    secret_token = token("ada", name="Ada")
    editor = await running.client("minutes", token=secret_token)
    async with http(running) as client:
        await editor.edit(write("First text."))
        await versions_until(client, 1)
        await editor.edit(write("Second text."))
        await versions_until(client, 2)
        persistence = running.service.persistence
        assert persistence is not None

        async def down() -> None:
            raise StoreUnavailable("database unreachable")

        monkeypatch.setattr(persistence.store, "ping", down)
        room = running.service.rooms.get("records:minutes")
        assert room is not None
        applied = room.room.updates_applied
        refused = await client.post(
            f"/admin/rooms/{ROOM}/restore", json={"version": 1}, headers=admin_headers()
        )
        assert refused.status_code == 503
        assert "database unreachable" in refused.json()["error"]
        # Nothing half done: the document, the history and the editor are as they were.
        assert room.room.updates_applied == applied
        assert markdown_of(room.room.doc) == "Second text.\n"
        assert len(await versions(client)) == 2
        monkeypatch.undo()
        restored = await client.post(
            f"/admin/rooms/{ROOM}/restore", json={"version": 1}, headers=admin_headers()
        )
        assert restored.status_code == 200, restored.text
        await editor.wait_for(lambda: markdown_of(editor.doc) == "First text.\n")
        listed = await versions(client)
        assert listed[-1]["reason"] == "restore"
        assert listed[-1]["authors"][0]["user"] == "restore:root"
        history = running.service.history
        assert history is not None
        first = (await history.store.entries("records:minutes"))[0]
        assert (first.origin.sub, first.origin.name) == ("ada", "Ada")
    # Who, never the credential: the token is nowhere in the store's files.
    stored = await trio.to_thread.run_sync(store_bytes, tmp_path)
    assert b"Ada" in stored
    assert secret_token.encode() not in stored


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1]", 'expected a JSON object {"version": N}'),
        (b"{}", 'expected a JSON object {"version": N}'),
        (b'{"version": true}', "whole number"),
        (b'{"version": "2"}', "whole number"),
    ],
)
async def test_a_malformed_restore_body_gets_400_with_the_reason(
    start_server: StartServer, tmp_path: Path, body: bytes, reason: str
) -> None:
    running = await start_with_history(start_server, tmp_path)
    async with http(running) as client:
        answer = await client.post(
            f"/admin/rooms/{ROOM}/restore", content=body, headers=admin_headers()
        )
    assert answer.status_code == 400
    assert reason in answer.json()["error"]


async def test_access_needs_the_admin_credential_or_records_history(
    start_server: StartServer, tmp_path: Path
) -> None:
    running = await start_with_history(start_server, tmp_path)
    path = f"/admin/rooms/{ROOM}/history"
    async with http(running) as client:
        assert (await client.get(path)).status_code == 401
        assert (await client.get(path, headers=bearer("not-a-token"))).status_code == 401
        editor = await client.get(path, headers=bearer(token("ed")))
        assert editor.status_code == 403
        assert "records:history" in editor.json()["error"]
        elsewhere = token("cl", permissions=["records:history"], rooms=["records:other"])
        assert (await client.get(path, headers=bearer(elsewhere))).status_code == 403
        reader = token("cl", role="public", permissions=["records:history"])
        # Allowed in: the room has no history yet, which is a 404, not a refusal.
        missing = await client.get(path, headers=bearer(reader))
        assert missing.status_code == 404
        assert "no history" in missing.json()["error"]
        restore = await client.post(
            f"/admin/rooms/{ROOM}/restore", json={"version": 1}, headers=bearer(reader)
        )
        assert restore.status_code == 403
        assert "records:edit" in restore.json()["error"]
        bad = await client.get(f"{path}/two", headers=admin_headers())
        assert bad.status_code == 400


async def test_an_admin_token_pinned_to_another_room_is_refused(
    start_server: StartServer, tmp_path: Path
) -> None:
    """The `rooms` claim pins an admin's token too, as the WebSocket path does."""
    running = await start_with_history(start_server, tmp_path)
    path = f"/admin/rooms/{ROOM}/history"
    pinned = bearer(token("root", role="admin", rooms=["records:other"]))
    anywhere = bearer(token("root", role="admin", rooms=["records:*"]))
    async with http(running) as client:
        refused = await client.get(path, headers=pinned)
        restore = await client.post(
            f"/admin/rooms/{ROOM}/restore", json={"version": 1}, headers=pinned
        )
        allowed = await client.get(path, headers=anywhere)
    assert refused.status_code == 403
    assert restore.status_code == 403
    assert allowed.status_code == 404  # let in: this room has no history yet


async def test_history_off_answers_409(start_server: StartServer, tmp_path: Path) -> None:
    running = await start(
        start_server,
        data_dir=str(tmp_path),
        snapshots={"enabled": True},
        history={"enabled": False},
    )
    assert running.service.history is None
    async with http(running) as client:
        answer = await client.get(f"/admin/rooms/{ROOM}/history", headers=admin_headers())
    assert answer.status_code == 409


def applied(running: RunningServer) -> int:
    handle = running.service.rooms.get("records:minutes")
    return handle.room.updates_applied if handle is not None else 0


async def test_a_restore_loads_a_room_that_left_memory(
    start_server: StartServer, tmp_path: Path
) -> None:
    running = await start(
        start_server,
        data_dir=str(tmp_path),
        snapshots={"enabled": True, "flush_ms": 10},
        history={"version_idle": 30},
        rooms={"grace_period_ms": 0},
    )
    async with http(running) as client:
        for number, text in enumerate(("First text.", "Second text."), start=1):
            editor = await running.client("minutes", token=token("ada", name="Ada"))
            await editor.edit(write(text))
            await eventually(lambda: applied(running) > 0)
            await editor.ws.aclose()
            # Eviction closes the open version (long before 30 s of quiet).
            await eventually(lambda: running.service.rooms.get("records:minutes") is None)
            await versions_until(client, number)
        answer = await client.post(
            f"/admin/rooms/{ROOM}/restore", json={"version": 1}, headers=admin_headers()
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["changed"] is True
    later = await running.client("minutes", token=token("bo"))
    await later.wait_for(lambda: markdown_of(later.doc) == "First text.\n")


async def test_a_demo_clerk_token_may_read_history_an_editor_token_may_not(
    start_server: StartServer, tmp_path: Path
) -> None:
    running = await start_with_history(start_server, tmp_path)
    async with http(running) as client:
        clerk = (await client.post("/demo/token", json={"name": "Cleo", "role": "clerk"})).json()
        editor = (await client.post("/demo/token", json={"name": "Ed", "role": "editor"})).json()
        path = f"/admin/rooms/{ROOM}/history"
        as_clerk = await client.get(path, headers=bearer(clerk["token"]))
        as_editor = await client.get(path, headers=bearer(editor["token"]))
        elsewhere = await client.get(
            "/admin/rooms/notes%3Ax/history", headers=bearer(clerk["token"])
        )
    claims = jwt.decode(clerk["token"], SECRET, algorithms=["HS256"])
    assert (claims["role"], claims["permissions"]) == ("editor", ["records:history"])
    assert as_clerk.status_code == 404  # allowed in; the room has no history yet
    assert as_editor.status_code == 403
    assert elsewhere.status_code == 403  # demo tokens are for records rooms only
