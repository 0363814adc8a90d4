"""The operations port through real HTTP requests: health, readiness, metrics, admin, demo."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import pytest
import trio
from pycrdt import Text

from civicrealtime.auth import Identity
from civicrealtime.auth import revocation as revocation_module
from civicrealtime.auth.revocation import Revocations
from civicrealtime.auth.token_auth import TokenAuthenticator
from civicrealtime.protocol.closecodes import CloseCode
from civicrealtime.rooms import MemoryOnly, RoomType, RoomTypeRegistry

from . import processes
from .conftest import RunningServer, StartServer, make_config
from .polling import eventually
from .ydoc_client import YClient

SECRET = b"h" * 48


def token(user: str, role: str = "editor", **extra: Any) -> str:
    now = int(time.time())
    claims = {"sub": user, "iat": now, "exp": now + 600, "role": role, **extra}
    return jwt.encode(claims, SECRET, "HS256")


async def start(start_server: StartServer, **overrides: Any) -> RunningServer:
    auth_overrides = overrides.pop("auth", {})
    config = make_config(auth={"mode": "jwt", **auth_overrides}, **overrides)
    revocations = Revocations()
    auth = TokenAuthenticator(
        config.auth, hmac_secret=SECRET, keys=None, introspector=None, revocations=revocations
    )
    running: RunningServer = await start_server(
        config, authenticator=auth, hmac_secret=SECRET, revocations=revocations
    )
    return running


def http(running: RunningServer) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.service.http_port}", timeout=5)


def admin_headers(user: str = "root") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(user, role='admin')}"}


async def test_health_and_ready(start_server: StartServer) -> None:
    running = await start(start_server)
    async with http(running) as client:
        health = await client.get("/health")
        ready = await client.get("/ready")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert health.json()["reasons"] == []
    assert ready.status_code == 200
    assert ready.json() == {"ready": True}


async def test_metrics_after_scripted_traffic(start_server: StartServer) -> None:
    running = await start(start_server)
    a = await running.client("m", token=token("a"))
    b = await running.client("m", token=token("b"))
    await b.wait_for(lambda: len(b.binary) >= 2)
    await a.edit(lambda d: d.get("t", type=Text).insert(0, "hi"))
    await b.wait_for(lambda: b.text("t") == "hi")
    refused = await running.client("m", token="garbage")
    await refused.wait_for(lambda: refused.closed is not None)
    async with http(running) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'civicrealtime_connections{room_type="records"} 2.0' in text
    assert 'civicrealtime_rooms{state="live"} 1.0' in text
    assert 'civicrealtime_messages_received_total{type="sync_update"} 1.0' in text
    assert "civicrealtime_updates_applied_total 1.0" in text
    assert 'civicrealtime_auth_failures_total{reason="invalid_token"} 1.0' in text
    assert 'civicrealtime_closes_total{code="4001"} 1.0' in text
    assert 'civicrealtime_messages_sent_total{type="sync_step2"}' in text
    assert "civicrealtime_hydration_seconds_count 1.0" in text
    assert "civicrealtime_event_loop_lag_seconds" in text
    # One update relayed to one other member.
    assert "civicrealtime_fanout_deliveries_total 1.0" in text


async def test_admin_refused_without_a_valid_admin_token(start_server: StartServer) -> None:
    running = await start(start_server)
    async with http(running) as client:
        assert (await client.get("/admin/rooms")).status_code == 401
        bad = {"Authorization": "Bearer nope.nope.nope"}
        assert (await client.get("/admin/rooms", headers=bad)).status_code == 401
        editor = {"Authorization": f"Bearer {token('ed')}"}
        assert (await client.get("/admin/rooms", headers=editor)).status_code == 403
        ok = await client.get("/admin/rooms", headers=admin_headers())
    assert ok.status_code == 200
    assert ok.json() == {"rooms": []}


async def test_static_admin_token_file(start_server: StartServer, tmp_path: Path) -> None:
    path = tmp_path / "admin-token"
    path.write_text("static-admin-token-0123456789\n")
    running = await start(start_server, http={"port": 0, "admin_token_file": str(path)})
    async with http(running) as client:
        good = {"Authorization": "Bearer static-admin-token-0123456789"}
        assert (await client.get("/admin/rooms", headers=good)).status_code == 200
        wrong = {"Authorization": "Bearer static-admin-token-012345678X"}
        assert (await client.get("/admin/rooms", headers=wrong)).status_code == 401


async def test_admin_lists_and_inspects_rooms(start_server: StartServer) -> None:
    running = await start(start_server)
    a = await running.client("inspect", token=token("ada", name="Ada"))
    await a.set_awareness(99, {"user": {"name": "Ada", "color": "#f00"}})
    await a.wait_for(lambda: 99 in a.awareness)
    await a.edit(lambda d: d.get("t", type=Text).insert(0, "x" * 100))
    await eventually(lambda: running.service.rooms.get("records:inspect").room.updates_applied)
    async with http(running) as client:
        rooms = (await client.get("/admin/rooms", headers=admin_headers())).json()["rooms"]
        detail = await client.get("/admin/rooms/records%3Ainspect", headers=admin_headers())
        missing = await client.get("/admin/rooms/records%3Anope", headers=admin_headers())
    assert [r["room"] for r in rooms] == ["records:inspect"]
    assert rooms[0]["connections"] == 1
    assert rooms[0]["size_bytes"] > 100
    body = detail.json()
    assert body["participants"][0]["user_id"] == "ada"
    assert body["participants"][0]["access"] == "edit"
    assert body["awareness"] == {"99": {"user": {"name": "Ada", "color": "#f00"}}}
    assert missing.status_code == 404


async def test_admin_revocation_closes_sockets_on_two_rooms(start_server: StartServer) -> None:
    running = await start(start_server)
    mine = token("mallory")
    in_a = await running.client("r1", token=mine)
    in_b = await running.client("r2", token=mine)
    other = await running.client("r1", token=token("trent"))
    for c in (in_a, in_b, other):
        await c.wait_for(lambda c=c: len(c.binary) >= 2)
    async with http(running) as client:
        response = await client.post(
            "/admin/revoke",
            headers=admin_headers(),
            json={"user_id": "mallory", "reason": "account closed"},
        )
        bad = await client.post("/admin/revoke", headers=admin_headers(), json={"x": 1})
    assert response.json() == {
        "revoked": True,
        "connections_closed": 2,
        "persisted": False,
        "note": "snapshots are disabled: the revocation lasts until the daemon stops",
    }
    assert bad.status_code == 400
    for c in (in_a, in_b):
        await c.wait_for(lambda c=c: c.closed is not None)
        assert c.closed is not None
        assert c.closed[0] == CloseCode.AUTH_FAILED
        assert '"SESSION_REVOKED"' in (c.closed[1] or "")
    assert other.closed is None


async def test_admin_token_revocation_lasts_until_the_tokens_expiry(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #20: a token-id revocation was forgotten after 24 h; a 7-day token came back."""
    running = await start(start_server)
    live = await running.client("r1", token=token("mallory", jti="live-one"))
    await live.wait_for(lambda: len(live.binary) >= 2)
    now = time.time()
    async with http(running) as client:
        week = await client.post(
            "/admin/revoke",
            headers=admin_headers(),
            json={"token_id": "week-long", "expires_at": now + 7 * 86400},
        )
        forever = await client.post(
            "/admin/revoke", headers=admin_headers(), json={"token_id": "unknown-expiry"}
        )
        # No expiry given: the live session holding this id tells it (exp = now + 600).
        from_session = await client.post(
            "/admin/revoke", headers=admin_headers(), json={"token_id": "live-one"}
        )
        bad = await client.post(
            "/admin/revoke",
            headers=admin_headers(),
            json={"token_id": "x", "expires_at": "next week"},
        )
        # A JSON integer too large for a float: a 400, not a 500 with a traceback.
        huge = await client.post(
            "/admin/revoke",
            headers=admin_headers(),
            json={"token_id": "x", "expires_at": 10**400},
        )
    assert [r.status_code for r in (week, forever, from_session)] == [200, 200, 200]
    assert from_session.json()["connections_closed"] == 1
    assert bad.status_code == 400
    assert huge.status_code == 400, huge.text
    revocations = running.service.revocations

    def revoked(token_id: str) -> bool:
        return revocations.is_revoked(Identity(user_id="mallory", token_id=token_id))

    monkeypatch.setattr(revocation_module.time, "time", lambda: now + 2 * 86400)
    revocations.revoke_token("prune", None)  # pruning runs on every revocation
    assert revoked("week-long") and revoked("unknown-expiry")
    assert not revoked("live-one")  # its token expired 10 minutes after it was revoked
    monkeypatch.setattr(revocation_module.time, "time", lambda: now + 8 * 86400)
    assert not revoked("week-long")
    assert revoked("unknown-expiry")


