"""The composition root: configuration, room manager, server and authenticator, wired once.

`RealtimeService` is the public API for running the realtime module inside another trio
program (the seed's "bundled" mode): `await nursery.start(service.run)` returns the bound
port, and `service.shutdown()` begins a graceful stop. The CLI daemon is a thin layer over
it.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import socket
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import trio
import trio.lowlevel

from .auth import Authenticator
from .auth.configured import build_authenticator
from .auth.minting import mint_token
from .auth.permissions import HISTORY
from .auth.revocation import Revocations
from .config import RealtimeConfig
from .extras import import_extra
from .history_blame import changed_blocks
from .http import OpsApp, serve_http
from .http.ports import Outcome
from .loopmonitor import measure_loop_lag
from .persistence import Store, StoreError, StoreWriter, store_for
from .persistence.historyrecorder import HistoryRecorder
from .persistence.historystores import history_for
from .persistence.roomhooks import PersistedRooms
from .protocol import closecodes
from .records.delivery import FileEditDelivery, make_watcher
from .records.handler import RecordsRoomType
from .revoking import Revoking
from .rooms import RoomManager, RoomTypeRegistry
from .rooms.hooks import RoomHooks
from .rooms.messages import TakeSnapshot
from .rooms.plugins import RoomTypeLoadError, add_configured_room_types
from .startup import (
    EXIT_CONFIG,
    RoomTypeSetupError,
    StoreSetupError,
    check_paths,
    listening,
    read_admin_token,
    store_advice,
)
from .stats import Stats
from .transport import RealtimeServer

if TYPE_CHECKING:
    from .cluster import ClusterService

log = logging.getLogger("civicrealtime")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RealtimeService:
    """Everything the daemon runs, wired once; `run` it in a nursery.

    Owns the composition (store writer, cluster, rooms, server, watcher, operations port),
    the root nursery and the order of start and shutdown. It answers the operations port
    (`http.ports.OpsService`). It never touches a room's document or a socket itself: rooms
    are reached through their mailbox, connections through the server. Start-up failures
    are `startup.StartupError`s, one line each.
    """

    def __init__(
        self,
        config: RealtimeConfig,
        *,
        authenticator: Authenticator | None = None,
        room_types: RoomTypeRegistry | None = None,
        environ: Mapping[str, str] | None = None,
        hmac_secret: bytes | None = None,
        store: Store | None = None,
        revocations: Revocations | None = None,
    ) -> None:
        self.room_types = room_types if room_types is not None else _builtin_room_types(config)
        try:
            config = add_configured_room_types(config, self.room_types)
        except RoomTypeLoadError as exc:
            raise RoomTypeSetupError(str(exc)) from None
        self.config = config
        self.stats = Stats()
        self.persistence: StoreWriter | None = None
        # The history of every room (persistence/history*.py); None when off.
        self.history: HistoryRecorder | None = None
        hooks: RoomHooks | None = None
        snapshots = config.snapshots
        if snapshots.enabled:
            if store is None:
                store = store_for(snapshots.location(config.data_dir), keep=snapshots.keep)
            self.persistence = StoreWriter(
                store,
                flush_ms=snapshots.flush_ms,
                max_pending_bytes=snapshots.max_pending_bytes,
                compress_over=snapshots.compress_over,
                shutdown_timeout=config.shutdown_timeout,
            )
            history_store = history_for(store) if config.history.enabled else None
            if history_store is not None:
                self.history = HistoryRecorder(
                    history_store,
                    node=config.cluster.node_id or socket.gethostname(),
                    version_idle=config.history.version_idle,
                    retention_days=config.history.retention_days,
                    flush_s=snapshots.flush_ms / 1000,
                    shutdown_timeout=config.shutdown_timeout,
                    analyse=changed_blocks,
                )
            hooks = PersistedRooms(self.persistence, self.history)
        # Several nodes sharing rooms through Redis (docs/scaling.md); never touched when off.
        self.cluster: ClusterService | None = None
        if config.cluster.enabled:
            # Imported here: the Redis client (the [cluster] extra) loads only when it is on.
            cluster = import_extra(
                "civicrealtime.cluster",
                setting="cluster.enabled",
                feature="clustering through Redis",
                extra="cluster",
            )
            self.cluster = cluster.ClusterService(
                config,
                load_stored=self._load_stored,
                apply_revocation=self._revoked_elsewhere,
            )
        relay = self.cluster.relay if self.cluster is not None else None
        self.rooms = RoomManager(config, self.room_types, self.stats, hooks, relay=relay)
        # A caller's own authenticator shares the caller's list (`TokenAuthenticator` takes
        # one), so that revocations made here, and those restored from the store, apply.
        self.revocations = revocations if revocations is not None else Revocations()
        # With an authenticator of the caller's, the caller says which secret mints tokens.
        self.hmac_secret: bytes | None = hmac_secret
        if authenticator is None:
            authenticator, self.hmac_secret = build_authenticator(config, self.revocations, environ)
        self.server = RealtimeServer(
            config=config,
            rooms=self.rooms,
            room_types=self.room_types,
            authenticator=authenticator,
            revocations=self.revocations,
            stats=self.stats,
            shared_counts=self.cluster.counts if self.cluster is not None else None,
        )
        self.revoking = Revoking(self.server, self.revocations, self.persistence, self.cluster)
        self.admin_token = read_admin_token(config.http.admin_token_file)
        self.watcher = make_watcher(
            config,
            self.room_types,
            FileEditDelivery(
                self.rooms, self.stats, self.persistence.store if self.persistence else None
            ),
        )
        self.demo_enabled = self._decide_demo()
        self.listening = False
        self.port: int | None = None
        self.http_port: int | None = None
        self._shutdown = trio.Event()
        self._http_shutdown = trio.Event()
        self.stopped = trio.Event()

    def _decide_demo(self) -> bool:
        demo, http = self.config.demo, self.config.http
        enabled = _is_loopback(http.host) if demo.enabled is None else demo.enabled
        if not http.enabled:
            return False
        if enabled and self.hmac_secret is None and self.config.auth.mode == "jwt":
            log.warning("demo.disabled reason=tokens are verified with public keys; cannot mint")
            return False
        if enabled and not _is_loopback(http.host):
            log.warning(
                "demo.public host=%s: the demo page mints tokens for anyone who asks; "
                "use it only on a trusted network",
                http.host,
            )
        return enabled

    def shutdown(self) -> None:
        """Begin a graceful shutdown; `run` returns when it is done. Safe to call twice."""
        self._shutdown.set()

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until `shutdown()` (then stop gracefully) or cancellation (then at once).

        `task_status` gets the WebSocket port once both ports listen. Graceful: stop
        accepting, close every connection with 4503 after its queued frames, give rooms
        `shutdown_timeout` seconds to retire, then cancel what is left.
        """
        try:
            check_paths(self.config)
            if self.cluster is not None:
                self._check_shared_store()
            if self.persistence is not None:
                await self._open_store(self.persistence.store)
                await self.revoking.restore(self.persistence.store)
            else:
                log.warning("snapshots.disabled: rooms live in memory only; a restart empties them")
            for room_type in self.room_types:
                await room_type.start()
            async with trio.open_nursery() as root:
                root.start_soon(measure_loop_lag, self.stats)
                if self.persistence is not None:
                    # Started first, cancelled last: its final flush follows the rooms' last
                    # snapshots at shutdown.
                    await root.start(self.persistence.run)
                    if self.history is not None:
                        await root.start(self.history.run)
                    root.start_soon(self._sweep_old_snapshots, self.persistence.store)
                if self.cluster is not None:
                    # Started before the rooms, cancelled after them: their last presence
                    # removals and updates are published on the way out.
                    await root.start(self.cluster.run)
                    if self.persistence is not None:
                        root.start_soon(self.revoking.restore_when_tailing, self.persistence.store)
                await root.start(self.rooms.run)
                if self.watcher is not None:
                    await root.start(self.watcher.run)
                http = self.config.http
                if http.enabled:
                    self.http_port = await listening(
                        "operations port",
                        http.host,
                        http.port,
                        ("http.port (or $CIVICREALTIME_HTTP_PORT)", "http.host"),
                        partial(
                            root.start,
                            serve_http,
                            OpsApp(self),
                            http.host,
                            http.port,
                            self._http_shutdown,
                        ),
                    )
                async with trio.open_nursery() as connections:
                    self.port = await listening(
                        "WebSocket port",
                        self.config.host,
                        self.config.port,
                        ("port (or $CIVICREALTIME_PORT)", "host (or $CIVICREALTIME_HOST)"),
                        partial(root.start, self.server.run, connections),
                    )
                    self.listening = True
                    task_status.started(self.port)
                    await self._shutdown.wait()
                    self.listening = False
                    deadline = trio.current_time() + self.config.shutdown_timeout
                    log.info("server.stopping connections=%d", len(self.server.connections))
                    self.server.stop_accepting()
                    await self.rooms.shutdown(deadline)
                    self.server.close_all(closecodes.SERVER_SHUTTING_DOWN)
                    with trio.move_on_at(deadline + self.config.connection.close_timeout):
                        await self.server.drained()
                    connections.cancel_scope.cancel()
                if self.cluster is not None:
                    await self.cluster.leave()  # the rooms' last entries, then out
                self._http_shutdown.set()
                with trio.move_on_after(self.config.connection.close_timeout):
                    # hypercorn drains its requests after the trigger; then stop the rest.
                    await trio.lowlevel.checkpoint()
                root.cancel_scope.cancel()
            log.info("server.stopped")
        finally:
            self.listening = False
            if self.persistence is not None:
                with trio.CancelScope(shield=True), trio.move_on_after(2):
                    await self.persistence.store.close()
            self.stopped.set()

    def _check_shared_store(self) -> None:
        """Clustering needs a store every node reaches: PostgreSQL, not a local file."""
        store = self.persistence.store if self.persistence is not None else None
        if store is None:
            problem = "snapshots.enabled is false"
        elif not store.shared_by_nodes:
            problem = f"the store is {store.description}, which other nodes do not reach"
        else:
            return
        raise StoreSetupError(
            f"cluster: cluster.enabled needs a store shared by every node, and {problem}: set "
            "snapshots.database_url to a postgresql:// URL (docs/scaling.md)",
            exit_code=EXIT_CONFIG,
        )

    async def _load_stored(self, key: str) -> list[bytes]:
        """A room's stored state, read again (the cluster's resync after a Redis outage)."""
        if self.persistence is None:
            return []
        return list((await self.persistence.store.load(key)).updates())

    def _revoked_elsewhere(
        self, *, user_id: str | None, token_id: str | None, reason: str, revoked_at: float | None
    ) -> None:
        """Another node revoked these sessions (relayed by the cluster): here too."""
        self.server.revoke(
            user_id=user_id, token_id=token_id, reason=reason, relayed=True, revoked_at=revoked_at
        )

    async def _open_store(self, store: Store) -> None:
        try:
            with trio.fail_after(30):
                await store.open()
        except (StoreError, trio.TooSlowError) as exc:
            why = str(exc) or "no answer within 30 s"
            # The store's message often starts with its own description: say it once.
            why = why.removeprefix(f"{store.description}: ")
            raise StoreSetupError(
                f"store: cannot open {store.description}: {why}; {store_advice(self.config)}"
            ) from None
        log.info("store.opened store=%s", store.description)

    async def _sweep_old_snapshots(self, store: Store) -> None:
        """Delete snapshots of rooms not live for `snapshots.ttl_hours` (a periodic task)."""
        snapshots = self.config.snapshots
        while True:
            await trio.sleep(snapshots.sweep_interval)
            cutoff = int(time.time() * 1000 - snapshots.ttl_hours * 3600 * 1000)
            live = {handle.key for handle in self.rooms}
            try:
                with trio.fail_after(60):
                    swept = await store.sweep(cutoff, live)
            except (StoreError, trio.TooSlowError) as exc:
                log.warning("store.sweep_failed error=%s", exc)
                continue
            if swept:
                log.info("store.swept rooms=%d", swept)

    # -- what the operations port asks --------------------------------------------------------

    def store_statistics(self) -> dict[str, float]:
        if self.persistence is None:
            return {}
        s = self.persistence.statistics()
        return {
            "log_writes": s.log_writes,
            "log_failures": s.log_failures,
            "log_seconds": s.log_seconds,
            "snapshot_writes": s.snapshot_writes,
            "snapshot_failures": s.snapshot_failures,
            "snapshot_seconds": s.snapshot_seconds,
            "pending_bytes": s.pending_bytes,
            "oldest_unsaved_seconds": self.persistence.durability.oldest_unsaved_seconds(),
        }

    def store_health(self) -> str | None:
        """Why the store (or a room type's writeback) makes the daemon degraded, or None."""
        if self.persistence is not None and not self.persistence.healthy:
            return f"store failing: {self.persistence.last_error}"
        for room_type in self.room_types:
            failure = room_type.describe("").get("last_draft_error")
            if failure:
                return f"{room_type.name} drafts failing: {failure}"
        return None

    def cluster_health(self) -> str | None:
        """Why the cluster makes the daemon degraded (Redis unreachable), or None."""
        return self.cluster.health() if self.cluster is not None else None

    async def store_reachable(self) -> str | None:
        if self.persistence is None:
            return None
        try:
            with trio.fail_after(2):
                await self.persistence.store.ping()
        except (StoreError, trio.TooSlowError) as exc:
            return f"store unreachable: {exc}"
        return None

    async def snapshot_room(self, key: str) -> Outcome:
        handle = self.rooms.get(key)
        if handle is None:
            return Outcome(404, {"error": f"no live room {key!r}"})
        if self.persistence is None:
            return Outcome(409, {"error": "persistence is not enabled in this daemon"})
        reply, answer = trio.open_memory_channel[bool](1)
        try:
            with trio.fail_after(self.config.shutdown_timeout + 30):
                await handle.mailbox.send(TakeSnapshot(reply=reply))
                written = await answer.receive()
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.EndOfChannel):
            return Outcome(409, {"error": "the room closed before its snapshot"})
        except trio.TooSlowError:
            return Outcome(504, {"error": "the snapshot is taking too long; see the log"})
        if not written:
            return Outcome(503, {"error": "the snapshot could not be written; see the log"})
        return Outcome(200, {"room": key, "snapshots": handle.room.snapshots_taken})

    def close_room(self, key: str) -> bool:
        return self.rooms.close(key)

    @property
    def demo_token_ttl(self) -> int:
        """demo.token_ttl, cut to auth.max_token_lifetime: a longer token would be refused."""
        longest = self.config.auth.max_token_lifetime
        ttl = self.config.demo.token_ttl
        return ttl if longest is None else max(1, min(ttl, int(longest)))

    def demo_token(self, name: str, role: str) -> str:
        """A token this daemon accepts: its lifetime, algorithm, issuer and audience."""
        if self.hmac_secret is None:
            return name  # development mode: the token is the user id
        # A demo clerk edits and reads the history (docs/history.md): an editor's role
        # with `records:history` added, for records rooms only like every demo token.
        auth = self.config.auth
        return mint_token(
            self.hmac_secret,
            user=f"demo-{secrets.token_hex(4)}",
            name=name,
            role="editor" if role == "clerk" else role,
            permissions=(HISTORY,) if role == "clerk" else (),
            rooms=("records:*",),
            ttl_seconds=self.demo_token_ttl,
            algorithm=next((a for a in auth.effective_algorithms if a.startswith("HS")), "HS256"),
            issuer=auth.issuer,
            audience=auth.audience,
        )

    def public_ws_url(self, request_host: str) -> str:
        host = self.config.host
        if host in ("0.0.0.0", "::", ""):
            host = request_host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"ws://{host}:{self.port}{self.config.path}"


def _builtin_room_types(config: RealtimeConfig) -> RoomTypeRegistry:
    """`records`, the one type built in; others come from `room_types` (docs/room-types.md)."""
    records = config.records
    drafts = records.drafts_dir or str(Path(config.data_dir) / "drafts")
    return RoomTypeRegistry(
        [
            RecordsRoomType(
                data_dir=records.data_dir,
                drafts_dir=drafts,
                refresh_seconds=records.refresh_seconds,
            )
        ]
    )
