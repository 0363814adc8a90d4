"""The composition root: configuration, room manager, server and authenticator, wired once.

`RealtimeService` is the public API for running the realtime module inside another trio
program (the seed's "bundled" mode): `await nursery.start(service.run)` returns the bound
port, and `service.shutdown()` begins a graceful stop. The CLI daemon is a thin layer over
it.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import jwt
import trio
import trio.lowlevel

from .auth import Authenticator, DevelopmentAuthenticator
from .auth.introspection import Introspector
from .auth.keys import JwksFile, JwksUrl, KeyError_, KeyProvider, StaticKey
from .auth.minting import mint_token
from .auth.permissions import HISTORY
from .auth.revocation import Revocations
from .auth.secrets import SecretError, resolve_secret
from .auth.token_auth import TokenAuthenticator
from .config import RealtimeConfig
from .extras import import_extra
from .history_blame import changed_blocks
from .http import OpsApp, serve_http
from .loopmonitor import measure_loop_lag
from .persistence import Persistence, Store, StoreError, store_for
from .persistence.filesystem import FilesystemStore
from .persistence.historyrecorder import HistoryRecorder
from .persistence.historystores import history_for
from .persistence.roomhooks import PersistedRooms
from .persistence.sqlite import SqliteStore
from .protocol import close_reason
from .protocol.closecodes import CloseCode
from .records.handler import RecordsRoomType
from .records.watcher import ACTOR as FILE_ACTOR
from .records.watcher import Edit, PublishedWatcher
from .rooms import RoomManager, RoomTypeRegistry
from .rooms.edits import RoomGone, edit_room
from .rooms.hooks import RoomHooks
from .rooms.manager import RoomUnavailable
from .rooms.messages import TakeSnapshot
from .rooms.origin import FILESYSTEM_ORIGIN
from .rooms.plugins import RoomTypeLoadError, add_configured_room_types
from .server import RealtimeServer, Revoked
from .stats import Stats

if TYPE_CHECKING:
    from .cluster import ClusterService

log = logging.getLogger("civicrealtime")

# How long an admin command waits for one store call before answering with an error.
STORE_CALL_TIMEOUT = 30.0


# The daemon's exit codes (docs/operations.md, "Exit codes"): a supervisor or an operator
# tells from the code alone which kind of thing to fix.
EXIT_FAILURE = 1  # an unexpected error (the log has the traceback) or a runtime failure
EXIT_CONFIG = 2  # the configuration is invalid, or needs an optional dependency not installed
EXIT_LISTEN = 3  # a port cannot be listened on (in use, privileged, not an address of ours)
EXIT_FILE = 4  # a file or directory cannot be read or written (permissions, missing)
EXIT_STORE = 5  # the store cannot be opened or read (PostgreSQL down, SQLite file unusable)


class StartupError(Exception):
    """The daemon cannot start. The message is one line: what (the component), where (the
    address or path), the OS error, and the setting or variable to change."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        # Driver messages (psycopg's) span lines; a start-up failure is one log line.
        super().__init__(" ".join(message.split()))
        if exit_code is not None:
            self.exit_code = exit_code


class ListenError(StartupError):
    """A listening port cannot be opened."""

    exit_code = EXIT_LISTEN


class FileSetupError(StartupError):
    """A file or directory the configuration names cannot be used."""

    exit_code = EXIT_FILE


class StoreSetupError(StartupError):
    """The configured store cannot be opened at start."""

    exit_code = EXIT_STORE


class RoomTypeSetupError(StartupError):
    """A room type of `room_types` cannot be built (unknown handler, import error, ...)."""

    exit_code = EXIT_CONFIG


class AuthSetupError(StartupError):
    """The configured credentials cannot be used (missing file, bad key, short secret)."""

    exit_code = EXIT_CONFIG


def describe_os_error(exc: OSError) -> str:
    """`[Errno 98] Address already in use (EADDRINUSE)`: the text and the name to search."""
    if exc.errno is None:
        return str(exc)
    name = errno.errorcode.get(exc.errno, "")
    return f"[Errno {exc.errno}] {exc.strerror}" + (f" ({name})" if name else "")


def _os_error_of(group: BaseExceptionGroup[BaseException]) -> OSError | None:
    """The first OSError of a group holding nothing else (a listener failing in a nursery)."""
    matched, rest = group.split(OSError)
    if matched is None or rest is not None:
        return None
    leaf: BaseException = matched
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return leaf if isinstance(leaf, OSError) else None


