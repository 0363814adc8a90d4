"""Access control through the real server: every close code, viewers, expiry, revocation."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import jwt
import pytest
import trio
from pycrdt import Doc, Text
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    connect_websocket_url,
    open_websocket_url,
)

from civicrealtime.auth.revocation import Revocations
from civicrealtime.auth.token_auth import TokenAuthenticator
from civicrealtime.config import RealtimeConfig
from civicrealtime.protocol import messages
from civicrealtime.protocol.closecodes import CloseCode
from civicrealtime.protocol.control import CONTROL_SUBPROTOCOL

from .conftest import RunningServer, StartServer, make_config
from .polling import eventually
from .ydoc_client import YClient

SECRET = b"k" * 48


def token(user: str = "alice", role: str | None = "editor", **extra: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user, "iat": now, "exp": now + 600, "role": role}
    claims.update(extra)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, SECRET, "HS256")


async def start_with_tokens(start_server: StartServer, **overrides: Any) -> RunningServer:
    auth_overrides = {"mode": "jwt", "leeway": 0, **overrides.pop("auth", {})}
    config: RealtimeConfig = make_config(auth=auth_overrides, **overrides)
    revocations = Revocations()
    auth = TokenAuthenticator(
        config.auth, hmac_secret=SECRET, keys=None, introspector=None, revocations=revocations
    )
    # The service revokes through (and restores into) the list the authenticator consults.
    running: RunningServer = await start_server(config, authenticator=auth, revocations=revocations)
    return running


async def joined(running: RunningServer, room: str = "abc", **kwargs: Any) -> YClient:
    client = await running.client(room, **kwargs)
    await client.wait_for(lambda: len(client.binary) >= 2 or client.closed is not None)
    return client


async def refused(running: RunningServer, room: str = "abc", **kwargs: Any) -> YClient:
    client = await running.client(room, **kwargs)
    await client.wait_for(lambda: client.closed is not None)
    return client


async def test_missing_and_bad_tokens_close_4001(start_server: StartServer) -> None:
    running = await start_with_tokens(start_server)
    for bad in (None, "not-a-jwt", token()[:-4] + "AAAA"):
        client = await refused(running, token=bad)
        assert client.closed is not None
        assert client.closed[0] == CloseCode.AUTH_FAILED
        assert client.events("error")[0]["error"]["code"] == "AUTH_FAILED"
        assert not client.binary


async def test_no_view_permission_closes_4003(start_server: StartServer) -> None:
    running = await start_with_tokens(start_server)
    for bad in (token(role="stranger"), token(rooms=["records:other"])):
        client = await refused(running, token=bad)
        assert client.closed is not None
        assert client.closed[0] == CloseCode.PERMISSION_DENIED
        assert client.events("error")[0]["error"]["code"] == "PERMISSION_DENIED"
    allowed = await joined(running, token=token(rooms=["records:*"]))
    assert allowed.closed is None


async def test_viewer_reads_but_never_writes(start_server: StartServer) -> None:
    running = await start_with_tokens(start_server)
    editor = await joined(running, token=token("ed"))
    await editor.edit(lambda d: d.get("t", type=Text).insert(0, "official text"))
    viewer = await joined(running, token=token("vi", role="public"))
    await viewer.wait_for(lambda: viewer.text("t") == "official text")
    # The empty step 2 that y-websocket sends after syncing is not an edit.
    await viewer.send_step2(viewer.doc.get_state())
    await viewer.ws.send_message(
        messages.encode_sync_step2(viewer.doc.get_update(viewer.doc.get_state()))
    )
    # Live updates from the editor still reach the viewer.
    await editor.edit(lambda d: d.get("t", type=Text).insert(0, ">"))
    await viewer.wait_for(lambda: viewer.text("t") == ">official text")
    assert not viewer.events("error")
    # Now the viewer types: twice, but is told once.
    await viewer.edit(lambda d: d.get("t", type=Text).insert(0, "vandal "))
    await viewer.edit(lambda d: d.get("t", type=Text).insert(0, "again "))
    await viewer.wait_for(lambda: bool(viewer.events("error")))
    await editor.edit(lambda d: d.get("t", type=Text).insert(0, "!"))
    # The viewer's own refused keystrokes stay in its local copy (as in any y-websocket
    # client); it still receives the editor's change.
    await viewer.wait_for(lambda: "!" in viewer.text("t"))
    assert [e["error"]["code"] for e in viewer.events("error")] == ["PERMISSION_DENIED"]
    late = await joined(running, token=token("late"))
    await late.wait_for(lambda: late.text("t") == "!>official text")
    assert editor.text("t") == "!>official text"
    handle = running.service.rooms.get("records:abc")
    assert handle is not None
    assert str(handle.room.doc.get("t", type=Text)) == "!>official text"


async def test_viewer_presence_is_configurable(start_server: StartServer) -> None:
    running = await start_with_tokens(start_server, auth={"viewers_publish_awareness": False})
    editor = await joined(running, token=token("ed"))
    viewer = await joined(running, token=token("vi", role="public"))
    await viewer.set_awareness(77, {"user": {"name": "viewer"}})
    await editor.set_awareness(78, {"user": {"name": "editor"}})
    await viewer.wait_for(lambda: 78 in viewer.awareness)
    assert 77 not in editor.awareness
    assert 77 not in viewer.awareness


async def test_token_expiry_closes_the_connection(start_server: StartServer) -> None:
    running = await start_with_tokens(start_server)
    short = token(exp=int(time.time()) + 2)
    client = await joined(running, token=short)
    await client.wait_for(lambda: client.closed is not None, within=10)
    assert client.closed is not None
    assert client.closed[0] == CloseCode.AUTH_FAILED
    assert '"TOKEN_EXPIRED"' in (client.closed[1] or "")
    assert client.events("session.revoked")[0]["reason"] == "token expired"


async def test_revocation_closes_every_room_of_the_user(start_server: StartServer) -> None:
    running = await start_with_tokens(start_server)
    alice_token = token("alice")
    in_a = await joined(running, "room-a", token=alice_token)
    in_b = await joined(running, "room-b", token=alice_token)
    bob = await joined(running, "room-a", token=token("bob"))
    revoked = running.service.server.revoke(user_id="alice", reason="account disabled")
    assert revoked.connections_closed == 2
    # Still closing: a second revocation neither tells them again nor counts them.
    again = running.service.server.revoke(user_id="alice", reason="twice")
    assert again.connections_closed == 0
    for client in (in_a, in_b):
        await client.wait_for(lambda c=client: c.closed is not None)
        assert client.closed is not None
        assert client.closed[0] == CloseCode.AUTH_FAILED
        assert '"SESSION_REVOKED"' in (client.closed[1] or "")
        assert client.events("session.revoked")[0]["reason"] == "account disabled"
    assert bob.closed is None
    again = await refused(running, "room-a", token=alice_token)
    assert again.closed is not None
    assert again.closed[0] == CloseCode.AUTH_FAILED


async def test_revocation_by_token_id(start_server: StartServer) -> None:
    running = await start_with_tokens(start_server)
    stolen = await joined(running, token=token("carol", jti="leaked"))
    kept = await joined(running, token=token("carol", jti="other"))
    revoked = running.service.server.revoke(token_id="leaked", reason="token leaked")
    assert revoked.connections_closed == 1
    await stolen.wait_for(lambda: stolen.closed is not None)
    assert kept.closed is None


async def test_per_ip_limit_sees_the_client_behind_a_trusted_proxy(
    start_server: StartServer,
) -> None:
    running = await start_with_tokens(
        start_server,
        rate_limiting={"connections_per_ip": 2, "trusted_proxies": ["127.0.0.1"]},
    )
    url = running.url("ip")

    async def through_proxy(client_ip: str) -> WebSocketConnection:
        return await connect_websocket_url(
            running.nursery,
            url,
            subprotocols=[f"auth.{token(client_ip)}", CONTROL_SUBPROTOCOL],
            extra_headers=[(b"X-Forwarded-For", client_ip.encode())],
        )

    conns = [await through_proxy(ip) for ip in ("198.51.100.1", "198.51.100.1", "198.51.100.2")]
    for ws in conns:
        assert "connection.ack" in await ws.get_message()
    third = await through_proxy("198.51.100.1")
    frame = await third.get_message()
    assert "CONNECTION_LIMIT_EXCEEDED" in frame
    with pytest.raises(ConnectionClosed) as info:
        await third.get_message()
    assert info.value.reason.code == CloseCode.LIMIT_EXCEEDED
    for ws in conns:
        await ws.aclose()


async def test_flood_is_slowed_warned_then_closed_4013(start_server: StartServer) -> None:
    running = await start_with_tokens(
        start_server,
        rate_limiting={"messages_per_second": 20, "burst": 5, "flood_close_after": 0.5},
    )
    flooder = await joined(running, "flood", token=token())
    watcher = await joined(running, "flood", token=token("w"))
    doc = Doc()
    text = doc.get("t", type=Text)
    updates = []
    sub = doc.observe(lambda e: updates.append(e.update))
    for i in range(100):
        text.insert(len(str(text)), str(i % 10))
    doc.unobserve(sub)
    with trio.move_on_after(10):
        for update in updates:
            await flooder.ws.send_message(messages.encode_sync_update(update))
    await flooder.wait_for(lambda: flooder.closed is not None, within=10)
    assert flooder.closed is not None
    assert flooder.closed[0] == CloseCode.TOO_MANY_EDITS
    notices = flooder.events("notice")
    assert len(notices) == 1
    assert notices[0]["notice"]["message"] == "Rate limit approaching"
    # What was read before the close was applied and relayed, in order: slowed, not lost.
    received = watcher.text("t")
    assert received == str(text)[: len(received)]
    assert len(received) > 5


async def test_normal_typing_is_never_slowed(start_server: StartServer) -> None:
    running = await start_with_tokens(start_server)
    typist = await joined(running, "typing", token=token())
    reader = await joined(running, "typing", token=token("r"))
    for i in range(60):  # two seconds at 15 keystrokes/s, update + caret each
        await typist.edit(lambda d, i=i: d.get("t", type=Text).insert(i, "x"))
        await typist.set_awareness(5, {"cursor": i})
        await trio.sleep(1 / 15)
    await reader.wait_for(lambda: reader.text("t") == "x" * 60)
    connection = next(iter(running.service.server.connections.values()))
    assert all(c.throttled == 0 for c in running.service.server.connections.values())
    assert connection.throttled == 0
    assert not typist.events("notice")


async def test_foreign_origin_is_refused_with_403(start_server: StartServer) -> None:
    running = await start_with_tokens(start_server, allowed_origins=["https://civic.example"])
    with pytest.raises(ConnectionRejected) as info:
        async with open_websocket_url(
            running.url(), extra_headers=[(b"Origin", b"https://evil.example")]
        ):
            pass
    assert info.value.status_code == 403
    async with open_websocket_url(
        running.url(),
        subprotocols=[f"auth.{token()}", CONTROL_SUBPROTOCOL],
        extra_headers=[(b"Origin", b"https://civic.example")],
    ) as ws:
        assert "connection.ack" in await ws.get_message()


async def test_oversized_message_closes_1009(start_server: StartServer) -> None:
    running = await start_with_tokens(start_server, connection={"max_message_size": 2048})
    client = await joined(running, token=token())
    await client.ws.send_message(b"\x00\x02" + b"\x80" * 4096)
    await client.wait_for(lambda: client.closed is not None)
    assert client.closed is not None
    assert client.closed[0] == CloseCode.MESSAGE_TOO_BIG


async def test_document_size_limit_refuses_growth(start_server: StartServer) -> None:
    running = await start_with_tokens(
        start_server, rooms={"max_document_bytes": 2000, "document_warn_bytes": 1000}
    )
    writer = await joined(running, "big", token=token())
    other = await joined(running, "big", token=token("o"))
    await writer.edit(lambda d: d.get("t", type=Text).insert(0, "a" * 1200))
    await other.wait_for(lambda: len(other.text("t")) == 1200)
    await writer.edit(lambda d: d.get("t", type=Text).insert(0, "b" * 1200))
    await writer.wait_for(lambda: bool(writer.events("error")))
    assert writer.events("error")[0]["error"]["code"] == "DOCUMENT_TOO_LARGE"
    handle = running.service.rooms.get("records:big")
    assert handle is not None
    assert len(str(handle.room.doc.get("t", type=Text))) == 1200


async def test_query_token_only_when_allowed_and_never_logged(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret_token = token("quinn")
    closed = await start_with_tokens(start_server)
    refused_client = await YClient.connect(closed.nursery, closed.url() + f"?token={secret_token}")
    await refused_client.wait_for(lambda: refused_client.closed is not None)
    assert refused_client.closed is not None
    assert refused_client.closed[0] == CloseCode.AUTH_FAILED
    opened = await start_with_tokens(start_server, auth={"allow_query_token": True, "leeway": 0})
    client = await YClient.connect(opened.nursery, opened.url() + f"?token={secret_token}")
    await client.wait_for(lambda: len(client.binary) >= 2)
    # Only the server's own lines: the test's client library logs the URL it connects to.
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("civicrealtime"))
    assert "auth.query_token_deprecated" in ours
    assert secret_token.split(".")[2] not in ours


async def test_connection_counts_released_after_every_path(start_server: StartServer) -> None:
    running = await start_with_tokens(start_server)
    good, stranger = token("u1"), token("u2", role="stranger")
    for i in range(100):
        which = (good, stranger, "garbage", None)[i % 4]
        client = await running.client(f"c{i % 3}", token=which)
        if i % 8 == 0:
            await client.ws.aclose()  # some leave during setup
        else:
            await client.wait_for(lambda c=client: c.closed is not None or len(c.binary) >= 2)
            await client.ws.aclose()
    server = running.service.server
    await eventually(lambda: not server.connections and server.limits.tracked == 0)


async def test_control_frames_are_decided_per_connection(start_server: StartServer) -> None:
    """In one room, on the defaults: the client that opted in is told, the stock one is not.

    The stock client learns what it must from y-protocols and the close code and reason.
    """
    running = await start_with_tokens(start_server)
    viewers = {
        control: await joined(running, token=token(f"vi-{control}", role="public"), control=control)
        for control in (True, False)
    }
    users = {
        control: await joined(running, token=token(f"u-{control}"), control=control)
        for control in (True, False)
    }
    for viewer in viewers.values():
        await viewer.edit(lambda d: d.get("t", type=Text).insert(0, "vandal"))
        await viewer.ws.send_message(b"\x07")  # invalid
        await viewer.ws.send_message('{"type":"ping"}')  # answered after the invalid frame
    told = viewers[True]
    await told.wait_for(lambda: len(told.events("error")) == 2)
    assert sorted(e["error"]["code"] for e in told.events("error")) == [
        "INVALID_MESSAGE",
        "PERMISSION_DENIED",
    ]
    # The stock viewer gets y-protocols' permission-denied message instead, and its pong.
    stock = viewers[False]
    await stock.wait_for(
        lambda: (
            bool(stock.text_frames)
            and any(isinstance(m, messages.PermissionDenied) for m in stock.binary)
        )
    )
    denied = [m for m in stock.binary if isinstance(m, messages.PermissionDenied)]
    assert [m.reason for m in denied] == ["read-only access"]
    assert [f["type"] for f in stock.text_frames] == ["pong"]
    assert not any(isinstance(m, messages.PermissionDenied) for m in told.binary)
    running.service.server.revoke(user_id="u-True", reason="gone")
    running.service.server.revoke(user_id="u-False", reason="gone")
    for client in users.values():
        await client.wait_for(lambda c=client: c.closed is not None)
        assert client.closed is not None
        assert client.closed[0] == CloseCode.AUTH_FAILED
        assert json.loads(client.closed[1] or "") == {"code": "SESSION_REVOKED", "reason": "gone"}
    assert [e["reason"] for e in users[True].events("session.revoked")] == ["gone"]
    assert users[False].text_frames == []
    assert [f["type"] for f in stock.text_frames] == ["pong"]
