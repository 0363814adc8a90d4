"""What the operations port needs from the daemon: a narrow interface, not the service.

`OpsApp` (asgi.py) and the content API (content.py) read the daemon's state and ask it to
act only through `OpsService`. `app.RealtimeService` provides it; the HTTP package never
imports `app`, so the import graph has no circle (tests/test_import_graph.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

import attrs

from ..config import RealtimeConfig
from ..persistence.historyrecorder import HistoryRecorder
from ..persistence.writer import StoreWriter
from ..rooms import RoomManager, RoomTypeRegistry
from ..server import RealtimeServer
from ..stats import Stats

# The ASGI callables' types.
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@attrs.frozen
class Outcome:
    """The answer to an admin command: an HTTP status and a JSON body."""

    status: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.status < 400


class HasStatistics(Protocol):
    def statistics(self) -> dict[str, float]: ...


class HasHealth(Protocol):
    def health(self) -> str | None: ...


class Revoker(Protocol):
    async def revoke(
        self,
        *,
        user_id: str | None,
        token_id: str | None,
        reason: str,
        token_expires_at: float | None = None,
    ) -> Outcome: ...


class OpsService(Protocol):
    """The daemon as the operations port sees it: read-only state and admin commands.

    Every read answers without awaiting anything slow (health must answer while the daemon
    is busy); the async commands bound their own store calls.
    """

    @property
    def config(self) -> RealtimeConfig: ...
    @property
    def stats(self) -> Stats: ...
    @property
    def server(self) -> RealtimeServer: ...
    @property
    def rooms(self) -> RoomManager: ...
    @property
    def room_types(self) -> RoomTypeRegistry: ...
    @property
    def persistence(self) -> StoreWriter | None: ...
    @property
    def history(self) -> HistoryRecorder | None: ...
    @property
    def cluster(self) -> HasStatistics | None: ...
    @property
    def watcher(self) -> HasHealth | None: ...
    @property
    def admin_token(self) -> str | None: ...
    @property
    def demo_enabled(self) -> bool: ...
    @property
    def listening(self) -> bool: ...
    @property
    def demo_token_ttl(self) -> int: ...
    @property
    def revoking(self) -> Revoker: ...

    def store_statistics(self) -> dict[str, float]: ...
    def store_health(self) -> str | None: ...
    def cluster_health(self) -> str | None: ...
    async def store_reachable(self) -> str | None: ...
    async def snapshot_room(self, key: str) -> Outcome: ...
    def close_room(self, key: str) -> bool: ...
    def demo_token(self, name: str, role: str) -> str: ...
    def public_ws_url(self, request_host: str) -> str: ...
