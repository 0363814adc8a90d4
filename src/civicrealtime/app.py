"""The composition root: configuration, room manager, server and authenticator, wired once.

`RealtimeService` is the public API for running the realtime module inside another trio
program (the seed's "bundled" mode): `await nursery.start(service.run)` returns the bound
port, and `service.shutdown()` begins a graceful stop. The CLI daemon is a thin layer over
it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import trio

from .auth import Authenticator, DevelopmentAuthenticator
from .auth.introspection import Introspector
from .auth.keys import JwksFile, JwksUrl, KeyError_, KeyProvider, StaticKey
from .auth.revocation import Revocations
from .auth.secrets import SecretError, resolve_secret
from .auth.token_auth import TokenAuthenticator
from .config import RealtimeConfig
from .protocol import close_reason
from .protocol.closecodes import CloseCode
from .rooms import RoomManager, RoomTypeRegistry, default_room_types
from .server import RealtimeServer

log = logging.getLogger("civicrealtime")


class AuthSetupError(Exception):
    """The configured credentials cannot be used (missing file, bad key, short secret)."""


def build_authenticator(
    config: RealtimeConfig,
    revocations: Revocations,
    environ: Mapping[str, str] | None = None,
) -> Authenticator:
    """The authenticator the configuration asks for; raises AuthSetupError."""
    auth = config.auth
    if auth.mode == "development":
        log.warning(
            "auth.development_mode: every connection is accepted without verification; "
            "never expose this daemon like this"
        )
        return DevelopmentAuthenticator()
    secret: bytes | None = None
    keys: KeyProvider | None = None
    try:
        if auth.public_key_file:
            keys = StaticKey(Path(auth.public_key_file))
        elif auth.jwks_file:
            keys = JwksFile(Path(auth.jwks_file))
        elif auth.jwks_url:
            keys = JwksUrl(
                auth.jwks_url, cache_seconds=auth.jwks_cache_seconds, timeout=auth.fetch_timeout
            )
        else:
            found = resolve_secret(
                auth.secret_file,
                Path(config.data_dir),
                os.environ if environ is None else environ,
                create=True,
            )
            secret = found.value
            if found.created:
                log.warning("auth.secret_created path=%s mode=0600", found.source)
            else:
                log.info("auth.secret source=%s", found.source)
    except (KeyError_, SecretError) as exc:
        raise AuthSetupError(str(exc)) from None
    introspector = None
    if auth.introspection_url:
        introspector = Introspector(
            auth.introspection_url,
            cache_seconds=auth.introspection_cache_seconds,
            timeout=auth.fetch_timeout,
        )
    return TokenAuthenticator(
        auth,
        hmac_secret=secret,
        keys=keys,
        introspector=introspector,
        revocations=revocations,
    )


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
        self.revocations = Revocations()
        if authenticator is None:
            authenticator = build_authenticator(config, self.revocations)
        self.server = RealtimeServer(
            config=config,
            rooms=self.rooms,
            room_types=self.room_types,
            authenticator=authenticator,
            revocations=self.revocations,
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