async def test_admin_token_revocation_falls_back_to_max_token_lifetime(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = await start(start_server, auth={"max_token_lifetime": 3 * 86400})
    now = time.time()
    async with http(running) as client:
        response = await client.post(
            "/admin/revoke", headers=admin_headers(), json={"token_id": "t"}
        )
    assert response.status_code == 200
    identity = Identity(user_id="mallory", token_id="t")
    monkeypatch.setattr(revocation_module.time, "time", lambda: now + 2 * 86400)
    assert running.service.revocations.is_revoked(identity)
    # A token the issuer minted just now, its clock 30 s (the leeway) ahead, lasting the
    # longest accepted (max_token_lifetime + leeway) is still valid here: keep its id.
    monkeypatch.setattr(revocation_module.time, "time", lambda: now + 3 * 86400 + 59)
    assert running.service.revocations.is_revoked(identity)
    monkeypatch.setattr(revocation_module.time, "time", lambda: now + 3 * 86400 + 120)
    assert not running.service.revocations.is_revoked(identity)


async def test_admin_names_rooms_in_nfc_like_the_websocket_port(
    start_server: StartServer,
) -> None:
    running = await start(start_server)
    member = await running.client(quote("cafe\u0301", safe=""), token=token("ada"))
    await member.wait_for(lambda: len(member.binary) >= 2)
    async with http(running) as client:
        listed = await client.get("/admin/rooms", headers=admin_headers())
        decomposed = await client.get(
            "/admin/rooms/" + quote("records:cafe\u0301", safe=""), headers=admin_headers()
        )
    assert [r["room"] for r in listed.json()["rooms"]] == ["records:caf\u00e9"]
    assert decomposed.status_code == 200, decomposed.text


async def test_admin_closes_a_room(start_server: StartServer) -> None:
    running = await start(start_server)
    c = await running.client("closing", token=token("u"))
    await c.wait_for(lambda: len(c.binary) >= 2)
    async with http(running) as client:
        closed = await client.post("/admin/rooms/records%3Aclosing/close", headers=admin_headers())
        snapshot = await client.post(
            "/admin/rooms/records%3Aother/snapshot", headers=admin_headers()
        )
    assert closed.json() == {"closed": "records:closing"}
    assert snapshot.status_code == 404
    await c.wait_for(lambda: c.closed is not None)
    assert c.closed is not None
    assert c.closed[0] == CloseCode.SHUTTING_DOWN
    await eventually(lambda: running.service.rooms.get("records:closing") is None)


class Explodes(MemoryOnly):
    def received(self, key: str, update: bytes, origin: object = None) -> None:
        raise RuntimeError("boom")


async def test_health_degraded_after_a_room_crash(start_server: StartServer) -> None:
    registry = RoomTypeRegistry([RoomType(name="records", hooks=Explodes())])
    config = make_config()
    running = await start_server(config, room_types=registry)
    c = await running.client("x")
    await c.edit(lambda d: d.get("t", type=Text).insert(0, "boom"))
    await c.wait_for(lambda: c.closed is not None)
    async with http(running) as client:
        health = (await client.get("/health")).json()
    assert health["status"] == "degraded"
    assert any("crashed" in reason for reason in health["reasons"])


async def test_health_answers_while_a_room_is_busy(start_server: StartServer) -> None:
    running = await start(start_server)
    writer = await running.client("busy", token=token("w"))
    await writer.wait_for(lambda: len(writer.binary) >= 2)
    done = trio.Event()

    async def hammer() -> None:
        i = 0
        while not done.is_set():
            await writer.edit(lambda d, i=i: d.get("t", type=Text).insert(0, "y" * 50))
            i += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hammer)
        async with http(running) as client:
            for _ in range(20):
                with trio.fail_after(2):  # a bound, not a measurement
                    assert (await client.get("/health")).status_code == 200
        done.set()


