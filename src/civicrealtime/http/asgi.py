"""A small ASGI application: the routes of the operations port, no framework.

Every handler reads the service's state without awaiting anything slow, so /health and
/metrics answer even while rooms are busy; commands that change a room (snapshot, close)
go through the room manager like every other change.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import math
import unicodedata
from importlib import resources
from typing import Any
from urllib.parse import unquote

import trio

from ..auth import AuthRejected, UpgradeRequest
from ..auth.permissions import ALL
from ..version import VERSION
from . import content
from .client import CLIENT_PREFIX, client_asset
from .exchange import BodyTooLarge, header, json_response, read_body
from .history import HistoryRoutes, history_route
from .metrics import CONTENT_TYPE, DaemonCollector, daemon_registry, exposition
from .ports import OpsService, Receive, Scope, Send
from .roomviews import describe_room, describe_rooms

log = logging.getLogger("civicrealtime.http")


MAX_BODY = 64 * 1024
# A room that crashed this recently makes /health say "degraded".
CRASH_MEMORY_SECONDS = 300.0
LAG_DEGRADED_SECONDS = 1.0
DEMO_ROLES = {"editor", "clerk", "public"}
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
    """The operations port's ASGI app: health, readiness, metrics, admin and demo routes.

    Reaches the daemon only through `OpsService` (ports.py). It never awaits anything slow
    to answer /health, and never changes a room except through the daemon's commands.
    """

    def __init__(self, service: OpsService) -> None:
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
        self._history = HistoryRoutes(service)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # websockets are served on the other port
        try:
            _check_declared_length(scope)
            status, headers, body = await self._route(scope, receive)
        except HttpError as exc:
            status, headers, body = json_response(exc.status, {"error": exc.message})
            if exc.status == 413:
                # The rest of the body is not wanted: closing beats reading megabytes.
                headers.append((b"connection", b"close"))
        except Exception:
            # The boundary of one request: log it, answer 500, keep serving.
            log.exception("http.failed path=%s", scope.get("path", ""))
            status, headers, body = json_response(500, {"error": "internal error"})
        try:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        except (trio.BrokenResourceError, trio.BusyResourceError, trio.ClosedResourceError):
            # The peer went away (or hypercorn is closing the socket under a body it is
            # still receiving): nothing to answer, and nothing for the operator to fix.
            log.debug("http.peer_gone path=%s status=%s", scope.get("path", ""), status)

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
        route = history_route(method, path)
        if route is not None:
            # Its own access rule: the admin credential or a `records:history` token.
            return await self._history.handle(
                route,
                authorization=header(scope, b"authorization"),
                peer=_client(scope),
                query=scope.get("query_string", b""),
                receive=receive,
            )
        if path.startswith("/admin/"):
            await self._authorize_admin(scope)
            return await self._admin(method, path[len("/admin/") :], receive)
        if path.startswith(CLIENT_PREFIX) and method == "GET":
            asset = client_asset(path)
            if asset is None:
                raise HttpError(404, "not found")
            return asset
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
        damaged = sorted(service.rooms.damaged)
        if damaged:
            reasons.append(
                f"{len(damaged)} rooms refused: their stored state is damaged "
                f"(civicrealtime snapshots inspect ROOM): {', '.join(damaged[:5])}"
            )
        room_stats = service.rooms.statistics()
        dropped = stats.last_pending_drop_at
        if dropped is not None and trio.current_time() - dropped < CRASH_MEMORY_SECONDS:
            reasons.append(
                f"updates waiting for changes never received were dropped "
                f"{trio.current_time() - dropped:.0f} s ago ({stats.pending_dropped_bytes} "
                f"bytes in all)"
            )
        watched = service.watcher.health() if service.watcher is not None else None
        if watched is not None:
            reasons.append(watched)
        crash = stats.last_room_crash_at
        if crash is not None and trio.current_time() - crash < CRASH_MEMORY_SECONDS:
            reasons.append(f"a room crashed {trio.current_time() - crash:.0f} s ago")
        if stats.loop_lag_max_seconds > LAG_DEGRADED_SECONDS:
            reasons.append(f"event loop lag reached {stats.loop_lag_max_seconds:.2f} s")
        status = "failing" if failing else ("degraded" if reasons else "ok")
        return json_response(
            503 if failing else 200,
            {
                "status": status,
                "version": VERSION,
                "reasons": reasons,
                "connections": len(service.server.connections),
                "rooms": room_stats.live,
                "event_loop_lag_seconds": round(stats.loop_lag_seconds, 4),
                "damaged_rooms": damaged,
                "pending_bytes": room_stats.pending_bytes,
                # The oldest update not yet durable, so not yet acknowledged as saved.
                "oldest_unsaved_seconds": round(
                    service.persistence.durability.oldest_unsaved_seconds()
                    if service.persistence is not None
                    else 0.0,
                    3,
                ),
            },
        )

    async def _ready(self) -> tuple[int, list[Any], bytes]:
        service = self._service
        if not service.listening:
            return json_response(503, {"ready": False, "reason": "not listening"})
        problem = await service.store_reachable()
        if problem is not None:
            return json_response(503, {"ready": False, "reason": problem})
        body: dict[str, Any] = {"ready": True}
        persistence = service.persistence
        if persistence is not None and not persistence.healthy:
            # Failing writes alone keep the node ready (docs/operations.md, readiness):
            # its rooms go on, buffered, and every node shares the store anyway.
            body["store_writes"] = (
                f"failing for {persistence.failing_seconds:.0f} s: {persistence.last_error}"
            )
        return json_response(200, body)

    # -- admin -------------------------------------------------------------------------------

    async def _authorize_admin(self, scope: Scope) -> None:
        """A static admin token (constant-time compare), or a JWT whose role is admin."""
        authorization = header(scope, b"authorization")
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
        # Room keys in NFC, as the WebSocket port names rooms (protocol/routing.py).
        parts = [unicodedata.normalize("NFC", unquote(p)) for p in rest.split("/") if p]
        service = self._service
        if parts == ["rooms"] and method == "GET":
            return json_response(200, {"rooms": describe_rooms(service.rooms)})
        if len(parts) == 2 and parts[0] == "rooms" and method == "GET":
            room = describe_room(service.rooms, parts[1])
            if room is None:
                raise HttpError(404, f"no live room {parts[1]!r}")
            return json_response(200, room)
        if len(parts) == 3 and parts[0] == "rooms" and method == "POST":
            key, action = parts[1], parts[2]
            if action == "snapshot":
                outcome = await service.snapshot_room(key)
                return json_response(200 if outcome.ok else outcome.status, outcome.body)
            if action == "close":
                if not service.close_room(key):
                    raise HttpError(404, f"no live room {key!r}")
                return json_response(200, {"closed": key})
        if parts == ["revoke"] and method == "POST":
            body = await _json_body(receive)
            user_id, token_id = body.get("user_id"), body.get("token_id")
            reason = body.get("reason") or "revoked by an administrator"
            if not isinstance(reason, str) or not (
                isinstance(user_id, str) or isinstance(token_id, str)
            ):
                raise HttpError(400, 'expected {"user_id" or "token_id": "...", "reason": "..."}')
            expires_at = _unix_seconds(body.get("expires_at"))
            outcome = await service.revoking.revoke(
                user_id=user_id if isinstance(user_id, str) else None,
                token_id=token_id if isinstance(token_id, str) else None,
                reason=reason[:100],
                token_expires_at=expires_at,
            )
            return json_response(outcome.status, outcome.body)
        raise HttpError(404, "no such admin endpoint")

    # -- demo --------------------------------------------------------------------------------

    async def _demo(
        self, method: str, path: str, scope: Scope, receive: Receive
    ) -> tuple[int, list[Any], bytes]:
        if path == "/demo/token" and method == "POST":
            self._check_demo_caller(scope)
            body = await _json_body(receive)
            name, role = body.get("name"), body.get("role", "editor")
            if not isinstance(name, str) or not name.strip() or role not in DEMO_ROLES:
                raise HttpError(
                    400, 'expected {"name": "...", "role": "editor" | "clerk" | "public"}'
                )
            token = self._service.demo_token(name.strip()[:40], role)
            host = (header(scope, b"host") or "localhost").rsplit(":", 1)[0]
            return json_response(
                200,
                {
                    "token": token,
                    "expires_in": self._service.demo_token_ttl,
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

    def _check_demo_caller(self, scope: Scope) -> None:
        """Mint only for the demo page itself, never for another site's page.

        DNS rebinding: a page of attacker.example points its name at this address, and the
        browser then sends it here as same-origin, with `Host: attacker.example`. A Host
        that is an IP address, localhost or a configured name cannot be such a page. A
        cross-site page is refused by the Origin check, and by the JSON content type,
        which a browser sends cross-site only after a CORS preflight this port never grants.
        """
        host = header(scope, b"host")
        origin = header(scope, b"origin")
        peer = _client(scope)
        if host is None or not _own_host(host, self._service.config.demo.allowed_hosts):
            log.info("demo.refused peer=%s host=%s reason=foreign host", peer, host)
            raise HttpError(403, "unknown Host: add it to demo.allowed_hosts")
        if origin is not None and not _same_origin(origin, host):
            log.info("demo.refused peer=%s origin=%s reason=foreign origin", peer, origin)
            raise HttpError(403, "the demo token is only for the demo page")
        content_type = (header(scope, b"content-type") or "").split(";", 1)[0].strip()
        if content_type.lower() != "application/json":
            raise HttpError(415, "expected Content-Type: application/json")


def _unix_seconds(value: object) -> float | None:
    """An optional time in unix seconds from a JSON body, or 400."""
    if value is None:
        return None
    try:
        # float() of a JSON integer of hundreds of digits raises OverflowError.
        seconds = float(value) if isinstance(value, int | float) else math.nan
    except OverflowError:
        seconds = math.nan
    if isinstance(value, bool) or not math.isfinite(seconds):
        raise HttpError(400, '"expires_at": the token\'s exp, in unix seconds')
    return seconds


def _check_declared_length(scope: Scope) -> None:
    """413 at once for a body declared larger than any route takes, before reading it."""
    declared = header(scope, b"content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > MAX_BODY:
        raise HttpError(413, f"body too large (at most {MAX_BODY} bytes)")


def _split_host(host: str) -> str:
    """`"[::1]:3002"` -> `"::1"`, `"Example.org.:80"` -> `"example.org"`."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def _own_host(host: str, allowed: tuple[str, ...]) -> bool:
    name = _split_host(host)
    if not name:
        return False
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name == "localhost" or name in {_split_host(a) for a in allowed}
    # Only a browser that was pointed at this address by number sends an IP literal.
    return True


def _same_origin(origin: str, host: str) -> bool:
    """The page's origin is `scheme://<the Host it was loaded from>`."""
    scheme, sep, netloc = origin.strip().lower().partition("://")
    return bool(sep) and scheme in ("http", "https") and netloc == host.strip().lower()


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


async def _json_body(receive: Receive) -> dict[str, Any]:
    try:
        raw = await read_body(receive, MAX_BODY)
    except BodyTooLarge:
        raise HttpError(413, f"body too large (at most {MAX_BODY} bytes)") from None
    try:
        value = json.loads(raw or b"{}")
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