def _listen_advice(error: OSError, port: int, port_setting: str, host_setting: str) -> str:
    if error.errno == errno.EADDRINUSE:
        return f"another process holds it: stop it, or set {port_setting} to a free port"
    if error.errno == errno.EACCES and 0 < port < 1024:
        return (
            f"ports below 1024 need root or CAP_NET_BIND_SERVICE: set {port_setting} to 1024 "
            "or above (and put nginx in front), or grant the capability"
        )
    if error.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT) or isinstance(
        error, socket.gaierror
    ):
        return f"set {host_setting} to an address of this machine"
    return f"change {port_setting} or {host_setting}"


async def _listening(
    component: str,
    host: str,
    port: int,
    settings: tuple[str, str],
    start: Callable[[], Awaitable[int]],
) -> int:
    """`start()` a listener; a failure to bind becomes one ListenError line."""
    try:
        return await start()
    except OSError as exc:
        error = exc
    except BaseExceptionGroup as group:
        found = _os_error_of(group)
        if found is None:
            raise
        error = found
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    port_setting, host_setting = settings
    raise ListenError(
        f"{component}: cannot listen on {address}: {describe_os_error(error)}; "
        f"{_listen_advice(error, port, port_setting, host_setting)}"
    ) from error


def build_authenticator(
    config: RealtimeConfig,
    revocations: Revocations,
    environ: Mapping[str, str] | None = None,
) -> tuple[Authenticator, bytes | None]:
    """The authenticator the configuration asks for, and the HMAC secret if there is one.

    Raises AuthSetupError.
    """
    auth = config.auth
    if auth.mode == "development":
        log.warning(
            "auth.development_mode: every connection is accepted without verification; "
            "never expose this daemon like this"
        )
        return DevelopmentAuthenticator(), None
    secret: bytes | None = None
    keys: KeyProvider | None = None
    setting = "auth.secret_file (or $CIVICREALTIME_JWT_SECRET)"
    try:
        if auth.public_key_file:
            setting = "auth.public_key_file"
            keys = StaticKey(Path(auth.public_key_file))
            _check_public_key(Path(auth.public_key_file), auth.effective_algorithms)
        elif auth.jwks_file:
            setting = "auth.jwks_file"
            keys = JwksFile(Path(auth.jwks_file))
        elif auth.jwks_url:
            setting = "auth.jwks_url"
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
        # Raised `from None`, the OS error is still the context: a file we may not read is
        # a file problem (exit 4), a key we cannot use a configuration one (exit 2).
        cause = exc.__context__
        if isinstance(cause, OSError):
            name = errno.errorcode.get(cause.errno or 0, "OSError")
            raise FileSetupError(
                f"auth: {exc} ({name}); fix the file or its permissions, or change {setting}"
            ) from None
        raise AuthSetupError(f"auth: {exc}; change {setting}") from None
    except OSError as exc:
        # Creating <data_dir>/jwt-secret: the data directory is not ours to write.
        raise FileSetupError(
            f"auth: cannot create the generated secret in {exc.filename or config.data_dir}: "
            f"{describe_os_error(exc)}; make data_dir ({config.data_dir}) writable by this "
            "user, or change data_dir, auth.secret_file or $CIVICREALTIME_JWT_SECRET"
        ) from None
    introspector = None
    if auth.introspection_url:
        introspector = Introspector(
            auth.introspection_url,
            cache_seconds=auth.introspection_cache_seconds,
            timeout=auth.fetch_timeout,
        )
    authenticator = TokenAuthenticator(
        auth,
        hmac_secret=secret,
        keys=keys,
        introspector=introspector,
        revocations=revocations,
    )
    return authenticator, secret


def _check_public_key(path: Path, algorithms: tuple[str, ...]) -> None:
    """A PEM no configured algorithm can use fails at start, not at every connection.

    StaticKey prepares keys on first use, when a bad file would only show as refused tokens.
    """
    pem = path.read_bytes()
    problems = []
    for algorithm in algorithms:
        try:
            jwt.get_algorithm_by_name(algorithm).prepare_key(pem)
        except (jwt.InvalidKeyError, ValueError, TypeError, NotImplementedError) as exc:
            problems.append(f"{algorithm}: {exc}")
        else:
            return
    raise AuthSetupError(
        f"auth: the public key file {path} holds no key usable with auth.algorithms "
        f"({'; '.join(problems)}); change auth.public_key_file to a PEM public key, or "
        "auth.algorithms"
    )