async def test_demo_page_and_tokens(start_server: StartServer) -> None:
    running = await start(start_server)
    assert running.service.demo_enabled  # loopback: on by default
    async with http(running) as client:
        minted = await client.post("/demo/token", json={"name": "Ada", "role": "public"})
        refused = await client.post("/demo/token", json={"name": "", "role": "root"})
    assert refused.status_code == 400
    body = minted.json()
    assert body["expires_in"] == 600  # short-lived by default (issue #20)
    assert body["ws_url"] == f"ws://127.0.0.1:{running.port}/realtime"
    claims = jwt.decode(body["token"], SECRET, algorithms=["HS256"])
    assert claims["name"] == "Ada"
    assert claims["role"] == "public"
    viewer = await running.client("demo", token=body["token"])
    await viewer.wait_for(lambda: len(viewer.binary) >= 2)


async def test_demo_token_refuses_dns_rebinding_and_other_sites(
    start_server: StartServer,
) -> None:
    """Issue #20, failure 6: another site's page must not get an editor token."""
    running = await start(start_server)
    port = running.service.http_port
    body = {"name": "Mallory", "role": "editor"}
    async with http(running) as client:
        rebound = await client.post(
            "/demo/token",
            content=json.dumps(body),
            headers={
                "Host": "attacker.example",
                "Origin": "http://attacker.example",
                "Content-Type": "text/plain",
            },
        )
        rebound_json = await client.post(
            "/demo/token",
            json=body,
            headers={
                "Host": f"attacker.example:{port}",
                "Origin": f"http://attacker.example:{port}",
            },
        )
        cross_site = await client.post(
            "/demo/token", json=body, headers={"Origin": "http://attacker.example"}
        )
        plain_text = await client.post(
            "/demo/token", content=json.dumps(body), headers={"Content-Type": "text/plain"}
        )
        # The page itself, by every name of a loopback port.
        own = [
            await client.post(
                "/demo/token",
                json=body,
                headers={"Host": f"{name}:{port}", "Origin": f"http://{name}:{port}"},
            )
            for name in ("127.0.0.1", "localhost", "[::1]")
        ]
    for refused in (rebound, rebound_json, cross_site):
        assert refused.status_code == 403, refused.text
        assert "token" not in refused.json()
    assert plain_text.status_code == 415
    assert [r.status_code for r in own] == [200, 200, 200]


