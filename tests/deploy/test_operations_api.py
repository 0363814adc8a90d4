"""docs/operations.md, "The admin API": every documented route is one the daemon serves."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import jwt

from civicrealtime.auth.revocation import Revocations
from civicrealtime.auth.token_auth import TokenAuthenticator

from ..conftest import StartServer, make_config

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
SECRET = b"o" * 48
# What a route answers when the daemon has no such route (the room routes answer 404 too,
# with "no live room ...", for a room not in memory).
NO_ROUTE = ({"error": "not found"}, {"error": "no such admin endpoint"})


def documented_routes() -> list[tuple[str, str]]:
    text = OPERATIONS.read_text(encoding="utf-8")
    section = text[text.index("## The admin API") : text.index("### Revoking a user")]
    routes = []
    for cell in re.findall(r"^\| (`[A-Z]+ /[^|]*)\|", section, re.MULTILINE):
        for method, path in re.findall(r"`([A-Z]+) (/[^`]*)`", cell):
            routes.append((method, path))
    return routes


async def test_every_documented_route_is_served(start_server: StartServer) -> None:
    routes = documented_routes()
    assert ("GET", "/admin/rooms") in routes
    assert (
        "POST",
        "/admin/rooms/<room>/snapshot",
    ) in routes  # documented here, not only in scaling.md
    revocations = Revocations()
    auth = TokenAuthenticator(
        make_config(auth={"mode": "jwt"}).auth,
        hmac_secret=SECRET,
        keys=None,
        introspector=None,
        revocations=revocations,
    )
    running = await start_server(
        make_config(auth={"mode": "jwt"}),
        authenticator=auth,
        hmac_secret=SECRET,
        revocations=revocations,
    )
    now = int(time.time())
    admin = jwt.encode({"sub": "root", "role": "admin", "iat": now, "exp": now + 60}, SECRET)
    headers = {"Authorization": f"Bearer {admin}"}
    bodies = {"/admin/revoke": {"user_id": "nobody"}, "/demo/token": {"name": "Ada"}}
    base = f"http://127.0.0.1:{running.service.http_port}"
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        for method, path in routes:
            url = path.replace("<room>", "records%3Adocumented").replace("<file>", "demo.css")
            response = await client.request(method, url, headers=headers, json=bodies.get(path))
            assert response.status_code < 500, (method, path, response.text)
            if response.status_code == 404:
                assert response.json() not in NO_ROUTE, (method, path)
                assert "no live room" in response.json()["error"], (method, path)
            anonymous = await client.request(method, url, json=bodies.get(path))
            if path.startswith("/admin/"):
                assert anonymous.status_code == 401, (method, path)
