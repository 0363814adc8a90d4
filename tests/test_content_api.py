"""`/admin/rooms/{key}/content`: reading a live record and editing it without a socket."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
from pycrdt import Doc, Map, Text, XmlFragment

from civicrealtime.auth.revocation import Revocations
from civicrealtime.auth.token_auth import TokenAuthenticator
from civicrealtime.protocol.varint import encode_var_string, encode_var_uint
from civicrealtime.records import parse_markdown, read_fragment, write_markdown
from civicrealtime.rooms import RoomType, RoomTypeRegistry

from .conftest import RunningServer, StartServer, make_config
from .polling import eventually
from .ydoc_client import YClient

SECRET = b"c" * 48
FIXTURES = Path(__file__).resolve().parent / "records" / "fixtures" / "data"
RECORD = "minutes-2026-04-14"
KEY = f"records:{RECORD}"
URL = f"/admin/rooms/{KEY}/content"


def token(user: str, role: str = "editor", **extra: Any) -> str:
    now = int(time.time())
    claims = {"sub": user, "iat": now, "exp": now + 600, "role": role, **extra}
    return jwt.encode(claims, SECRET, "HS256")


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


ADMIN = bearer(token("root", role="admin"))


async def start(
    start_server: StartServer, tmp_path: Path, *, persist: bool = False, **overrides: Any
) -> RunningServer:
    data = tmp_path / "civicpress"
    if not data.exists():
        shutil.copytree(FIXTURES, data)
    snapshots: dict[str, Any] = {"enabled": False}
    if persist:
        snapshots = {"enabled": True, "flush_ms": 5, "interval": 0}
    config = make_config(
        auth={"mode": "jwt"},
        data_dir=str(tmp_path / "state"),
        records={"data_dir": str(data), "drafts_dir": str(tmp_path / "drafts")},
        snapshots=snapshots,
        **overrides,
    )
    revocations = Revocations()
    auth = TokenAuthenticator(
        config.auth, hmac_secret=SECRET, keys=None, introspector=None, revocations=revocations
    )
    running: RunningServer = await start_server(
        config, authenticator=auth, hmac_secret=SECRET, revocations=revocations
    )
    return running


def http(running: RunningServer) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.service.http_port}", timeout=10)


def fixture_body() -> str:
    text = next(FIXTURES.glob(f"records/minutes/*/{RECORD}.md")).read_text()
    return text.split("---\n", 2)[2]


def markdown(doc: Doc) -> str:
    return write_markdown(read_fragment(doc.get("default", type=XmlFragment)))


def put_markdown(client: httpx.AsyncClient, text: str, **kwargs: Any) -> Any:
    headers = {**ADMIN, "Content-Type": "text/markdown", **kwargs.pop("headers", {})}
    return client.put(URL, content=text.encode(), headers=headers, **kwargs)


async def test_get_an_unloaded_record_as_markdown_and_as_yjs(
    start_server: StartServer, tmp_path: Path
) -> None:
    running = await start(start_server, tmp_path)
    expected = write_markdown(parse_markdown(fixture_body())[0])
    async with http(running) as client:
        text = await client.get(URL, headers=ADMIN)
        state = await client.get(URL, params={"format": "yjs"}, headers=ADMIN)
    assert text.status_code == 200
    assert text.headers["content-type"].startswith("text/markdown")
    assert text.text == expected
    doc: Doc = Doc()
    doc.apply_update(state.content)
    assert markdown(doc) == expected


async def test_put_changes_only_the_changed_block_for_a_live_editor(
    start_server: StartServer, tmp_path: Path
) -> None:
    running = await start(start_server, tmp_path)
    editor = await running.client(RECORD, token=token("ada"))
    before = write_markdown(parse_markdown(fixture_body())[0])
    await editor.wait_for(lambda: markdown(editor.doc) == before)
    fragment = editor.doc.get("default", type=XmlFragment)
    # The shared types of every block, before: those the edit does not touch must survive
    # (the JS interop test checks carets in them; pycrdt has no XmlText positions).
    blocks_before = list(fragment.children)
    old = "La séance est ouverte à 19 h 02."
    new = "La séance est ouverte à 19 h 05 par la mairesse."
    assert old in before
    async with http(running) as client:
        answer = await put_markdown(client, before.replace(old, new), params={"actor": "api"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["changed"] is True
        await editor.wait_for(lambda: new in markdown(editor.doc))
        assert markdown(editor.doc) == before.replace(old, new)
        # Only the changed characters moved: a small update, not a replaced document.
        assert answer.json()["update_bytes"] < 200
        assert list(fragment.children) == blocks_before
        # The same content again changes nothing.
        again = await put_markdown(client, before.replace(old, new))
        assert again.json()["changed"] is False
        # The API serves what the editors see.
        assert (await client.get(URL, headers=ADMIN)).text == markdown(editor.doc)


async def test_put_with_no_one_connected_is_stored_and_survives_eviction(
    start_server: StartServer, tmp_path: Path
) -> None:
    running = await start(start_server, tmp_path, persist=True, rooms={"grace_period_ms": 100})
    changed = fixture_body().replace("19 h 02", "19 h 30")
    async with http(running) as client:
        answer = await put_markdown(client, changed)
        assert answer.status_code == 200, answer.text
        await eventually(lambda: running.service.rooms.get(KEY) is None)
        # Loaded again from the store, not seeded again from the file.
        text = (await client.get(URL, headers=ADMIN)).text
    assert "19 h 30" in text
    assert "19 h 02" not in text


async def test_bad_input_is_refused_and_nothing_is_applied(
    start_server: StartServer, tmp_path: Path
) -> None:
    running = await start(start_server, tmp_path, rooms={"max_document_bytes": 20_000})
    editor = await running.client(RECORD, token=token("ada"))
    await editor.wait_for(lambda: "19 h 02" in markdown(editor.doc))
    room = running.service.rooms.get(KEY)
    assert room is not None
    applied = room.room.updates_applied
    async with http(running) as client:
        bad_yaml = await put_markdown(client, "---\ntitle: a\nlist: [1,\n---\n\nBody\n")
        not_utf8 = await client.put(
            URL,
            content=b"# Title\n\nline two \xff\n",
            headers={**ADMIN, "Content-Type": "text/markdown"},
        )
        unclosed = await put_markdown(client, "---\ntitle: never closed\n")
        missing = await client.put(
            "/admin/rooms/records:no-such-record/content",
            content=b"x",
            headers={**ADMIN, "Content-Type": "text/markdown"},
        )
        bad_type = await client.get("/admin/rooms/nope:x/content", headers=ADMIN)
        anonymous = await put_markdown(client, "x", headers={"Authorization": ""})
        editor_only = await put_markdown(client, "x", headers=bearer(token("bob")))
        other_room = await put_markdown(
            client,
            "x",
            headers=bearer(
                token("svc", permissions=["records:write-api"], rooms=["records:other"])
            ),
        )
        too_big = await put_markdown(client, "a" * 30_000)
        wrong_type = await client.put(
            URL, content=b"x", headers={**ADMIN, "Content-Type": "image/png"}
        )
        not_yjs = await client.put(
            URL,
            content=b"\xff\xff\xff",
            headers={**ADMIN, "Content-Type": "application/octet-stream"},
        )
        allowed = await put_markdown(
            client,
            fixture_body().replace("19 h 02", "19 h 03"),
            headers=bearer(token("svc", permissions=["records:write-api"], rooms=["records:*"])),
        )
    assert bad_yaml.status_code == 400
    assert bad_yaml.json()["line"] == 4
    assert not_utf8.status_code == 400
    assert not_utf8.json()["line"] == 3
    assert unclosed.status_code == 400
    assert unclosed.json()["line"] == 1
    assert missing.status_code == 404
    assert bad_type.status_code == 404
    assert anonymous.status_code == 401
    assert editor_only.status_code == 403
    assert other_room.status_code == 403
    assert too_big.status_code == 413
    assert wrong_type.status_code == 415
    assert not_yjs.status_code == 400
    # None of the refused requests changed anything; the permitted one did, once.
    assert room.room.updates_applied == applied + 1
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["actor"] == "svc"
    await editor.wait_for(lambda: "19 h 03" in markdown(editor.doc))


async def test_an_admin_token_pinned_to_another_room_may_not_edit_this_one(
    start_server: StartServer, tmp_path: Path
) -> None:
    """The `rooms` claim pins an admin's token too, as the WebSocket path does."""
    running = await start(start_server, tmp_path)
    pinned = bearer(token("root", role="admin", rooms=["records:other"]))
    starred = bearer(token("svc", permissions=["*"], rooms=["records:other"]))
    async with http(running) as client:
        admin_put = await put_markdown(client, "x", headers=pinned)
        star_put = await put_markdown(client, "x", headers=starred)
        admin_get = await client.get(URL, headers=pinned)
        text = (await client.get(URL, headers=ADMIN)).text
    assert admin_put.status_code == 403
    assert star_put.status_code == 403
    assert admin_get.status_code == 403
    assert "19 h 02" in text  # nothing was applied