async def test_demo_token_answers_a_configured_public_name(start_server: StartServer) -> None:
    running = await start(start_server, demo={"allowed_hosts": ["Demo.Civic.Example"]})
    async with http(running) as client:
        proxied = await client.post(
            "/demo/token",
            json={"name": "Ada"},
            headers={"Host": "demo.civic.example", "Origin": "https://demo.civic.example"},
        )
    assert proxied.status_code == 200, proxied.text


async def test_demo_token_carries_the_configured_issuer_and_audience(
    start_server: StartServer,
) -> None:
    running = await start(
        start_server, auth={"mode": "jwt", "issuer": "https://civic.example", "audience": "rt"}
    )
    async with http(running) as client:
        minted = await client.post("/demo/token", json={"name": "Ada", "role": "public"})
    token = minted.json()["token"]
    claims = jwt.decode(
        token, SECRET, algorithms=["HS256"], issuer="https://civic.example", audience="rt"
    )
    assert claims["name"] == "Ada"
    # The daemon, configured with them, accepts its own demo token.
    viewer = await running.client("demo", token=token)
    await viewer.wait_for(lambda: len(viewer.binary) >= 2)


@pytest.mark.parametrize(
    "auth",
    [
        # demo.token_ttl (600 s by default) is longer than the daemon accepts.
        {"max_token_lifetime": 120},
        # HS256 is not among the accepted algorithms.
        {"algorithms": ["HS384"]},
    ],
)
async def test_the_daemon_accepts_its_own_demo_token(
    start_server: StartServer, auth: dict[str, Any]
) -> None:
    running = await start(start_server, auth=auth)
    async with http(running) as client:
        minted = await client.post("/demo/token", json={"name": "Ada", "role": "public"})
    body = minted.json()
    viewer = await running.client("demo", token=body["token"])
    await viewer.wait_for(lambda: viewer.closed is not None or len(viewer.binary) >= 2)
    assert viewer.closed is None, viewer.closed
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert body["expires_in"] == claims["exp"] - claims["iat"]


