"""`/admin/rooms/{key}/content`: read a live document, or change it without a socket.

- `GET`: records as Markdown (`text/markdown`), any other room type as JSON (its root
  types), `?format=yjs` the binary state (`application/octet-stream`) of any room.
- `PUT`: Markdown for a record (`Content-Type: text/markdown`, a whole record file or a
  bare body), or a Yjs update for any room type (`application/octet-stream`). The
  difference between the live document and the Markdown is applied as one ordinary change
  (`records/diff.py`), through the room's mailbox; the actor is `?actor=NAME`.

A GET of Markdown answers with an `ETag`; a PUT with `If-Match: <that ETag>` is merged
three-way instead (`records/diff.py` `merge_blocks`): only what changed since that version is
applied, and what the editors typed meanwhile is kept. A version no longer remembered (the
last few per room are) answers 412: GET again.

Access: the admin credential, or a token with the room type's `write-api` permission
(`records:write-api`) whose room patterns cover the room. The room is loaded like a join
loads it when it is not live: a read never answers blank over stored data.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import unicodedata
from collections import OrderedDict
from typing import Any
from urllib.parse import parse_qs, unquote

import trio
from pycrdt import Array, Doc, Map, Text

from ..auth import AuthRejected, UpgradeRequest
from ..auth.permissions import ALL, effective_permissions, has_permission, room_allowed
from ..protocol import InvalidUpdate, apply_update
from ..protocol.document import YDocument
from ..protocol.routing import MAX_ROOM_ID_BYTES
from ..records.edit import (
    ContentError,
    MergeReport,
    decode,
    markdown_of,
    merge_from_file,
    parse_content,
    replace_with,
)
from ..records.markdown_writer import write_markdown
from ..rooms.edits import RoomGone, edit_room, read_room
from ..rooms.manager import RoomUnavailable
from ..rooms.room import TOO_LARGE
from .exchange import BodyTooLarge, Response, header, json_response, read_body
from .ports import OpsService, Receive, Scope

log = logging.getLogger("civicrealtime.http")

# A content body larger than this (or than `rooms.max_document_bytes`) gets 413.
MAX_CONTENT_BYTES = 8 * 1024 * 1024
MAX_ACTOR_CHARS = 100
MARKDOWN_TYPES = frozenset({"text/markdown", "text/plain", "text/x-markdown"})
YJS_TYPES = frozenset({"application/octet-stream", "application/x-yjs-update"})
ROUTE_PREFIX, ROUTE_SUFFIX = "/admin/rooms/", "/content"

# Markdown versions served (for `If-Match`): this many, all rooms together.
REMEMBERED_VERSIONS = 64


class ServedVersions:
    """The Markdown of the last GETs, by room and ETag: the bases of `If-Match` PUTs."""

    def __init__(self, capacity: int = REMEMBERED_VERSIONS) -> None:
        self._capacity = capacity
        self._texts: OrderedDict[tuple[str, str], str] = OrderedDict()

    def remember(self, key: str, text: str) -> str:
        etag = '"' + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32] + '"'
        self._texts[(key, etag)] = text
        self._texts.move_to_end((key, etag))
        while len(self._texts) > self._capacity:
            self._texts.popitem(last=False)
        return etag

    def get(self, key: str, etag: str) -> str | None:
        return self._texts.get((key, etag.strip().removeprefix("W/")))


class ContentHttpError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": message, **extra}


def is_content_route(path: str) -> bool:
    return (
        path.startswith(ROUTE_PREFIX)
        and path.endswith(ROUTE_SUFFIX)
        and len(path) > len(ROUTE_PREFIX) + len(ROUTE_SUFFIX)
    )


def _usable_id(room_id: str) -> bool:
    """What a WebSocket route accepts as a room id (protocol/routing.py)."""
    return (
        0 < len(room_id.encode("utf-8", errors="replace")) <= MAX_ROOM_ID_BYTES
        and "/" not in room_id
        and not any(unicodedata.category(ch) in ("Cc", "Cf") for ch in room_id)
    )


def permission_for(room_type: str) -> str:
    return f"{room_type}:write-api"


async def handle(
    service: OpsService, versions: ServedVersions, scope: Scope, receive: Receive
) -> Response:
    try:
        return await _handle(service, versions, scope, receive)
    except ContentHttpError as exc:
        return json_response(exc.status, exc.body)


async def _handle(
    service: OpsService, versions: ServedVersions, scope: Scope, receive: Receive
) -> Response:
    method = scope["method"]
    key = unquote(scope["path"][len(ROUTE_PREFIX) : -len(ROUTE_SUFFIX)])
    room_type, _, room_id = key.partition(":")
    known = room_type in service.room_types.names() and _usable_id(room_id)
    # Who asks is checked before whether the room exists: no probing without a credential.
    user = await _authorize(service, scope, key, room_type if known else None)
    if method not in ("GET", "PUT"):
        raise ContentHttpError(405, "method not allowed")
    if not known:
        raise ContentHttpError(404, f"no room type or room id in {key!r}")
    handler = service.room_types.get(room_type)
    if not await handler.exists(room_id):
        raise ContentHttpError(404, f"no such {room_type} {room_id!r}")
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if method == "GET":
        return await _get(service, versions, key, room_type, query.get("format", [""])[0])
    actor = query.get("actor", [user])[0].strip()
    if not actor or len(actor) > MAX_ACTOR_CHARS or not actor.isprintable():
        raise ContentHttpError(400, f"actor must be 1 to {MAX_ACTOR_CHARS} printable characters")
    limit = min(MAX_CONTENT_BYTES, service.config.rooms.max_document_bytes)
    media = (header(scope, b"content-type") or "").split(";", 1)[0].strip().lower()
    if media not in MARKDOWN_TYPES | YJS_TYPES:
        raise ContentHttpError(
            415, "send text/markdown (records) or application/octet-stream (a Yjs update)"
        )
    try:
        body = await read_body(receive, limit)
    except BodyTooLarge as exc:
        raise ContentHttpError(413, str(exc)) from None
    if media in YJS_TYPES:
        return await _put_update(service, key, room_type, actor, body)
    if room_type != "records":
        raise ContentHttpError(415, f"{room_type} rooms take a Yjs update, not Markdown")
    base = None
    if_match = header(scope, b"if-match")
    if if_match is not None:
        base = versions.get(key, if_match)
        if base is None:
            raise ContentHttpError(412, "If-Match names a version no longer known: GET again")
    return await _put_markdown(service, key, actor, body, base)


async def _authorize(service: OpsService, scope: Scope, key: str, room_type: str | None) -> str:
    """The caller's name: the admin credential, or a token with `<type>:write-api`."""
    scheme, _, token = (header(scope, b"authorization") or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ContentHttpError(401, "token required (Authorization: Bearer)")
    static = service.admin_token
    if static is not None and hmac.compare_digest(token.encode(), static.encode()):
        return "admin"
    client = scope.get("client")
    request = UpgradeRequest(
        target="/admin",
        headers=(("authorization", f"Bearer {token}"),),
        subprotocols=(),
        peer=str(client[0]) if client else "unknown",
    )
    try:
        identity = await service.server.authenticate(request)
    except AuthRejected as exc:
        log.info("content.refused peer=%s detail=%s", request.peer, exc.detail)
        raise ContentHttpError(401, "invalid token") from None
    granted = effective_permissions(identity, service.config.auth.roles)
    # The `rooms` claim pins every token, an admin's too (as on the WebSocket path): a
    # token minted for one record's page must not edit the others.
    if (identity.role == "admin" or {"admin", ALL} & granted) and room_allowed(identity, key):
        return identity.user_id
    if (
        room_type is not None
        and has_permission(granted, permission_for(room_type))
        and room_allowed(identity, key)
    ):
        return identity.user_id
    log.info("content.denied user=%s room=%s", identity.user_id, key)
    raise ContentHttpError(403, f"needs the admin credential or {permission_for(room_type or '')}")


async def _get(
    service: OpsService, versions: ServedVersions, key: str, room_type: str, form: str
) -> Response:
    if form not in ("", "yjs", "markdown", "json"):
        raise ContentHttpError(400, "format is yjs, markdown or json")
    try:
        if form == "yjs":
            state = await read_room(service.rooms, key, room_type, lambda doc: doc.get_update())
            return 200, [(b"content-type", b"application/octet-stream")], state
        if room_type == "records" and form != "json":
            blocks = await read_room(service.rooms, key, room_type, markdown_of)
            text = await trio.to_thread.run_sync(write_markdown, blocks)
            etag = versions.remember(key, text)
            headers = [(b"content-type", b"text/markdown; charset=utf-8"), (b"etag", etag.encode())]
            return 200, headers, text.encode()
        state = await read_room(service.rooms, key, room_type, lambda doc: doc.get_update())
        roots = await trio.to_thread.run_sync(_roots_as_json, state)
    except RoomUnavailable as exc:
        raise ContentHttpError(503, str(exc)) from None
    return json_response(200, {"room": key, "roots": roots})


def _roots_as_json(state: bytes) -> dict[str, Any]:
    """Each root type of a state, by name, as JSON.

    An update does not say which type a root is (Yjs types a root when code asks for it),
    so each is read as a map, else an array, else a text, each time from a fresh copy:
    asking the room's own document would type its roots for good.
    """
    names = list(_doc_of(state).keys())
    roots: dict[str, Any] = {}
    for name in names:
        value: Any = _doc_of(state).get(name, type=Map).to_py()
        if not value:
            value = _doc_of(state).get(name, type=Array).to_py()
        if not value:
            value = str(_doc_of(state).get(name, type=Text))
        roots[name] = value
    return roots


def _doc_of(state: bytes) -> Doc[Any]:
    doc: Doc[Any] = Doc()
    apply_update(doc, state)
    return doc


async def _put_markdown(
    service: OpsService, key: str, actor: str, body: bytes, base_text: str | None
) -> Response:
    def parse() -> tuple[Any, Any]:
        wanted = parse_content(decode(body))
        return wanted, parse_content(base_text) if base_text is not None else None

    try:
        parsed, base = await trio.to_thread.run_sync(parse)
    except ContentError as exc:
        raise ContentHttpError(400, exc.message, line=exc.line) from None
    report = MergeReport()
    if base is None:
        edit = replace_with(parsed.blocks, actor)
    else:
        record_id = key.partition(":")[2]
        edit = merge_from_file(record_id, base.blocks, parsed.blocks, actor, report)
    outcome = await _edit(service, key, "records", actor, edit)
    notes = [
        {"line": u.line + parsed.body_line - 1, "kind": u.kind, "excerpt": u.excerpt}
        for u in parsed.unsupported
    ]
    extra = {"merged": True, "conflicts": report.conflicts} if base is not None else {}
    return json_response(200, {**outcome, **extra, "notes": notes})


async def _put_update(
    service: OpsService, key: str, room_type: str, actor: str, update: bytes
) -> Response:
    try:
        # Decoded in full before the room sees it, by the room's own rules (an update
        # whose structs cannot be read is refused there too): a 400, not a failed edit.
        YDocument().apply(update)
    except InvalidUpdate as exc:
        raise ContentHttpError(400, f"not a Yjs update: {exc}") from None

    def edit(document: YDocument) -> None:
        document.apply(update)

    return json_response(200, await _edit(service, key, room_type, actor, edit))


async def _edit(
    service: OpsService, key: str, room_type: str, actor: str, edit: Any
) -> dict[str, Any]:
    try:
        result = await edit_room(service.rooms, key, room_type, actor=actor, edit=edit)
    except RoomUnavailable as exc:
        raise ContentHttpError(503, str(exc)) from None
    except RoomGone:
        raise ContentHttpError(409, "the room closed before the edit; try again") from None
    if result.error is not None and result.error.startswith(TOO_LARGE):
        raise ContentHttpError(413, result.error)
    if result.error is not None:
        raise ContentHttpError(500, "the edit failed; see the log")
    return {
        "room": key,
        "actor": actor,
        "changed": result.updates > 0,
        "update_bytes": result.size,
    }
