"""The WebSocket server: accept, upgrade, route, authenticate, limit, run the connection.

It is thin on purpose: protocol decisions live in `protocol/`, room state in `rooms/`.
Every close it sends is a row of the close table (protocol/closecodes.py), and is counted
by that row.

Task tree (each line owns the ones below it)::

    RealtimeService.run                      root nursery (app.py)
    ├── RoomManager.run                      nursery of room supervisors
    │   └── RoomManager._supervise(room)     isolation boundary of one room
    │       └── Room.run                     nursery: mailbox loop, grace timer, stale sweep
    └── RealtimeServer.run                   accept loop (trio.serve_tcp)
        └── connections nursery
            └── RealtimeServer._handle       isolation boundary of one connection:
                                             the upgrade (wsproto), then
                └── Connection.serve         nursery: reader, writer, keepalive

A connection reaches its room only through the room's mailbox.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from functools import partial

import attrs
import trio
from wsproto.events import Request

from ..auth import Authenticator, AuthRejected, Identity, UpgradeRequest
from ..auth.permissions import effective_permissions, has_permission, room_allowed
from ..auth.revocation import Revocation, Revocations
from ..config import RealtimeConfig
from ..limits import ConnectionLimits, LimitExceeded, SharedCounts, client_address
from ..protocol import BadRoom, OutsidePrefix, RoomRoute, parse_target
from ..protocol import closecodes as closes
from ..protocol import control as control_frames
from ..protocol.closecodes import Close, CloseRequest
from ..rooms import Join, Member, RoomManager, RoomTypeRegistry, RoomUnavailable
from ..stats import Stats
from .connection import Connection
from .outbound import Outbound, start_flusher
from .websocket import ServerWebSocket, request_headers

log = logging.getLogger("civicrealtime.server")


@attrs.frozen
class Revoked:
    """What a revocation did on this node: its records (for the store) and closed sessions."""

    records: tuple[Revocation, ...]
    connections_closed: int


class RealtimeServer:
    def __init__(
        self,
        *,
        config: RealtimeConfig,
        rooms: RoomManager,
        room_types: RoomTypeRegistry,
        authenticator: Authenticator,
        revocations: Revocations | None = None,
        stats: Stats | None = None,
        shared_counts: SharedCounts | None = None,
    ) -> None:
        self._config = config
        self._rooms = rooms
        self._types = room_types
        self._auth = authenticator
        self.stats = stats if stats is not None else Stats()
        self._revocations = revocations if revocations is not None else Revocations()
        self._limits = ConnectionLimits(
            per_ip=config.rate_limiting.connections_per_ip,
            per_user=config.rate_limiting.connections_per_user,
            shared=shared_counts,
        )
        self._conn_ids = itertools.count(1)
        self._accepting = True
        self.connections: dict[int, Connection] = {}
        # Upgraded sockets not yet fully closed; shutdown waits for this to reach zero
        # (a closing handshake needs the connection's reader task alive until it ends).
        self._open_sockets = 0
        self._drained = trio.Event()
        self.port: int | None = None
        self._listener_scope: trio.CancelScope | None = None

    @property
    def limits(self) -> ConnectionLimits:
        return self._limits

    async def run(
        self,
        connections: trio.Nursery,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen until `stop_accepting`; handlers run in `connections`, owned by the caller."""
        cfg = self._config
        start_flusher()
        with trio.CancelScope() as scope:
            self._listener_scope = scope
            async with trio.open_nursery() as nursery:
                listeners = await nursery.start(
                    partial(
                        trio.serve_tcp,
                        self._handle,
                        cfg.port,
                        host=cfg.host,
                        handler_nursery=connections,
                    )
                )
                port = int(listeners[0].socket.getsockname()[1])
                self.port = port
                log.info("server.listening host=%s port=%s path=%s", cfg.host, port, cfg.path)
                task_status.started(port)

    def stop_accepting(self) -> None:
        self._accepting = False
        if not self._open_sockets:
            self._drained.set()
        if self._listener_scope is not None:
            self._listener_scope.cancel()

    # -- one connection ----------------------------------------------------------------------

    async def _handle(self, stream: trio.SocketStream) -> None:
        """The isolation boundary of one connection: nothing escapes to the listener."""
        cfg = self._config.connection
        ws = ServerWebSocket(stream, max_message_size=cfg.max_message_size)
        path = "-"
        request: Request | None = None  # still None if the deadline passed first
        try:
            with trio.move_on_after(cfg.handshake_timeout):
                request = await ws.handshake()
            if request is None:
                # Gone, not an upgrade, or too slow to send one (a port scan, a slow loris).
                log.debug("connection.no_upgrade peer=%s", ws.remote)
                return
            path = request.target
            await self._serve_request(ws, request)
        except Exception:
            log.exception("connection.failed path=%s", path.partition("?")[0][:200])
        finally:
            # Whatever happened (closed normally, refused, failed, cancelled): TCP ends here.
            await ws.abort()

    async def _serve_request(self, ws: ServerWebSocket, request: Request) -> None:
        route = parse_target(request.target, self._config.path, self._types.names())
        if isinstance(route, OutsidePrefix):
            await ws.reject(404, b"not a realtime endpoint\n")
            return
        if not self._accepting:
            await ws.reject(503, b"shutting down\n")
            return
        headers = request_headers(request)
        origin = _header(headers, "origin")
        allowed = self._config.allowed_origins
        if allowed and origin is not None and origin not in allowed:
            # Before the upgrade: a page on another site must not ride a user's cookies or
            # tokens into a WebSocket (cross-site WebSocket hijacking).
            log.info("origin.refused origin=%s", origin[:200])
            await ws.reject(403, b"origin not allowed\n")
            return
        # Control frames are settled here, from the offered subprotocols (the only input a
        # browser controls besides the URL); the selected one tells the client the outcome.
        negotiated = control_frames.negotiate(
            self._config.protocol.control_frames, request.subprotocols
        )
        if not await ws.accept(negotiated.subprotocol):
            # The client went away during the upgrade (a reset, a port scan): nothing to
            # serve and nothing wrong on our side.
            log.debug("connection.dropped_during_upgrade")
            return
        peer = client_address(
            ws.remote,
            _header(headers, "x-forwarded-for"),
            self._config.rate_limiting.trusted_proxies,
        )
        conn_id = next(self._conn_ids)
        opened = time.monotonic()
        self._open_sockets += 1
        try:
            request_, aborted = await self._after_upgrade(
                ws=ws,
                request=request,
                headers=headers,
                route=route,
                conn_id=conn_id,
                peer=peer,
                control=negotiated.control_frames,
            )
            self.stats.count_close(request_.close)
            code, reason = request_.code, request_.reason
            with (
                trio.CancelScope(shield=True),
                trio.move_on_after(self._config.connection.close_timeout),
            ):
                if aborted:
                    # A write was cut off mid-frame (or a frame's tail is still queued): a
                    # close frame now would be read as the rest of that frame. Drop TCP.
                    await ws.abort()
                await ws.aclose(code, reason)
        finally:
            self._open_sockets -= 1
            if not self._open_sockets and not self._accepting:
                self._drained.set()
        log.info(
            "connection.closed conn=%s peer=%s code=%s reason=%s duration_s=%.1f",
            conn_id,
            peer,
            code,
            reason,
            time.monotonic() - opened,
        )

    async def _after_upgrade(
        self,
        *,
        ws: ServerWebSocket,
        request: Request,
        headers: tuple[tuple[str, str], ...],
        route: RoomRoute | BadRoom,
        conn_id: int,
        peer: str,
        control: bool,
    ) -> tuple[CloseRequest, bool]:
        """Everything after the upgrade; returns the close to send, and whether TCP must be
        cut instead of a closing handshake (the connection was aborted mid-write).

        `control`: whether this connection gets the JSON control frames (error before a
        rejection close, and the rest once joined).
        """
        if isinstance(route, BadRoom):
            return await self._refuse(ws, control, closes.by_reason(route.code), route.message)
        assert isinstance(route, RoomRoute)
        upgrade = UpgradeRequest(
            target=request.target,
            headers=headers,
            subprotocols=tuple(request.subprotocols),
            peer=peer,
        )
        with trio.move_on_after(self._config.connection.setup_timeout) as setup:
            try:
                identity = await self._auth.authenticate(upgrade)
            except AuthRejected as exc:
                self.stats.auth_failures[exc.reason] += 1
                log.info(
                    "auth.failed conn=%s peer=%s reason=%s detail=%s",
                    conn_id,
                    peer,
                    exc.reason,
                    exc.detail,
                )
                return await self._refuse(ws, control, closes.by_reason(exc.code))
        if setup.cancelled_caught:
            log.info("connection.setup_timeout conn=%s peer=%s", conn_id, peer)
            return closes.SETUP_TIMEOUT.request(), False
        room_type = self._types.get(route.room_type)
        granted = effective_permissions(identity, self._config.auth.roles)
        if not has_permission(granted, room_type.view_permission) or not room_allowed(
            identity, route.key
        ):
            self.stats.auth_failures["permission_denied"] += 1
            log.info("auth.denied conn=%s user=%s room=%s", conn_id, identity.user_id, route.key)
            return await self._refuse(ws, control, closes.PERMISSION_DENIED)
        can_edit = has_permission(granted, room_type.edit_permission)
        if not await room_type.exists(route.room_id):
            log.info("room.not_found conn=%s room=%s", conn_id, route.key)
            return await self._refuse(ws, control, closes.ROOM_NOT_FOUND)
        try:
            with self._limits.hold(peer, identity.user_id):
                async with self._limits.hold_across_nodes(identity.user_id):
                    return await self._join_and_serve(
                        ws=ws,
                        key=route.key,
                        room_type=route.room_type,
                        identity=identity,
                        can_edit=can_edit,
                        conn_id=conn_id,
                        peer=peer,
                        control=control,
                    )
        except LimitExceeded as exc:
            log.info("limit.exceeded conn=%s peer=%s limit=%s", conn_id, peer, exc.what)
            limit = closes.CONNECTION_LIMIT_EXCEEDED
            return await self._refuse(
                ws, control, limit, f"{limit.text} ({exc.what})", reason=exc.what
            )

    async def _join_and_serve(
        self,
        *,
        ws: ServerWebSocket,
        key: str,
        room_type: str,
        identity: Identity,
        can_edit: bool,
        conn_id: int,
        peer: str,
        control: bool,
    ) -> tuple[CloseRequest, bool]:
        cfg = self._config
        try:
            with trio.fail_after(cfg.connection.setup_timeout):
                handle = await self._rooms.acquire(key, room_type)
        except RoomUnavailable as exc:
            log.info("room.refused conn=%s room=%s code=%s", conn_id, key, exc.code)
            return await self._refuse(ws, control, closes.by_reason(exc.code), str(exc))
        except trio.TooSlowError:
            return closes.SETUP_TIMEOUT.request(), False
        outbound = Outbound(
            cfg.connection.outbound_queue, max_bytes=cfg.connection.outbound_queue_bytes
        )
        member = Member(
            conn_id=conn_id,
            client_id=f"client_{int(time.time() * 1000)}_{secrets.token_hex(4)}",
            identity=identity,
            outbound=outbound,
            peer=peer,
            last_seen=trio.current_time(),
            can_edit=can_edit,
            control_frames=control,
            may_publish_awareness=can_edit or cfg.auth.viewers_publish_awareness,
        )
        connection = Connection(
            ws=ws, member=member, outbound=outbound, handle=handle, config=cfg, stats=self.stats
        )
        try:
            # Under the same deadline as the acquire: a room whose mailbox stays full (a
            # stalled or flooded room) must not hold the connection and its slot forever.
            with trio.fail_after(cfg.connection.setup_timeout):
                await handle.mailbox.send(Join(member=member))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            RoomManager.release_pending(handle)
            return closes.ROOM_UNAVAILABLE.request(), False
        except trio.TooSlowError:
            RoomManager.release_pending(handle)
            log.info("connection.setup_timeout conn=%s room=%s (mailbox full)", conn_id, key)
            return closes.SETUP_TIMEOUT.request(), False
        except BaseException:
            RoomManager.release_pending(handle)
            raise
        log.info(
            "connection.opened conn=%s room=%s user=%s peer=%s access=%s",
            conn_id,
            key,
            identity.user_id,
            peer,
            "edit" if can_edit else "view",
        )
        self.connections[conn_id] = connection
        try:
            await connection.serve()
        finally:
            del self.connections[conn_id]
            await connection.leave_room()
        request = outbound.close_request
        if request is None:
            return closes.NORMAL.request(), False
        return request, outbound.aborted

    async def _refuse(
        self,
        ws: ServerWebSocket,
        control: bool,
        close: Close,
        message: str | None = None,
        **extra: str,
    ) -> tuple[CloseRequest, bool]:
        """A rejection after the upgrade: the error frame first, for a connection that gets
        control frames (`message`, else the row's text), then the row's close."""
        if control:
            with trio.move_on_after(self._config.connection.send_timeout):
                await ws.send_message(
                    control_frames.error_frame(
                        close.reason_code, message if message is not None else close.text
                    )
                )
        return close.request(**extra), False

    async def drained(self) -> None:
        """Return once accepting stopped and the last connection ended."""
        await self._drained.wait()

    async def authenticate(self, request: UpgradeRequest) -> Identity:
        """Verify credentials the way WebSocket upgrades are verified (admin API)."""
        return await self._auth.authenticate(request)

    def revoke(
        self,
        *,
        user_id: str | None = None,
        token_id: str | None = None,
        reason: str,
        relayed: bool = False,
        revoked_at: float | None = None,
        token_expires_at: float | None = None,
    ) -> Revoked:
        """Revoke a user's or a token's sessions on this node: refuse them, close live ones.

        Live connections get a `session.revoked` frame, then close 4001 SESSION_REVOKED.
        This is the in-memory part only: `RealtimeService.revoke` also stores it and tells
        the other nodes. `relayed`: another node revoked it (at `revoked_at`, its clock).
        A token id is refused until `token_expires_at`, else until the expiry of a live
        session holding it, else for `auth.max_token_lifetime` (plus twice the leeway), else
        for ever.
        """
        if user_id is None and token_id is None:
            raise ValueError("revoke needs a user id or a token id")
        records = []
        if user_id is not None:
            records.append(self._revocations.revoke_user(user_id, revoked_at))
        if token_id is not None:
            until = token_expires_at
            if until is None:
                until = self._token_expiry(token_id)
            records.append(self._revocations.revoke_token(token_id, until))
        closed = self.close_revoked(reason)
        log.info(
            "auth.revoked user=%s token_id=%s connections=%d relayed=%s reason=%s",
            user_id,
            token_id,
            closed,
            relayed,
            reason,
        )
        return Revoked(records=tuple(records), connections_closed=closed)

    def _token_expiry(self, token_id: str) -> float | None:
        """When a revocation of `token_id` may be forgotten, if anything here knows."""
        known = [
            c.member.identity.expires_at
            for c in self.connections.values()
            if c.member.identity.token_id == token_id and c.member.identity.expires_at is not None
        ]
        if known:
            return max(e for e in known if e is not None)
        auth = self._config.auth
        if auth.max_token_lifetime is None:
            return None
        # The longest-lived token still valid: issued now by a clock up to the leeway ahead
        # (`iat` may be that far in the future), lasting max_token_lifetime + leeway.
        return time.time() + auth.max_token_lifetime + 2 * auth.leeway

    def close_revoked(self, reason: str) -> int:
        """Close every live session the revocations now refuse; how many were closed."""
        closed = 0
        for connection in list(self.connections.values()):
            member = connection.member
            # One already closing (an earlier revocation, expiry) is neither told nor counted.
            if connection.outbound.close_request is None and self._revocations.is_revoked(
                member.identity
            ):
                connection.end_session("SESSION_REVOKED", reason)
                closed += 1
        return closed

    def close_all(self, close: Close) -> None:
        for connection in list(self.connections.values()):
            connection.outbound.close(close, flush=True)


def _header(headers: tuple[tuple[str, str], ...], name: str) -> str | None:
    for key, value in headers:
        if key == name:
            return value
    return None
