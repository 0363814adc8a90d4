from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import pytest
import trio

from civicrealtime.app import RealtimeService
from civicrealtime.auth import Authenticator, DevelopmentAuthenticator
from civicrealtime.auth.revocation import Revocations
from civicrealtime.config import RealtimeConfig, structure
from civicrealtime.rooms import RoomTypeRegistry

from .ydoc_client import YClient


def make_config(**overrides: Any) -> RealtimeConfig:
    """A test configuration: loopback, ephemeral port, development auth, short timers."""
    raw: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "auth": {"mode": "development"},
        "shutdown_timeout": 2,
        "rooms": {"cleanup_timeout": 30},
        "http": {"port": 0},
        # Persistence has its own tests, with a store in a temporary directory.
        "snapshots": {"enabled": False},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return structure(raw)


@attrs.define
class RunningServer:
    service: RealtimeService
    port: int
    nursery: trio.Nursery

    def url(self, room: str = "abc", room_type: str = "records") -> str:
        return f"ws://127.0.0.1:{self.port}/realtime/{room_type}/{room}"

    async def client(self, room: str = "abc", **kwargs: Any) -> YClient:
        return await YClient.connect(self.nursery, self.url(room), **kwargs)


StartServer = Callable[..., Any]


@pytest.fixture
async def start_server(nursery: trio.Nursery) -> AsyncIterator[StartServer]:
    services: list[RealtimeService] = []

    async def start(
        config: RealtimeConfig | None = None,
        room_types: RoomTypeRegistry | None = None,
        authenticator: Authenticator | None = None,
        hmac_secret: bytes | None = None,
        revocations: Revocations | None = None,
    ) -> RunningServer:
        service = RealtimeService(
            config or make_config(),
            authenticator=authenticator or DevelopmentAuthenticator(),
            room_types=room_types,
            hmac_secret=hmac_secret,
            revocations=revocations,
        )
        port = await nursery.start(service.run)
        services.append(service)
        return RunningServer(service=service, port=port, nursery=nursery)

    yield start
    for service in services:
        service.shutdown()
    with trio.fail_after(10):
        for service in services:
            await service.stopped.wait()
    nursery.cancel_scope.cancel()


@pytest.fixture
async def server(start_server: StartServer) -> RunningServer:
    return await start_server()  # type: ignore[no-any-return]
