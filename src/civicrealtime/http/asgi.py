"""A small ASGI application: the routes of the operations port, no framework.

Every handler reads the service's state without awaiting anything slow, so /health and
/metrics answer even while rooms are busy; commands that change a room (snapshot, close)
go through the room manager like every other change.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import trio

from .._version import __version__
from ..auth import AuthRejected, UpgradeRequest
from ..auth.permissions import ALL
from . import content
from .metrics import CONTENT_TYPE, DaemonCollector, daemon_registry, exposition

if TYPE_CHECKING:
    from ..app import RealtimeService

log = logging.getLogger("civicrealtime.http")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

MAX_BODY = 64 * 1024
# A room that crashed this recently makes /health say "degraded".
CRASH_MEMORY_SECONDS = 300.0
LAG_DEGRADED_SECONDS = 1.0
DEMO_ROLES = {"editor", "public"}
_STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
    ".map": "application/json",
}


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class OpsApp:
    def __init__(self, service: RealtimeService) -> None:
        self._service = service
        cluster = service.cluster
        self._metrics = daemon_registry(
            DaemonCollector(
                service.stats,
                service.server,
                service.rooms,
                store_stats=service.store_statistics,
                cluster_stats=cluster.statistics if cluster is not None else None,
                room_types=lambda: [room_type.name for room_type in service.room_types],
            )
        )
        self.demo_enabled = service.demo_enabled
        self._content_versions = content.ServedVersions()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # websockets are served on the other port
        try:
            status, headers, body = await self._route(scope, receive)
        except HttpError as exc:
            status, headers, body = _json(exc.status, {"error": exc.message})
        except Exception:
            # The boundary of one request: log it, answer 500, keep serving.
            log.exception("http.failed path=%s", scope.get("path", "")[:200])
            status, headers, body = _json(500, {"error": "internal error"})
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _route(self, scope: Scope, receive: Receive) -> tuple[int, list[Any], bytes]:
        method, path = scope["method"], scope["path"]
        if path == "/health" and method == "GET":
            return self._health()
        if path == "/ready" and method == "GET":
            return await self._ready()
        if path == "/metrics" and method == "GET":
            body = exposition(self._metrics)
            return 200, [(b"content-type", CONTENT_TYPE.encode())], body
        if content.is_content_route(path):
            return await content.handle(self._service, self._content_versions, scope, receive)
        if path.startswith("/admin/"):
            await self._authorize_admin(scope)
            return await self._admin(method, path[len("/admin/") :], receive)
        if path == "/demo" or path.startswith("/demo/"):
            if not self.demo_enabled:
                raise HttpError(404, "not found")
            return await self._demo(method, path, scope, receive)
        raise HttpError(404, "not found")

    # -- health ------------------------------------------------------------------------------

    def _health(self) -> tuple[int, list[Any], bytes]:
        service = self._service
        stats = service.stats
        reasons: list[str] = []
        failing = False
        if not service.listening:
            failing = True
            reasons.append("the WebSocket port is not listening")
        store = service.store_health()
        if store is not None:
            reasons.append(store)
        cluster = service.cluster_health()
        if cluster is not None:
            reasons.append(cluster)
        watched = service.watcher.health() if service.watcher is not None else None
        if watched is not None:
            reasons.append(watched)
        crash = stats.last_room_crash_at
        if crash is not None and trio.current_time() - crash < CRASH_MEMORY_SECONDS:
            reasons.append(f"a room crashed {trio.current_time() - crash:.0f} s ago")
        if stats.loop_lag_max_seconds > LAG_DEGRADED_SECONDS:
            reasons.append(f"event loop lag reached {stats.loop_lag_max_seconds:.2f} s")
        status = "failing" if failing else ("degraded" if reasons else "ok")
        return _json(
            503 if failing else 200,
            {
                "status": status,
                "version": __version__,
                "reasons": reasons,
                "connections": len(service.server.connections),
                "rooms": service.rooms.statistics().live,
                "event_loop_lag_seconds": round(stats.loop_lag_seconds, 4),
            },
        )

    async def _ready(self) -> tuple[int, list[Any], bytes]:
        service = self._service
        if not service.listening:
            return _json(503, {"ready": False, "reason": "not listening"})
        problem = await service.store_reachable()
        if problem is not None:
            return _json(503, {"ready": False, "reason": problem})
        return _json(200, {"ready": True})

    # -- admin -------------------------------------------------------------------------------

    async def _authorize_admin(self, scope: Scope) -> None:
        """A static admin token (constant-time compare), or a JWT whose role is admin."""
        authorization = _header(scope, b"authorization")
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise HttpError(401, "admin token required (Authorization: Bearer)")
        static = self._service.admin_token
        if static is not None and hmac.compare_digest(token.encode(), static.encode()):
            return
        request = UpgradeRequest(
            target="/admin",
            headers=(("authorization", f"Bearer {token}"),),
            subprotocols=(),
            peer=_client(scope),
        )
        try:
            identity = await self._service.server.authenticate(request)
        except AuthRejected as exc:
            log.info("admin.refused peer=%s detail=%s", request.peer, exc.detail)
            raise HttpError(401, "invalid admin token") from None
        if identity.role != "admin" and not ({"admin", ALL} & identity.permissions):
            log.info(
                "admin.refused peer=%s user=%s detail=not an admin", request.peer, identity.user_id
            )
            raise HttpError(403, "not an admin")

    async def _admin(
        self, method: str, rest: str, receive: Receive
    ) -> tuple[int, list[Any], bytes]:
        parts = [unquote(p) for p in rest.split("/") if p]
        service = self._service
        if parts == ["rooms"] and method == "GET":
            return _json(200, {"rooms": service.describe_rooms()})
        if len(parts) == 2 and parts[0] == "rooms" and method == "GET":
            room = service.describe_room(parts[1])
            if room is None:
                raise HttpError(404, f"no live room {parts[1]!r}")
            return _json(200, room)
        if len(parts) == 3 and parts[0] == "rooms" and method == "POST":
            key, action = parts[1], parts[2]
            if action == "snapshot":
                outcome = await service.snapshot_room(key)
                return _json(200 if outcome.ok else outcome.status, outcome.body)
            if action == "close":
                if not service.close_room(key):
                    raise HttpError(404, f"no live room {key!r}")
                return _json(200, {"closed": key})
        if parts == ["revoke"] and method == "POST":
            body = await _json_body(receive)
            user_id, token_id = body.get("user_id"), body.get("token_id")
            reason = body.get("reason") or "revoked by an administrator"
            if not isinstance(reason, str) or not (
                isinstance(user_id, str) or isinstance(token_id, str)
            ):
                raise HttpError(400, 'expected {"user_id" or "token_id": "...", "reason": "..."}')
            outcome = await service.revoke(
                user_id=user_id if isinstance(user_id, str) else None,
                token_id=token_id if isinstance(token_id, str) else None,
                reason=reason[:100],
            )
            return _json(outcome.status, outcome.body)
        raise HttpError(404, "no such admin endpoint")

    # -- demo --------------------------------------------------------------------------------

    async def _demo(
        self, method: str, path: str, scope: Scope, receive: Receive
    ) -> tuple[int, list[Any], bytes]:
        if path == "/demo/token" and method == "POST":
            body = await _json_body(receive)
            name, role = body.get("name"), body.get("role", "editor")
            if not isinstance(name, str) or not name.strip() or role not in DEMO_ROLES:
                raise HttpError(400, 'expected {"name": "...", "role": "editor" | "public"}')
            token = self._service.demo_token(name.strip()[:40], role)
            host = (_header(scope, b"host") or "localhost").rsplit(":", 1)[0]
            return _json(
                200,
                {
                    "token": token,
                    "expires_in": self._service.config.demo.token_ttl,
                    "ws_url": self._service.public_ws_url(host),
                },
            )
        if method != "GET":
            raise HttpError(405, "method not allowed")
        if path == "/demo":
            # The page links its assets relatively: it must be served from /demo/.
            return 308, [(b"location", b"/demo/"), (b"content-type", b"text/plain")], b""
        if path == "/demo/":
            path = "/demo/index.html"
        name = path[len("/demo/") :]
        if not name or "/" in name or name.startswith("."):
            raise HttpError(404, "not found")
        static = resources.files("civicrealtime.http").joinpath("static", "demo", name)
        if not static.is_file():
            raise HttpError(404, "not found")
        suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
        content_type = _STATIC_TYPES.get(suffix, "application/octet-stream")
        return 200, [(b"content-type", content_type.encode())], static.read_bytes()


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _json(status: int, payload: object) -> tuple[int, list[Any], bytes]:
    body = json.dumps(payload, ensure_ascii=False).encode()
    return status, [(b"content-type", b"application/json")], body


async def _json_body(receive: Receive) -> dict[str, Any]:
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise HttpError(413, "body too large")
        chunks.append(chunk)
        more = message.get("more_body", False)
    try:
        value = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        raise HttpError(400, "body is not JSON") from None
    if not isinstance(value, dict):
        raise HttpError(400, "body must be a JSON object")
    return value


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