@attrs.frozen
class Outcome:
    """The answer to an admin command: an HTTP status and a JSON body."""

    status: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.status < 400


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RealtimeService:
    """Everything the daemon runs, wired once; `run` it in a nursery."""

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
        self.persistence: Persistence | None = None
        # The history of every room (persistence/history*.py); None when off.
        self.history: HistoryRecorder | None = None
        hooks: RoomHooks | None = None
        snapshots = config.snapshots
        if snapshots.enabled:
            if store is None:
                store = store_for(snapshots.location(config.data_dir), keep=snapshots.keep)
            self.persistence = Persistence(
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
        self.admin_token = _read_admin_token(config.http.admin_token_file)
        self.watcher = self._make_watcher()
        self.demo_enabled = self._decide_demo()
        self.listening = False
        self.port: int | None = None
        self.http_port: int | None = None
        self._shutdown = trio.Event()
        self._http_shutdown = trio.Event()
        self.stopped = trio.Event()

    def _make_watcher(self) -> PublishedWatcher | None:
        """The watcher of the published records (records/watcher.py), if there are any."""
        interval = self.config.records.watch_seconds
        for room_type in self.room_types:
            if isinstance(room_type, RecordsRoomType) and room_type.index is not None:
                if interval <= 0:
                    return None
                watcher = PublishedWatcher(
                    room_type.index,
                    self._deliver_file_edits,
                    interval=interval,
                    ignore_under=room_type.drafts_dir,
                    bases_dir=Path(self.config.data_dir) / "published",
                )
                watcher.on_merge = self._count_file_merge
                watcher.on_failure = self._count_file_failure
                return watcher
        return None

    def _count_file_merge(self) -> None:
        self.stats.record_file_merges += 1

    def _count_file_failure(self) -> None:
        self.stats.record_file_failures += 1

    async def _deliver_file_edits(
        self, edits: Sequence[tuple[str, Edit]]
    ) -> tuple[set[str], dict[str, str]]:
        """Each edit into its room if it is live or stored; a room never opened needs none."""
        stored: set[str] = set()
        if self.persistence is not None:
            try:
                with trio.fail_after(STORE_CALL_TIMEOUT):
                    stored = set(await self.persistence.store.list_rooms())
            except (StoreError, trio.TooSlowError) as exc:
                why = str(exc) or "the store did not answer"
                return set(), {record_id: why for record_id, _ in edits}
        merged: set[str] = set()
        failed: dict[str, str] = {}
        for record_id, edit in edits:
            key = f"records:{record_id}"
            if self.rooms.get(key) is None and key not in stored:
                continue
            try:
                result = await edit_room(
                    self.rooms,
                    key,
                    "records",
                    actor=FILE_ACTOR,
                    edit=edit,
                    origin=FILESYSTEM_ORIGIN,
                )
            except (RoomUnavailable, RoomGone) as exc:
                failed[record_id] = str(exc) or type(exc).__name__
                continue
            if result.error is None:
                merged.add(record_id)
            else:
                failed[record_id] = result.error
        return merged, failed

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
                await self._restore_revocations(self.persistence.store)
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
                        root.start_soon(self._restore_when_tailing, self.persistence.store)
                await root.start(self.rooms.run)
                if self.watcher is not None:
                    await root.start(self.watcher.run)
                http = self.config.http
                if http.enabled:
                    self.http_port = await _listening(
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
                    self.port = await _listening(
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
                    self.server.close_all(
                        CloseCode.SHUTTING_DOWN, close_reason("SERVER_SHUTTING_DOWN")
                    )
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
        elif isinstance(store, SqliteStore | FilesystemStore):
            problem = f"the store is {store.description}, a file of this machine"
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

    async def _restore_revocations(self, store: Store) -> None:
        """Before the first connection: a restart must not let a revoked session back in."""
        try:
            with trio.fail_after(STORE_CALL_TIMEOUT):
                kept = await store.load_revocations()
        except (StoreError, trio.TooSlowError) as exc:
            raise StoreSetupError(
                f"cannot read the revoked sessions from {store.description}: "
                f"{exc or 'no answer'}; refusing to start without them"
            ) from None
        count = self.revocations.restore(kept)
        if count:
            log.info("auth.revocations_restored count=%d", count)

    async def _restore_when_tailing(self, store: Store) -> None:
        """Read the stored revocations again once the cluster tails the revocations stream.

        A revocation another node stored after our first read but published before we
        started tailing would otherwise be missed. Sessions admitted meanwhile are closed.
        """
        assert self.cluster is not None
        await self.cluster.revocations.tailing.wait()
        while True:
            try:
                with trio.fail_after(STORE_CALL_TIMEOUT):
                    kept = await store.load_revocations()
                break
            except (StoreError, trio.TooSlowError) as exc:
                log.warning("auth.revocations_reread_failed error=%s; retrying", exc)
                await trio.sleep(5)
        self.revocations.restore(kept)
        closed = self.server.close_revoked("revoked by an administrator")
        if closed:
            log.info("auth.revoked_on_reread connections=%d", closed)

    async def _open_store(self, store: Store) -> None:
        try:
            with trio.fail_after(30):
                await store.open()
        except (StoreError, trio.TooSlowError) as exc:
            why = str(exc) or "no answer within 30 s"
            # The store's message often starts with its own description: say it once.
            why = why.removeprefix(f"{store.description}: ")
            raise StoreSetupError(
                f"store: cannot open {store.description}: {why}; {_store_advice(self.config)}"
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
            "oldest_unsaved_seconds": self.persistence.oldest_unsaved_seconds(),
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

    def describe_rooms(self) -> list[dict[str, Any]]:
        return [
            {
                "room": handle.key,
                "type": handle.room_type,
                "connections": handle.members,
                "size_bytes": handle.room.size_estimate,
                "updates_applied": handle.room.updates_applied,
            }
            for handle in self.rooms
        ]

    def describe_room(self, key: str) -> dict[str, Any] | None:
        handle = self.rooms.get(key)
        if handle is None:
            return None
        room = handle.room
        awareness = {}
        for client_id, state in room.awareness.states().items():
            awareness[str(client_id)] = json.loads(state)
        return {
            "room": key,
            "type": handle.room_type,
            "size_bytes": len(room.doc.get_update()),
            "updates_applied": room.updates_applied,
            "participants": [
                {
                    "conn_id": m.conn_id,
                    "client_id": m.client_id,
                    "user_id": m.identity.user_id,
                    "name": m.identity.name,
                    "access": "edit" if m.can_edit else "view",
                    "peer": m.peer,
                    "awareness_ids": sorted(m.awareness_ids),
                    "queued_frames": m.outbound.pending,
                }
                for m in room.members.values()
            ],
            "awareness": awareness,
        }

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

    async def revoke(
        self,
        *,
        user_id: str | None,
        token_id: str | None,
        reason: str,
        token_expires_at: float | None = None,
    ) -> Outcome:
        """Revoke at once (here, and on the other nodes), then keep it in the store.

        The revocation holds in memory whatever the store does; 503 says it would not
        survive a restart (the store failed; asking again is safe). `token_expires_at`:
        the revoked token's `exp`, until which its id is refused.
        """
        revoked = self.server.revoke(
            user_id=user_id, token_id=token_id, reason=reason, token_expires_at=token_expires_at
        )
        try:
            return await self._store_revocation(revoked, user_id, token_id)
        finally:
            # Published after the store write: a node that starts meanwhile reads the store
            # once it tails the stream, so it misses neither (`_restore_when_tailing`).
            if self.cluster is not None:
                self.cluster.revocations.publish(
                    user_id, token_id, reason, revoked.records[0].revoked_at
                )

    async def _store_revocation(
        self, revoked: Revoked, user_id: str | None, token_id: str | None
    ) -> Outcome:
        body: dict[str, Any] = {
            "revoked": True,
            "connections_closed": revoked.connections_closed,
        }
        if self.persistence is None:
            body["persisted"] = False
            body["note"] = "snapshots are disabled: the revocation lasts until the daemon stops"
            return Outcome(200, body)
        store = self.persistence.store
        try:
            with trio.fail_after(STORE_CALL_TIMEOUT):
                for record in revoked.records:
                    await store.save_revocation(record)
        except (StoreError, trio.TooSlowError) as exc:
            why = str(exc) or f"no answer within {STORE_CALL_TIMEOUT:g} s"
            log.error(  # noqa: TRY400 - the store's message says it all; no bug to trace
                "auth.revocation_not_stored user=%s token_id=%s error=%s", user_id, token_id, why
            )
            body["persisted"] = False
            body["error"] = f"in force, but not stored (a restart would forget it): {why}"
            return Outcome(503, body)
        body["persisted"] = True
        return Outcome(200, body)

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


def _store_advice(config: RealtimeConfig) -> str:
    location = config.snapshots.location(config.data_dir)
    if location.startswith(("postgresql://", "postgres://")):
        return "start PostgreSQL or fix snapshots.database_url"
    if location.startswith("filesystem:"):
        return (
            "make the directory writable by this user, or change snapshots.directory (or data_dir)"
        )
    return (
        "make the file and its directory writable by this user, or change "
        "snapshots.database_url (or data_dir)"
    )


def check_paths(config: RealtimeConfig) -> None:
    """Directories the configuration names that must exist before start (FileSetupError)."""
    records = config.records.data_dir
    if records and not Path(records).is_dir():
        what = "is not a directory" if Path(records).exists() else "does not exist"
        raise FileSetupError(
            f"records: the data directory {records} {what}; change records.data_dir to a "
            "CivicPress data directory (or null to serve records rooms without one)"
        )


def _read_admin_token(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise FileSetupError(
            f"operations port: cannot read the admin token file {path}: "
            f"{describe_os_error(exc)}; fix its permissions or change http.admin_token_file"
        ) from None
    if len(token) < 16:
        raise AuthSetupError(
            f"operations port: the admin token in {path} is shorter than 16 characters; "
            "write a longer one or change http.admin_token_file"
        )
    return token
