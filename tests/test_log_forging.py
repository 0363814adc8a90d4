"""Hostile client input through every log line that echoes it (issues #18 and #20).

A room id `x user=mallory peer=6.6.6.6` became three JSON fields, and a `sub` holding a
newline forged a `CRITICAL ... admin.granted` line in the text log. Here a daemon gets
hostile room ids, user names, revocation reasons, origins and Host headers; every record
it logs is then rendered both ways and checked: one line, no terminal escapes, no field
that its format string does not name, and each hostile value in its own field, whole.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import pytest
import trio

from civicrealtime.auth.revocation import Revocations
from civicrealtime.auth.token_auth import TokenAuthenticator
from civicrealtime.logs import MAX_VALUE_CHARS, JsonFormatter, TextFormatter

from .conftest import RunningServer, StartServer, make_config

SECRET = b"f" * 48
FORGED = "\n2026-01-01T00:00:00 CRITICAL civicrealtime admin.granted user=root"
# Every kind of hostile text; each must come out as one whole field value.
HOSTILE_USERS = [
    "eve" + FORGED,
    "q\"uo'te",
    "x user=mallory peer=6.6.6.6",
    "\x1b[31mred\x1b[0m\x1b]0;title\x07",
    "bidi\u202eevil\u2028next",
    "back\\slash\r\ttab",
    "U" * 10240,
]
# Room ids cannot hold control characters or exceed 255 bytes (routing refuses them
# before anything is logged): the rest of the hostile shapes.
HOSTILE_ROOMS = ["x user=mallory peer=6.6.6.6", "say \"hi\" 'now'", "a\\b=c", "r" * 255]
HOSTILE_REASONS = ["done" + FORGED, "reason=forged x=1", "\x1b[2J" + "R" * 10240]
HOSTILE_ORIGINS = ['http://evil.example "x=1" user=root', "null peer=6.6.6.6 " + "O" * 5000]
HOSTILE_HOSTS = ["attacker.example peer=6.6.6.6", 'h"ost' + "H" * 5000]
STANDARD = {"ts", "level", "logger", "event", "message", "traceback"}
_PLACEHOLDER_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=%[-#0 +]*\d*(?:\.\d+)?[sdifr]")
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")


def token(user: str, role: str = "editor") -> str:
    now = int(time.time())
    return jwt.encode({"sub": user, "iat": now, "exp": now + 600, "role": role}, SECRET)


def decode_text_value(raw: str) -> str:
    """The test's own reading of a logfmt value: bare, or quoted with escapes."""
    if not raw.startswith('"'):
        return raw
    out: list[str] = []
    body = raw[1:-1]
    i = 0
    simple = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        kind = body[i + 1]
        if kind in simple:
            out.append(simple[kind])
            i += 2
        elif kind == "x":
            out.append(chr(int(body[i + 2 : i + 4], 16)))
            i += 4
        else:
            assert kind == "u", raw
            out.append(chr(int(body[i + 2 : i + 6], 16)))
            i += 6
    return "".join(out)


def text_field(line: str, key: str) -> str | None:
    match = re.search(rf'(?:^|\s){key}=("(?:[^"\\]|\\.)*"|\S*)', line)
    return None if match is None else decode_text_value(match.group(1))


def expected(value: str) -> str:
    if len(value) <= MAX_VALUE_CHARS:
        return value
    return f"{value[:MAX_VALUE_CHARS]}…(+{len(value) - MAX_VALUE_CHARS} chars)"


async def upgrade_with_origin(port: int, origin: str) -> bytes:
    """A WebSocket upgrade from another site's page; the answer's status line."""
    request = (
        f"GET /realtime/records/o HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: {origin}\r\n\r\n"
    )
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(request.encode())
        answer = b""
        while b"\r\n" not in answer:
            data = await stream.receive_some(4096)
            if not data:
                break
            answer += data
    return answer


