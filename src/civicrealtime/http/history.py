"""The history routes of the ops port: list, show, diff, blame and restore.

    GET  /admin/rooms/{key}/history[?since=&until=&user=]   versions, oldest first
    GET  /admin/rooms/{key}/history/{n}                     one version (Markdown or JSON)
    GET  /admin/rooms/{key}/history/{a}/diff/{b}            unified diff + block summary
    GET  /admin/rooms/{key}/blame                           last author and time per block
    POST /admin/rooms/{key}/restore {"version": n}          make the live document so

Access: the admin credential, or a user token with `records:history` for a room the token
may open; a restore also needs the room type's edit permission (it is an edit). Times are
milliseconds since the epoch (query: `since`, `until`). See docs/history.md.
"""

from __future__ import annotations

import hmac
import json
import logging
import unicodedata
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

import attrs
import trio

from ..auth import AuthRejected, Identity, UpgradeRequest
from ..auth.permissions import ALL, HISTORY, effective_permissions, has_permission, room_allowed
from ..history_read import HistoryReader, NotFound, Unsupported, is_record
from ..persistence.errors import StoreError
from ..protocol import InvalidUpdate
from ..records.restore import restore_edit
from ..rooms.edits import RoomGone, edit_room
from ..rooms.manager import RoomUnavailable
from ..rooms.origin import Origin
from .exchange import BodyTooLarge, Response, json_response, read_body

if TYPE_CHECKING:
    from .ports import OpsService

log = logging.getLogger("civicrealtime.history")

STORE_TIMEOUT = 30.0
MAX_BODY = 64 * 1024


@attrs.frozen
class Route:
    key: str
    action: str  # list, show, diff, blame, restore
    a: str | None = None
    b: str | None = None


