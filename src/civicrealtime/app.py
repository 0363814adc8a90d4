"""The composition root: configuration, room manager, server and authenticator, wired once.

`RealtimeService` is the public API for running the realtime module inside another trio
program (the seed's "bundled" mode): `await nursery.start(service.run)` returns the bound
port, and `service.shutdown()` begins a graceful stop. The CLI daemon is a thin layer over
it.
"""

from __future__ import annotations

import logging

import trio

from .auth import Authenticator, DevelopmentAuthenticator
from .auth.base import AuthRejected, Identity, UpgradeRequest
from .config import RealtimeConfig
from .protocol import close_reason
from .protocol.closecodes import CloseCode
from .rooms import RoomManager, RoomTypeRegistry, default_room_types
from .server import RealtimeServer

log = logging.getLogger("civicrealtime")


class RefuseAll:
    """`auth.mode: jwt` with no verifier configured: nobody gets in, and the log says why."""

    async def authenticate(self, request: UpgradeRequest) -> Identity:
        raise AuthRejected("AUTH_FAILED", "no token verifier is configured for auth.mode jwt")


def build_authenticator(config: RealtimeConfig) -> Authenticator:
    if config.auth.mode == "development":
        log.warning(
            "auth.development_mode: every connection is accepted without verification; "
            "never expose this daemon like this"
        )
        return DevelopmentAuthenticator()
    return RefuseAll()


class RealtimeService:
    def __init__(
        self,
        config: RealtimeConfig,
        *,
        authenticator: Authenticator | None = None,
        room_types: RoomTypeRegistry | None = None,
    ) -> None:
        self.config = config
        self.room_types = room_types if room_types is not None else default_room_types()
        self.rooms = RoomManager(config, self.room_types)
        self.server = RealtimeServer(
            config=config,
            rooms=self.rooms,
            room_types=self.room_types,
            authenticator=authenticator
            if authenticator is not None
            else build_authenticator(config),
        )
        self._shutdown = trio.Event()
        self.stopped = trio.Event()

    def shutdown(self) -> None:
        """Begin a graceful shutdown; `run` returns when it is done. Safe to call twice."""
        self._shutdown.set()

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until `shutdown()` (then stop gracefully) or cancellation (then at once).

        Graceful: stop accepting, close every connection with 4503 after its queued frames,
        give rooms `shutdown_timeout` seconds to retire, then cancel what is left.
        """
        try:
            async with trio.open_nursery() as root:
                await root.start(self.rooms.run)
                async with trio.open_nursery() as connections:
                    port = await root.start(self.server.run, connections)
                    task_status.started(port)
                    await self._shutdown.wait()
                    deadline = trio.current_time() + self.config.shutdown_timeout
                    log.info("server.stopping connections=%d", len(self.server.connections))
                    self.server.stop_accepting()
                    await self.rooms.shutdown(deadline)
                    self.server.close_all(
                        CloseCode.SHUTTING_DOWN, close_reason("SERVER_SHUTTING_DOWN")
                    )
                    with trio.move_on_at(deadline + self.config.connection.close_timeout):
                        await self.server.drained()
                    connections.cancel_scope.cancel()
                root.cancel_scope.cancel()
            log.info("server.stopped")
        finally:
            self.stopped.set()
