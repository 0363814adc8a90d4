"""The WebSocket server: accept, authenticate, resolve the room, run the connection.

It is thin on purpose: protocol decisions live in `protocol/`, room state in `rooms/`.

Task tree (each line owns the ones below it)::

    RealtimeService.run                      root nursery (app.py)
    ├── RoomManager.run                      nursery of room supervisors
    │   └── RoomManager._supervise(room)     isolation boundary of one room
    │       └── Room.run                     nursery: mailbox loop, grace timer, stale sweep
    └── RealtimeServer.run                   accept loop (trio-websocket listener)
        └── connections nursery
            └── RealtimeServer._handle       isolation boundary of one connection
                └── Connection.serve         nursery: reader, writer, keepalive

A connection reaches its room only through the room's mailbox.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import secrets
import time
from collections import Counter
from functools import partial

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

from .auth import Authenticator, AuthRejected, Identity, UpgradeRequest
from .config import RealtimeConfig
from .connection import Connection
from .limits import ConnectionLimits, LimitExceeded
from .protocol import BadRoom, CloseCode, OutsidePrefix, RoomRoute, close_reason, parse_target
from .protocol import control as control_frames
from .rooms import Join, Member, Outbound, RoomManager, RoomTypeRegistry, RoomUnavailable

log = logging.getLogger("civicrealtime.server")


class RealtimeServer:
    def __init__(
        self,
        *,
        config: RealtimeConfig,
        rooms: RoomManager,
        room_types: RoomTypeRegistry,
        authenticator: Authenticator,
    ) -> None:
        self._config = config
        self._rooms = rooms
        self._types = room_types
        self._auth = authenticator
        self._limits = ConnectionLimits(
            per_ip=config.rate_limiting.connections_per_ip,
            per_user=config.rate_limiting.connections_per_user,
        )
        self._conn_ids = itertools.count(1)
        self._accepting = True
        self.connections: dict[int, Connection] = {}
        # Upgraded sockets not yet fully closed; shutdown waits for this to reach zero
        # (a closing handshake needs the connection's reader task alive until it ends).
        self._open_sockets = 0
        self._drained = trio.Event()
        # Close codes sent, by code: for metrics, and for tests that cannot read the close.
        self.close_codes: Counter[int] = Counter()
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
        with trio.CancelScope() as scope:
            self._listener_scope = scope
            async with trio.open_nursery() as nursery:
                server = await nursery.start(
                    partial(
                        serve_websocket,
                        self._handle,
                        cfg.host,
                        cfg.port,
                        None,
                        handler_nursery=connections,
                        max_message_size=cfg.connection.max_message_size,
                        connect_timeout=cfg.connection.handshake_timeout,
                        disconnect_timeout=cfg.connection.close_timeout,
                    )
                )
                self.port = server.port
                log.info("server.listening host=%s port=%s path=%s", cfg.host, self.port, cfg.path)
                task_status.started(server.port)

    def stop_accepting(self) -> None:
        self._accepting = False
        if not self._open_sockets:
            self._drained.set()
        if self._listener_scope is not None:
            self._listener_scope.cancel()

    # -- one connection ----------------------------------------------------------------------

    async def _handle(self, request: WebSocketRequest) -> None:
        """The isolation boundary of one connection: nothing escapes to the listener."""
        try:
            await self._serve_request(request)
        except Exception:
            log.exception("connection.failed path=%s", request.path.partition("?")[0][:200])

    async def _serve_request(self, request: WebSocketRequest) -> None:
        route = parse_target(request.path, self._config.path, self._types.names())
        if isinstance(route, OutsidePrefix) or not self._accepting:
            status = 404 if isinstance(route, OutsidePrefix) else 503
            await request.reject(
                status, body=b"not a realtime endpoint\n" if status == 404 else b""
            )
            return
        # Browsers fail the handshake when they offered subprotocols and none is selected.
        offered = request.proposed_subprotocols
        ws = await request.accept(subprotocol=offered[0] if offered else None)
        peer = _peer_address(ws)
        conn_id = next(self._conn_ids)
        opened = time.monotonic()
        self._open_sockets += 1
        try:
            code, reason = await self._after_upgrade(ws, request, route, conn_id, peer)
            self.close_codes[code] += 1
            with (
                trio.CancelScope(shield=True),
                trio.move_on_after(self._config.connection.close_timeout),
            ):
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
        ws: WebSocketConnection,
        request: WebSocketRequest,
        route: RoomRoute | BadRoom,
        conn_id: int,
        peer: str,
    ) -> tuple[int, str]:
        """Everything after the upgrade; returns the close code and reason to send."""
        if isinstance(route, BadRoom):
            await self._refuse(ws, route.code, route.message)
            return route.close_code, close_reason(route.code)
        assert isinstance(route, RoomRoute)
        upgrade = UpgradeRequest(
            target=request.path,
            headers=tuple(
                (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in request.headers
            ),
            subprotocols=tuple(request.proposed_subprotocols),
            peer=peer,
        )
        with trio.move_on_after(self._config.connection.setup_timeout) as setup:
            try:
                identity = await self._auth.authenticate(upgrade)
            except AuthRejected as exc:
                log.info("auth.failed conn=%s peer=%s detail=%s", conn_id, peer, exc.detail)
                await self._refuse(ws, exc.code, "authentication failed")
                return CloseCode.AUTH_FAILED, close_reason(exc.code)
        if setup.cancelled_caught:
            log.info("connection.setup_timeout conn=%s peer=%s", conn_id, peer)
            return CloseCode.TRY_AGAIN_LATER, close_reason("SETUP_TIMEOUT")
        try:
            with self._limits.hold(peer, identity.user_id):
                return await self._join_and_serve(
                    ws=ws,
                    key=route.key,
                    room_type=route.room_type,
                    identity=identity,
                    conn_id=conn_id,
                    peer=peer,
                )
        except LimitExceeded as exc:
            log.info("limit.exceeded conn=%s peer=%s limit=%s", conn_id, peer, exc.what)
            await self._refuse(
                ws, "CONNECTION_LIMIT_EXCEEDED", f"too many connections ({exc.what})"
            )
            return CloseCode.LIMIT_EXCEEDED, close_reason(
                "CONNECTION_LIMIT_EXCEEDED", reason=exc.what
            )

    async def _join_and_serve(
        self,
        *,
        ws: WebSocketConnection,
        key: str,
        room_type: str,
        identity: Identity,
        conn_id: int,
        peer: str,
    ) -> tuple[int, str]:
        cfg = self._config
        try:
            with trio.fail_after(cfg.connection.setup_timeout):
                handle = await self._rooms.acquire(key, room_type)
        except RoomUnavailable as exc:
            log.info("room.refused conn=%s room=%s code=%s", conn_id, key, exc.code)
            await self._refuse(ws, exc.code, str(exc))
            return exc.close_code, close_reason(exc.code)
        except trio.TooSlowError:
            return CloseCode.TRY_AGAIN_LATER, close_reason("SETUP_TIMEOUT")
        member = Member(
            conn_id=conn_id,
            client_id=f"client_{int(time.time() * 1000)}_{secrets.token_hex(4)}",
            identity=identity,
            outbound=Outbound(cfg.connection.outbound_queue),
            peer=peer,
            last_seen=trio.current_time(),
        )
        connection = Connection(ws=ws, member=member, handle=handle, config=cfg)
        try:
            await handle.mailbox.send(Join(member=member))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            RoomManager.release_pending(handle)
            return CloseCode.ROOM_FAILED, close_reason("ROOM_UNAVAILABLE")
        except BaseException:
            RoomManager.release_pending(handle)
            raise
        log.info(
            "connection.opened conn=%s room=%s user=%s peer=%s",
            conn_id,
            key,
            identity.user_id,
            peer,
        )
        self.connections[conn_id] = connection
        try:
            await connection.serve()
        finally:
            del self.connections[conn_id]
            await connection.leave_room()
        request = member.outbound.close_request
        if request is None:
            return CloseCode.NORMAL, ""
        return request.code, request.reason

    async def _refuse(self, ws: WebSocketConnection, code: str, message: str) -> None:
        """The error frame that precedes a rejection close (when control frames are on)."""
        if not self._config.protocol.control_frames:
            return
        with trio.move_on_after(self._config.connection.send_timeout):
            with contextlib.suppress(ConnectionClosed):
                await ws.send_message(control_frames.error_frame(code, message))

    async def drained(self) -> None:
        """Return once accepting stopped and the last connection ended."""
        await self._drained.wait()

    def close_all(self, code: int, reason: str) -> None:
        for connection in list(self.connections.values()):
            connection.member.outbound.close(code, reason, flush=True)


def _peer_address(ws: WebSocketConnection) -> str:
    remote = ws.remote
    address = getattr(remote, "address", remote)
    return str(address)