def history_route(method: str, path: str) -> Route | None:
    """The history route `path` names, or None when it is not one of them."""
    if not path.startswith("/admin/rooms/"):
        return None
    parts = [unicodedata.normalize("NFC", unquote(p)) for p in path.split("/") if p]
    rest = parts[2:]
    if len(rest) < 2:
        return None
    key, tail = rest[0], rest[1:]
    if method == "GET":
        if tail == ["history"]:
            return Route(key, "list")
        if len(tail) == 2 and tail[0] == "history":
            return Route(key, "show", tail[1])
        if len(tail) == 4 and tail[0] == "history" and tail[2] == "diff":
            return Route(key, "diff", tail[1], tail[3])
        if tail == ["blame"]:
            return Route(key, "blame")
    if method == "POST" and tail == ["restore"]:
        return Route(key, "restore")
    return None


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class HistoryRoutes:
    def __init__(self, service: OpsService) -> None:
        self._service = service

    async def handle(
        self,
        route: Route,
        *,
        authorization: str | None,
        peer: str,
        query: bytes,
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
    ) -> Response:
        try:
            caller = await self._authorize(route, authorization, peer)
            return await self._serve(route, caller, query, receive)
        except Refused as exc:
            return json_response(exc.status, {"error": exc.message})
        except NotFound as exc:
            return json_response(404, {"error": str(exc)})
        except Unsupported as exc:
            return json_response(409, {"error": str(exc)})
        except (StoreError, trio.TooSlowError) as exc:
            why = str(exc) or f"no answer within {STORE_TIMEOUT:g} s"
            log.warning("history.store_failed room=%s error=%s", route.key, why)
            return json_response(503, {"error": f"the history store is failing: {why}"})

    async def _serve(
        self,
        route: Route,
        caller: Origin,
        query: bytes,
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
    ) -> Response:
        history = self._service.history
        if history is None:
            raise Refused(409, "history is not enabled in this daemon (history.enabled)")
        reader = HistoryReader(history.store)
        with trio.fail_after(STORE_TIMEOUT):
            if route.action == "list":
                since, until, user = _filters(query)
                versions = await reader.versions(
                    route.key, since_ms=since, until_ms=until, user=user
                )
                return json_response(
                    200, {"room": route.key, "versions": [v.as_json() for v in versions]}
                )
            if route.action == "show":
                number = _version_number(route.a)
                version = await reader.version(route.key, number)
                text = await reader.show(route.key, number)
                kind = "markdown" if is_record(route.key) else "json"
                return json_response(200, {**version.as_json(), "format": kind, "content": text})
            if route.action == "diff":
                a, b = _version_number(route.a), _version_number(route.b)
                diff = await reader.diff(route.key, a, b)
                return json_response(200, {"room": route.key, "from": a, "to": b, **diff.as_json()})
            if route.action == "blame":
                return json_response(
                    200, {"room": route.key, "blocks": await reader.blame(route.key)}
                )
        try:
            body = await read_body(receive, MAX_BODY)
        except BodyTooLarge:
            raise Refused(413, f"body too large (at most {MAX_BODY} bytes)") from None
        number = _restore_body(body)
        return await self._restore(route.key, number, caller, reader)

    async def _restore(
        self, key: str, number: int, caller: Origin, reader: HistoryReader
    ) -> Response:
        """Check everything that can fail first; then one change through the room's mailbox."""
        service = self._service
        history = service.history
        persistence = service.persistence
        assert history is not None and persistence is not None  # history needs persistence
        if not is_record(key):
            raise Refused(409, "restore is available for records rooms only")
        with trio.fail_after(STORE_TIMEOUT):
            version = await reader.version(key, number)
            state = await reader.state(key, number)
            # Both stores must answer before anything changes: a restore during an outage
            # is refused whole rather than applied and left unwritten.
            await persistence.store.ping()
            if not persistence.healthy:
                raise Refused(503, f"the document store is failing: {persistence.last_error}")
            # What was edited before the restore is its own version.
            await history.close_version(key, "cut")
        try:
            edit = restore_edit(state)
        except InvalidUpdate as exc:
            raise Refused(500, f"the version could not be read: {exc}") from None
        try:
            with trio.fail_after(STORE_TIMEOUT):
                result = await edit_room(
                    service.rooms,
                    key,
                    key.partition(":")[0],
                    actor=caller.author,
                    edit=edit,
                    origin=caller,
                )
        except RoomUnavailable as exc:
            raise Refused(503, f"the room cannot be opened: {exc}") from None
        except RoomGone:
            raise Refused(409, "the room closed before the restore") from None
        if result.error is not None:
            raise Refused(500, f"the version could not be applied: {result.error}")
        outcome = result.updates
        log.info(
            "history.restored room=%s version=%d by=%s updates=%d",
            key,
            number,
            caller.author,
            outcome,
        )
        restored = None
        try:
            with trio.fail_after(STORE_TIMEOUT):
                restored = await history.close_version(key, "restore")
        except (StoreError, trio.TooSlowError) as exc:
            # The change is applied and buffered in both writers, which retry: the version
            # closes at their next success.
            log.warning("history.restore_version_later room=%s error=%s", key, exc)
        return json_response(
            200,
            {
                "room": key,
                "restored": version.number,
                "changed": outcome > 0,
                "version": restored.number if restored is not None else None,
            },
        )

    # -- access ---------------------------------------------------------------------------

    async def _authorize(self, route: Route, authorization: str | None, peer: str) -> Origin:
        """Who asks, as the origin a restore is attributed to; `Refused` (401/403) if nobody."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Refused(401, "a token is required (Authorization: Bearer)")
        static = self._service.admin_token
        if static is not None and hmac.compare_digest(token.encode(), static.encode()):
            return Origin(actor="restore", sub="admin-token")
        request = UpgradeRequest(
            target="/admin",
            headers=(("authorization", f"Bearer {token}"),),
            subprotocols=(),
            peer=peer,
        )
        try:
            identity = await self._service.server.authenticate(request)
        except AuthRejected as exc:
            log.info("history.refused peer=%s detail=%s", peer, exc.detail)
            raise Refused(401, "invalid token") from None
        if identity.role != "admin" and not ({"admin", ALL} & identity.permissions):
            self._check_user(route, identity, peer)
        elif not room_allowed(identity, route.key):
            # The `rooms` claim pins an admin's token too, as on the WebSocket path.
            log.info(
                "history.refused peer=%s user=%s action=%s missing=access to room %s",
                peer,
                identity.user_id,
                route.action,
                route.key,
            )
            raise Refused(403, f"this token is not for room {route.key}")
        # A restore is a server-made change, attributed to the person behind the token.
        return Origin(actor="restore", sub=identity.user_id, name=identity.name)

    def _check_user(self, route: Route, identity: Identity, peer: str) -> None:
        granted = effective_permissions(identity, self._service.config.auth.roles)
        missing: str | None = None
        if not has_permission(granted, HISTORY):
            missing = HISTORY
        elif route.action == "restore":
            room_type = route.key.partition(":")[0]
            edit = f"{room_type}:edit"
            if room_type in self._service.room_types.names():
                edit = self._service.room_types.get(room_type).edit_permission
            if not has_permission(granted, edit):
                missing = edit
        if missing is None and not room_allowed(identity, route.key):
            missing = f"access to room {route.key}"
        if missing is not None:
            log.info(
                "history.refused peer=%s user=%s action=%s missing=%s",
                peer,
                identity.user_id,
                route.action,
                missing,
            )
            raise Refused(403, f"not allowed: needs {missing}")


def _filters(query: bytes) -> tuple[int | None, int | None, str | None]:
    params = parse_qs(query.decode("latin-1"))

    def one(name: str) -> str | None:
        values = params.get(name)
        return values[-1] if values else None

    def ms(name: str) -> int | None:
        value = one(name)
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            raise Refused(400, f"{name}: milliseconds since the epoch, got {value!r}") from None

    return ms("since"), ms("until"), one("user")


def _version_number(text: str | None) -> int:
    try:
        number = int(text or "")
    except ValueError:
        raise Refused(400, f"a version is a number, got {text!r}") from None
    if number < 1:
        raise Refused(404, f"no version {number}")
    return number


def _restore_body(body: bytes) -> int:
    try:
        value = json.loads(body or b"null")
    except ValueError:
        raise Refused(400, 'the body is not JSON; expected {"version": N}') from None
    if not isinstance(value, dict) or "version" not in value:
        raise Refused(400, 'expected a JSON object {"version": N}')
    number = value["version"]
    if isinstance(number, bool) or not isinstance(number, int):
        raise Refused(400, f'"version" must be a whole number, got {number!r}')
    if number < 1:
        raise Refused(404, f"no version {number}")
    return number