async def test_a_yjs_update_the_room_would_refuse_gets_400(
    start_server: StartServer, tmp_path: Path
) -> None:
    """A clock padded to a 10-byte var-uint: pycrdt reads it, the room refuses it (its split
    points cannot be read). The pre-check used pycrdt alone, so the room's refusal came
    back as a failed edit: 500 and a stack trace in the log."""
    running = await start(start_server, tmp_path)
    padded = (
        encode_var_uint(1)
        + encode_var_uint(1)
        + encode_var_uint(77)
        + bytes([0x80] * 9 + [0x00])
        + bytes([0x04])
        + encode_var_uint(1)
        + encode_var_string("t")
        + encode_var_string("hi")
        + encode_var_uint(0)
    )
    Doc().apply_update(padded)  # what pycrdt alone accepts
    async with http(running) as client:
        answer = await client.put(
            URL, content=padded, headers={**ADMIN, "Content-Type": "application/octet-stream"}
        )
    assert answer.status_code == 400, answer.text


class Notes(RoomType):
    def __init__(self) -> None:
        super().__init__("notes")


async def test_yjs_update_and_json_for_another_room_type(start_server: StartServer) -> None:
    config = make_config(auth={"mode": "jwt"})
    auth = TokenAuthenticator(
        config.auth, hmac_secret=SECRET, keys=None, introspector=None, revocations=Revocations()
    )
    running: RunningServer = await start_server(
        config,
        authenticator=auth,
        hmac_secret=SECRET,
        room_types=RoomTypeRegistry([RoomType("records"), Notes()]),
    )
    url = "/admin/rooms/notes:n1/content"
    watcher = await YClient.connect(
        running.nursery, running.url("n1", "notes"), token=token("ada", permissions=["notes:view"])
    )
    source: Doc = Doc()
    source.get("meta", type=Map)["status"] = "draft"
    async with http(running) as client:
        refused = await client.put(
            url, content=b"# no", headers={**ADMIN, "Content-Type": "text/markdown"}
        )
        put = await client.put(
            url,
            content=source.get_update(),
            headers={**ADMIN, "Content-Type": "application/octet-stream"},
            params={"actor": "importer"},
        )
        assert put.status_code == 200, put.text
        await watcher.wait_for(lambda: watcher.doc.get("meta", type=Map).get("status") == "draft")
        shown = await client.get(url, headers=ADMIN)
        # An id no WebSocket route accepts (a control character) is no room here either.
        bad_id = await client.get("/admin/rooms/notes:a%00b/content", headers=ADMIN)
    assert refused.status_code == 415
    assert bad_id.status_code == 404
    assert shown.json()["roots"] == {"meta": {"status": "draft"}}