async def _post_declaring(port: int, path: str, length: int, body_bytes: int) -> bytes:
    """POST with `Content-Length: length`, sending up to `body_bytes` while reading."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
    answer = bytearray()

    async def send_body() -> None:
        chunk = b"a" * (1 << 20)
        sent = 0
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while sent < body_bytes:
                await stream.send_all(chunk)
                sent += len(chunk)

    with trio.fail_after(10):
        async with stream, trio.open_nursery() as nursery:
            await stream.send_all(head.encode())
            nursery.start_soon(send_body)
            while b"\r\n\r\n" not in answer:
                data = await stream.receive_some(65536)
                if not data:
                    break
                answer += data
            nursery.cancel_scope.cancel()
    return bytes(answer)


async def test_an_oversized_body_is_refused_at_once(start_server: StartServer) -> None:
    """Issue #20: a 100 MB POST to the ops port; 413 at once, and no ERROR in the log."""
    running = await start(start_server)
    port = running.service.http_port
    assert port is not None
    # Declared only: the answer comes before any of the body, on any route.
    for path in ("/demo/token", "/admin/revoke", "/health"):
        answer = await _post_declaring(port, path, 100 * 1024 * 1024, 0)
        assert answer.startswith(b"HTTP/1.1 413"), (path, answer)
        assert b"connection: close" in answer.lower()


async def test_a_100_mb_post_logs_no_error(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    running = await start(start_server)
    port = running.service.http_port
    assert port is not None
    caplog.clear()  # the start-up warnings (no snapshots) are not the point
    with caplog.at_level(logging.DEBUG):
        for path in ("/demo/token", "/admin/revoke"):
            answer = await _post_declaring(port, path, 100 * 1024 * 1024, 100 * 1024 * 1024)
            assert answer.startswith(b"HTTP/1.1 413"), (path, answer)
        async with http(running) as client:
            assert (await client.get("/health")).status_code == 200
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_demo_is_off_when_disabled(start_server: StartServer) -> None:
    running = await start(start_server, demo={"enabled": False})
    async with http(running) as client:
        assert (await client.get("/demo/")).status_code == 404
        assert (await client.post("/demo/token", json={"name": "x"})).status_code == 404


def test_json_log_lines_hold_no_token(tmp_path: Path) -> None:
    """A daemon subprocess logging JSON: every line parses, and no token appears."""
    secret = "j" * 48
    port = processes.free_port()
    good = jwt.encode({"sub": "u", "exp": int(time.time()) + 60, "role": "editor"}, secret, "HS256")
    bad = good[:-6] + "AAAAAA"
    proc = processes.spawn(
        tmp_path,
        f"host: 127.0.0.1\nport: {port}\nhttp:\n  port: 0\n"
        "logging:\n  format: json\n  level: debug\n",
        port=port,
        env={"CIVICREALTIME_JWT_SECRET": secret},
    )
    try:

        async def visit() -> None:
            async with trio.open_nursery() as nursery:
                for t in (good, bad):
                    url = f"ws://127.0.0.1:{port}/realtime/records/logs?token={t}"
                    c = await YClient.connect(nursery, url, token=t)
                    await c.wait_for(lambda c=c: c.closed is not None or len(c.binary) >= 2)
                    await c.ws.aclose()
                nursery.cancel_scope.cancel()

        trio.run(visit)
        assert processes.terminate(proc) == 0
    finally:
        processes.stop(proc)
    lines = (proc.stderr.read() if proc.stderr else "").splitlines()
    records = [json.loads(line) for line in lines]
    events = {r["event"] for r in records}
    assert {"connection.opened", "connection.closed", "auth.failed", "server.stopped"} <= events
    for line in lines:
        assert good.split(".")[2] not in line
        assert bad.split(".")[2] not in line
    opened = next(r for r in records if r["event"] == "connection.opened")
    assert opened["user"] == "u"