async def exercise(running: RunningServer) -> None:
    """Drive every path that logs client input; each attempt waits for its answer."""
    if True:
        for room in HOSTILE_ROOMS:
            client = await running.client(quote(room, safe=""), token=token("ok"))
            await client.wait_for(lambda c=client: c.closed is not None or len(c.binary) >= 2)
            await client.ws.aclose()
        for user in HOSTILE_USERS:
            for role in ("editor", "nobody"):  # opened, then denied
                client = await running.client("room", token=token(user, role))
                await client.wait_for(lambda c=client: c.closed is not None or len(c.binary) >= 2)
                await client.ws.aclose()
    for origin in HOSTILE_ORIGINS:
        assert (await upgrade_with_origin(running.port, origin)).startswith(b"HTTP/1.1 403")
    http_port = running.service.http_port
    admin = {"Authorization": f"Bearer {token('root', 'admin')}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=5) as client:
        for reason, user in zip(HOSTILE_REASONS, HOSTILE_USERS, strict=False):
            revoked = await client.post(
                "/admin/revoke", headers=admin, json={"user_id": user, "reason": reason}
            )
            assert revoked.status_code == 200
        for host in HOSTILE_HOSTS:
            refused = await client.post("/demo/token", json={"name": "x"}, headers={"Host": host})
            assert refused.status_code == 403
        for origin in HOSTILE_ORIGINS:
            refused = await client.post(
                "/demo/token", json={"name": "x"}, headers={"Origin": origin}
            )
            assert refused.status_code == 403
        for user in HOSTILE_USERS[:2]:
            refused = await client.post(
                "/admin/revoke", headers={"Authorization": f"Bearer {token(user, 'public')}"}
            )
            # 401: revoked above (the detail names the user); else 403: not an admin.
            assert refused.status_code in (401, 403)


async def test_hostile_input_cannot_forge_log_lines_or_fields(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(
        auth={"mode": "jwt"},
        allowed_origins=["http://good.example"],
        connection={"handshake_timeout": 5},
    )
    revocations = Revocations()
    auth = TokenAuthenticator(
        config.auth, hmac_secret=SECRET, keys=None, introspector=None, revocations=revocations
    )
    with caplog.at_level(logging.DEBUG, logger="civicrealtime"):
        running = await start_server(
            config, authenticator=auth, hmac_secret=SECRET, revocations=revocations
        )
        with trio.fail_after(30):
            await exercise(running)
    text, as_json = TextFormatter(), JsonFormatter()
    seen: set[str] = set()
    records = [r for r in caplog.records if r.name.startswith("civicrealtime")]
    assert records
    for record in records:
        line, document_line = text.format(record), as_json.format(record)
        where = f"{record.msg!r} {line[:300]!r}"
        # One line each, with no terminal escapes and no line separators.
        if not record.exc_info:
            assert "\n" not in line and "\r" not in line, where
        assert _UNSAFE.search(line.split("\n", 1)[0]) is None, where
        assert _UNSAFE.search(document_line) is None, where
        assert len(line.split("\n", 1)[0]) < 3000, where
        document = json.loads(document_line)
        assert re.fullmatch(r"[a-z_]+(\.[a-z_]+)*:?", document["event"]), where
        # No field that the call site did not write.
        named = set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", str(record.msg)))
        assert set(document) - STANDARD <= named, where
        # Each argument in the field its placeholder names, whole, in both forms.
        keys = _PLACEHOLDER_KEY.findall(str(record.msg))
        args: tuple[Any, ...] = record.args if isinstance(record.args, tuple) else ()
        for key, arg in zip(keys, args, strict=False):
            if not isinstance(arg, str):
                continue
            # Whole, or cut by the server before logging (a reason keeps 100 characters).
            related = [
                h
                for h in _all_hostile()
                if h in arg or (h.startswith(arg[:100]) and len(arg) >= 20)
            ]
            if not related:
                continue
            assert document[key] == expected(arg), where
            assert text_field(line, key) == expected(arg), where
            seen.update(related)
    # The exercise reached every hostile value through at least one log line.
    missing = [h[:40] for h in _all_hostile() if h not in seen]
    assert missing == []


def _all_hostile() -> list[str]:
    return HOSTILE_USERS + HOSTILE_ROOMS + HOSTILE_REASONS + HOSTILE_ORIGINS + HOSTILE_HOSTS