async def test_put_with_if_match_keeps_what_was_typed_since_the_get(
    start_server: StartServer, tmp_path: Path
) -> None:
    running = await start(start_server, tmp_path)
    editor = await running.client(RECORD, token=token("ada"))
    await editor.wait_for(lambda: "19 h 02" in markdown(editor.doc))
    async with http(running) as client:
        got = await client.get(URL, headers=ADMIN)
        etag = got.headers["etag"]

        def type_after_the_get(doc: Doc) -> None:
            fragment = doc.get("default", type=XmlFragment)
            for block in fragment.children:
                if "ouverte" in str(block):
                    text = block.children[0]  # type: ignore[union-attr]
                    text.insert(len(text), " Typed meanwhile.")  # type: ignore[call-arg]

        await editor.edit(type_after_the_get)
        room = running.service.rooms.get(KEY)
        assert room is not None
        await eventually(lambda: "Typed meanwhile." in markdown(room.room.doc))
        wanted = got.text.replace("19 h 02", "19 h 05").replace("Adopté", "Approuvé")
        merged = await put_markdown(client, wanted, headers={"If-Match": etag})
        assert merged.status_code == 200, merged.text
        assert merged.json()["merged"] is True
        assert merged.json()["conflicts"] == 0
        await editor.wait_for(lambda: "Approuvé" in markdown(editor.doc))
        assert "La séance est ouverte à 19 h 05. Typed meanwhile." in markdown(editor.doc)
        stale = await put_markdown(client, wanted, headers={"If-Match": '"0123"'})
        assert stale.status_code == 412
        # Without If-Match, the PUT says what the document is: the typing goes.
        plain = await put_markdown(client, wanted)
        assert plain.json()["changed"] is True
        await editor.wait_for(lambda: "Typed meanwhile." not in markdown(editor.doc))


async def test_a_document_at_its_size_limit_takes_no_server_edit(start_server: StartServer) -> None:
    config = make_config(auth={"mode": "jwt"}, rooms={"max_document_bytes": 3000})
    auth = TokenAuthenticator(
        config.auth, hmac_secret=SECRET, keys=None, introspector=None, revocations=Revocations()
    )
    running: RunningServer = await start_server(
        config, authenticator=auth, hmac_secret=SECRET, room_types=RoomTypeRegistry([Notes()])
    )
    url = "/admin/rooms/notes:big/content"
    headers = {**ADMIN, "Content-Type": "application/octet-stream"}
    source: Doc = Doc()
    answers = []
    async with http(running) as client:
        for n in range(3):
            before = source.get_state()
            source.get(f"part{n}", type=Text).insert(0, "x" * 1600)
            answer = await client.put(url, content=source.get_update(before), headers=headers)
            answers.append(answer.status_code)
    assert answers == [200, 200, 413]
