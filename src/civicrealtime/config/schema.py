"""The configuration's schema: one frozen attrs class per section, with its checks.

Each class owns its defaults and the range checks of its own fields (`FieldError` names the
field). Reading YAML, strict structuring, checks across sections and the environment are
`loading.py`'s; this module never reads a file or the environment.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import attrs

from ..protocol.control import ControlFramesMode


class FieldError(ValueError):
    """A value out of range; carries the field name so the error can name the key path."""

    def __init__(self, field: str, expected: str) -> None:
        self.field = field
        self.expected = expected
        super().__init__(f"{field}: expected {expected}")


def _at_least(minimum: float) -> Any:
    def check(instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
        if value is not None and value < minimum:
            raise FieldError(attribute.name, f"a value of at least {minimum}")

    return check


def _at_most(maximum: float) -> Any:
    def check(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
        if value > maximum:
            raise FieldError(attribute.name, f"a value of at most {maximum}")

    return check


def _positive(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise FieldError(attribute.name, "a value greater than 0")


def _positive_or_none(
    instance: object, attribute: attrs.Attribute[Any], value: float | None
) -> None:
    if value is not None:
        _positive(instance, attribute, value)


@attrs.frozen(kw_only=True)
class RoomsConfig:
    max_rooms: int = attrs.field(default=100, validator=_at_least(1))
    # Grace period, in seconds, an empty room stays in memory before eviction.
    cleanup_timeout: float = attrs.field(default=300.0, validator=_at_least(0))
    # The original's name for the grace period, in milliseconds; overrides cleanup_timeout.
    grace_period_ms: int | None = attrs.field(default=None, validator=_at_least(0))
    # Bound of each room actor's mailbox; a full mailbox slows its senders down.
    mailbox_size: int = attrs.field(default=1024, validator=_at_least(1))
    # Document size (bytes of encoded state, estimated): above the first, a warning; above
    # the second, updates that would grow it are refused with an error frame.
    document_warn_bytes: int = attrs.field(default=8 * 1024 * 1024, validator=_at_least(1))
    max_document_bytes: int = attrs.field(default=32 * 1024 * 1024, validator=_at_least(1))
    # Updates that wait for changes the room never received (pending): counted against
    # max_document_bytes, bounded per room and per connection (a connection past its
    # budget is closed with 4029), and dropped after pending_timeout seconds.
    max_pending_bytes: int = attrs.field(default=4 * 1024 * 1024, validator=_at_least(1))
    max_pending_bytes_per_connection: int = attrs.field(default=1024 * 1024, validator=_at_least(1))
    pending_timeout: float = attrs.field(default=30.0, validator=_positive)

    @property
    def grace_seconds(self) -> float:
        if self.grace_period_ms is not None:
            return self.grace_period_ms / 1000
        return self.cleanup_timeout


@attrs.frozen(kw_only=True)
class SnapshotsConfig:
    # false: rooms live in memory only (nothing survives a restart).
    enabled: bool = True
    # Seconds between snapshots of a changed room; 0: only after max_updates, on
    # eviction and at shutdown.
    interval: float = attrs.field(default=300.0, validator=_at_least(0))
    # A snapshot is also taken after this many updates.
    max_updates: int = attrs.field(default=100, validator=_at_least(1))
    storage: Literal["database", "filesystem"] = "database"
    # For 'database': a postgresql:// URL, or an SQLite file path. null: SQLite at
    # <data_dir>/realtime.sqlite3.
    database_url: str | None = None
    # For 'filesystem': the directory holding realtime/snapshots/. null: <data_dir>.
    directory: str | None = None
    # Every update a room applies reaches the update log within this many milliseconds
    # (one transaction per flush); a crash loses at most this window.
    flush_ms: int = attrs.field(default=100, validator=_at_least(1))
    # Snapshots kept per room (newest first).
    keep: int = attrs.field(default=3, validator=_at_least(1))
    # Snapshots of rooms not live are deleted after this many hours, by a sweep every
    # sweep_interval seconds.
    ttl_hours: float = attrs.field(default=48.0, validator=_positive)
    sweep_interval: float = attrs.field(default=21600.0, validator=_positive)
    # Snapshots larger than this many bytes are stored zlib-compressed. null: never.
    compress_over: int | None = attrs.field(default=None, validator=_at_least(1))
    # Updates waiting for the store (while it fails) are kept in memory up to this many
    # bytes; beyond it the largest rooms rely on their next snapshot (a loud log line).
    max_pending_bytes: int = attrs.field(default=64 * 1024 * 1024, validator=_at_least(1024))

    def location(self, data_dir: str) -> str:
        """The store as `persistence.store_for` understands it."""
        if self.storage == "filesystem":
            return "filesystem:" + (self.directory or data_dir)
        return self.database_url or str(Path(data_dir) / "realtime.sqlite3")


@attrs.frozen(kw_only=True)
class HistoryConfig:
    # Keep every accepted update with who, when and where, and versions to read, compare
    # and restore (docs/history.md). Needs snapshots.enabled (the same store).
    enabled: bool = True
    # Seconds of quiet after which a room's open version closes (also at eviction and at
    # shutdown).
    version_idle: float = attrs.field(default=120.0, validator=_positive)
    # Days of history to keep; null keeps everything. The newest version always stays.
    retention_days: float | None = attrs.field(default=None, validator=_positive_or_none)


@attrs.frozen(kw_only=True)
class RateLimitingConfig:
    # Sustained frames per second per connection (free pings excluded). A typist makes about
    # two frames per keystroke; the original's 10 slowed fast typists down.
    messages_per_second: float = attrs.field(default=40.0, validator=_at_least(1))
    # Frames a connection may send at once above the sustained rate (paste, reconnect).
    burst: int = attrs.field(default=200, validator=_at_least(1))
    # Seconds a connection may keep flooding (being slowed down) before it is closed 4013.
    flood_close_after: float = attrs.field(default=10.0, validator=_positive)
    # Pings (`{"type":"ping"}`) are free up to this rate per connection (with a burst of
    # ping_burst); beyond it each ping counts as a frame against messages_per_second.
    pings_per_second: float = attrs.field(default=2.0, validator=_positive)
    ping_burst: int = attrs.field(default=10, validator=_at_least(1))
    connections_per_ip: int = attrs.field(default=100, validator=_at_least(1))
    connections_per_user: int = attrs.field(default=10, validator=_at_least(1))
    # Reverse proxies (addresses or CIDR ranges) whose X-Forwarded-For is believed.
    trusted_proxies: tuple[str, ...] = attrs.field(default=())

    @trusted_proxies.validator
    def _check_proxies(
        self, attribute: attrs.Attribute[tuple[str, ...]], value: tuple[str, ...]
    ) -> None:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise FieldError(
                    attribute.name, f"IP addresses or CIDR ranges, not {entry!r}"
                ) from None


@attrs.frozen(kw_only=True)
class ConnectionCleanupConfig:
    enabled: bool = True
    # Seconds between pings; a room sweeps its members at the same pace.
    check_interval: float = attrs.field(default=60.0, validator=_positive)
    # Seconds without any frame or pong after which a connection is closed (1001).
    stale_threshold: float = attrs.field(default=600.0, validator=_positive)


@attrs.frozen(kw_only=True)
class ConnectionConfig:
    # Seconds to receive the HTTP upgrade request (a slow loris gets no more).
    handshake_timeout: float = attrs.field(default=5.0, validator=_positive)
    # Seconds for authentication and joining the room after the upgrade.
    setup_timeout: float = attrs.field(default=10.0, validator=_positive)
    # Seconds one outbound frame may take to be written before the peer is dropped.
    send_timeout: float = attrs.field(default=10.0, validator=_positive)
    # Seconds the closing handshake may take before the TCP stream is cut.
    close_timeout: float = attrs.field(default=2.0, validator=_positive)
    # Frames waiting to be written to one client; beyond that it is closed with 1013.
    outbound_queue: int = attrs.field(default=1024, validator=_at_least(1))
    # Bytes waiting to be written to one client: once its queue holds this many, the next
    # frame closes it with 1013 too (it may exceed the bound by that one frame).
    outbound_queue_bytes: int = attrs.field(default=16 * 1024 * 1024, validator=_at_least(65536))
    # Largest inbound message, bytes; a larger one closes the connection with 1009.
    max_message_size: int = attrs.field(default=10 * 1024 * 1024, validator=_at_least(1024))


@attrs.frozen(kw_only=True)
class AwarenessConfig:
    """Bounds on presence (awareness) states: what one connection and one room may hold.

    An awareness frame larger than the room may hold (in entries or bytes) is refused
    before it is decoded; y-websocket clients echo every update they apply, so an honest
    frame may hold every state of the room, never more.
    """

    # Client ids one connection may publish (y-websocket uses one per document).
    max_client_ids_per_connection: int = attrs.field(default=4, validator=_at_least(1))
    # Bytes of one state (its JSON text).
    max_state_bytes: int = attrs.field(default=16 * 1024, validator=_at_least(64))
    # States one room holds, and their bytes in all (each state counts 20 bytes more).
    max_room_states: int = attrs.field(default=1000, validator=_at_least(1))
    max_room_bytes: int = attrs.field(default=1024 * 1024, validator=_at_least(1024))

    def __attrs_post_init__(self) -> None:
        if self.max_room_bytes < self.max_state_bytes:
            raise FieldError("max_room_bytes", "at least max_state_bytes")


@attrs.frozen(kw_only=True)
class RecordsConfig:
    # A CivicPress data directory (records/<type>/<year>/<id>.md). Set: records rooms are
    # seeded from the record's Markdown, unknown ids are refused (4004), drafts are
    # written. null: records rooms start empty (said once in the log).
    data_dir: str | None = None
    # Where drafts go: <drafts_dir>/<type>/<id>.md. null: <data_dir of the daemon>/drafts.
    drafts_dir: str | None = None
    # Seconds between checks that the records directory changed (re-index).
    refresh_seconds: float = attrs.field(default=2.0, validator=_positive)
    # Seconds between polls of the published record files; a change made outside the daemon
    # (git pull, an import) is merged into its room. 0 turns the watcher off.
    watch_seconds: float = attrs.field(default=0.4, validator=_at_least(0))


@attrs.frozen(kw_only=True)
class ProtocolConfig:
    # Who gets the unsolicited JSON text frames (connection.ack, error, notice,
    # session.revoked), which stock y-websocket clients cannot parse: "opt-in", a connection
    # that offers the `civicrealtime.control.v1` subprotocol; "always", every connection;
    # "never", none. Pongs always go out. The former booleans still load: true is "always"
    # (what it did), false is "never".
    control_frames: ControlFramesMode = "opt-in"


# What a role may do in the rooms of a configured room type (`room_types.<name>.roles`).
Access = Literal["view", "edit"]
ACCESS_VALUES: tuple[Access, ...] = ("view", "edit")
# Room type names a configuration may not take: `records` is built in (configured under
# `records:`), and `record` is its alias in URLs.
RESERVED_ROOM_TYPES = frozenset({"records", "record"})
ROOM_TYPE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
# `package.module:attribute` (the attribute may be dotted: `module:Class.factory`).
HANDLER_REFERENCE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
ENTRY_POINT_NAME = re.compile(r"[\w.-]+")


@attrs.frozen(kw_only=True)
class RoomTypeConfig:
    """One room type enabled by configuration (docs/room-types.md, "Plugin room types")."""

    # `package.module:factory`, or the name of an entry point of the group
    # `civicrealtime.room_types`. null: the entry point named like the room type.
    handler: str | None = None
    # Keyword arguments of the factory, which is called as `factory(name, **options)`.
    options: dict[str, Any] = attrs.Factory(dict)
    # Role -> "view" or "edit" in this type's rooms; roles must be those of auth.roles.
    # null: DEFAULT_ACCESS (admin, clerk, editor edit; public views), for the roles that
    # auth.roles defines. {}: no role grants anything (only explicit permission claims).
    roles: dict[str, Access] | None = None

    def access(self, defined_roles: Iterable[str]) -> dict[str, Access]:
        """Each role's access to this type's rooms, the default applied."""
        if self.roles is not None:
            return dict(self.roles)
        defined = set(defined_roles)
        return {role: access for role, access in DEFAULT_ACCESS.items() if role in defined}


# Mirrors CivicPress's roles: staff who write records may edit, the public may read.
DEFAULT_ROLES: dict[str, tuple[str, ...]] = {
    "admin": ("records:view", "records:edit"),
    "clerk": ("records:view", "records:edit"),
    "editor": ("records:view", "records:edit"),
    "public": ("records:view",),
}
# The access the CivicPress roles get to a configured room type that does not say.
DEFAULT_ACCESS: dict[str, Access] = {
    "admin": "edit",
    "clerk": "edit",
    "editor": "edit",
    "public": "view",
}
HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
PUBLIC_KEY_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


@attrs.frozen(kw_only=True)
class AuthConfig:
    # "jwt": signed tokens (the default). "development": anyone may connect; the token,
    # if any, is taken as the user id. Never use development mode on a shared network.
    mode: Literal["jwt", "development"] = "jwt"
    # Accepted signature algorithms. Empty: HS256 with a shared secret, or RS256, ES256
    # and EdDSA when a public key source is configured. "none" is never accepted.
    algorithms: tuple[str, ...] = ()
    # HMAC secret file; $CIVICREALTIME_JWT_SECRET wins over it. With neither, the daemon
    # creates a random secret in .system-data/jwt-secret (mode 0600) and says so.
    secret_file: str | None = None
    # Public keys: a PEM file, a JWKS file or a JWKS URL (fetched with a timeout, cached,
    # refreshed when a token names an unknown key id).
    public_key_file: str | None = None
    jwks_file: str | None = None
    jwks_url: str | None = None
    jwks_cache_seconds: float = attrs.field(default=300.0, validator=_positive)
    fetch_timeout: float = attrs.field(default=5.0, validator=_positive)
    # Seconds of clock skew tolerated on nbf and iat. A token past its exp is refused at
    # the handshake whatever the leeway: its session would be closed at exp anyway.
    leeway: float = attrs.field(default=30.0, validator=_at_least(0))
    issuer: str | None = None
    audience: str | None = None
    # The longest lifetime (exp - iat) of a token this daemon accepts, seconds; longer
    # ones, and ones without iat or exp (whose lifetime is unknown), are refused. A revocation by
    # token id whose expiry is unknown is kept this long plus twice the leeway. null: no
    # limit, and such a revocation is kept for ever.
    max_token_lifetime: float | None = attrs.field(default=None, validator=_at_least(1))
    # Deprecated `?token=` in the URL (it ends up in proxy logs). Off unless set.
    allow_query_token: bool = False
    # Opaque session tokens (not JWTs) are sent to this URL to learn the user.
    introspection_url: str | None = None
    introspection_cache_seconds: float = attrs.field(default=60.0, validator=_at_least(0))
    # Permissions each role grants; explicit `permissions` claims add to them.
    roles: dict[str, tuple[str, ...]] = attrs.Factory(lambda: dict(DEFAULT_ROLES))
    # May read-only viewers publish presence (cursor, name)?
    viewers_publish_awareness: bool = True

    def __attrs_post_init__(self) -> None:
        algorithms = set(self.algorithms)
        if any(a.lower() == "none" for a in algorithms):
            raise FieldError("algorithms", 'a list without "none" (unsigned tokens)')
        unknown = algorithms - HMAC_ALGORITHMS - PUBLIC_KEY_ALGORITHMS
        if unknown:
            known = ", ".join(sorted(HMAC_ALGORITHMS | PUBLIC_KEY_ALGORITHMS))
            raise FieldError("algorithms", f"algorithms among {known}")
        if self.public_keys_configured and algorithms & HMAC_ALGORITHMS:
            raise FieldError(
                "algorithms", "no HMAC algorithm (HS*) when a public key source is configured"
            )
        if not self.public_keys_configured and algorithms - HMAC_ALGORITHMS:
            raise FieldError(
                "algorithms",
                "HS256/HS384/HS512 only, unless public_key_file, jwks_file or jwks_url is set",
            )

    @property
    def public_keys_configured(self) -> bool:
        return bool(self.public_key_file or self.jwks_file or self.jwks_url)

    @property
    def effective_algorithms(self) -> tuple[str, ...]:
        if self.algorithms:
            return self.algorithms
        return ("RS256", "ES256", "EdDSA") if self.public_keys_configured else ("HS256",)


@attrs.frozen(kw_only=True)
class LoggingConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"
    # "text": `time level logger event key=value ...`; "json": one JSON object per line.
    format: Literal["text", "json"] = "text"


@attrs.frozen(kw_only=True)
class HttpConfig:
    # The operations port: /health, /ready, /metrics, /admin/ (and /demo/). The WebSocket
    # port cannot answer plain HTTP, so this is a second listener.
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = attrs.field(default=3002, validator=[_at_least(0), _at_most(65535)])
    # A file holding a static admin token (besides JWTs whose role is admin).
    admin_token_file: str | None = None


@attrs.frozen(kw_only=True)
class DemoConfig:
    # The collaborative editor page at /demo/ and its token endpoint. null: on only when
    # the HTTP port is bound to a loopback address. A public demo logs a warning.
    enabled: bool | None = None
    # Lifetime of the tokens the demo page mints, seconds: short, since anyone who reaches
    # the page gets one (at most an hour).
    token_ttl: int = attrs.field(default=600, validator=[_at_least(60), _at_most(3600)])
    # Host names (besides IP addresses and localhost) the token endpoint answers to, e.g.
    # the public name of a proxy in front of the ops port. Any other Host header is
    # refused: a page of another site that rebinds its name to this address gets nothing.
    allowed_hosts: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class ClusterConfig:
    # Several nodes share rooms through Redis (docs/scaling.md). false: Redis is never
    # touched. Needs a shared store: snapshots.database_url must be postgresql://.
    enabled: bool = False
    redis_url: str = "redis://127.0.0.1:6379"
    # This node's name in logs and in Redis; null: <hostname>-<random>. Each start adds
    # its own suffix, so a restarted node is never mistaken for its previous life.
    node_id: str | None = None
    # Prefix of every Redis key and stream (several clusters may share one Redis).
    key_prefix: str = "civicrealtime"
    # Seconds between heartbeats (node liveness, snapshot leases, dead-node checks).
    heartbeat_interval: float = attrs.field(default=2.0, validator=_positive)
    # Seconds without a heartbeat after which a node counts as dead: its clients'
    # presence disappears on the other nodes and its snapshot leases can be taken.
    presence_ttl: float = attrs.field(default=10.0, validator=_positive)
    # Safety bound on each room's stream (entries, approximate): streams are trimmed once
    # a snapshot holds them; this only bounds Redis memory if snapshots stop.
    stream_maxlen: int = attrs.field(default=10000, validator=_at_least(100))
    # Bytes of updates waiting to be published while Redis is unreachable; past it they
    # are merged per room, then dropped with a loud log line (other nodes then reload
    # those rooms from the store when Redis returns).
    publish_buffer_bytes: int = attrs.field(default=16 * 1024 * 1024, validator=_at_least(1024))
    # Seconds one Redis command may take before it counts as a failure.
    redis_timeout: float = attrs.field(default=5.0, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if self.presence_ttl < 2 * self.heartbeat_interval:
            raise FieldError("presence_ttl", "at least twice heartbeat_interval")
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise FieldError("redis_url", "a redis://, rediss:// or unix:// URL")
        if not self.key_prefix or any(ch.isspace() for ch in self.key_prefix):
            raise FieldError("key_prefix", "a non-empty string without spaces")


@attrs.frozen(kw_only=True)
class RealtimeConfig:
    enabled: bool = True
    host: str = "0.0.0.0"  # behind a reverse proxy, listen broadly
    # 0 asks the OS for a free port (tests, embedding); the log line says which one.
    port: int = attrs.field(default=3001, validator=[_at_least(0), _at_most(65535)])
    path: str = attrs.field(default="/realtime")
    # Seconds rooms get to finish their work at shutdown before they are cancelled.
    shutdown_timeout: float = attrs.field(default=5.0, validator=_positive)
    # Where the daemon keeps its own files (generated secret, SQLite store), relative to
    # the working directory unless absolute.
    data_dir: str = ".system-data"
    # Browser origins allowed to open a WebSocket (cross-site WebSocket hijacking). Empty:
    # any origin. An upgrade with another Origin header is refused with HTTP 403.
    allowed_origins: tuple[str, ...] = ()
    rooms: RoomsConfig = attrs.Factory(RoomsConfig)
    snapshots: SnapshotsConfig = attrs.Factory(SnapshotsConfig)
    history: HistoryConfig = attrs.Factory(HistoryConfig)
    rate_limiting: RateLimitingConfig = attrs.Factory(RateLimitingConfig)
    connection_cleanup: ConnectionCleanupConfig = attrs.Factory(ConnectionCleanupConfig)
    connection: ConnectionConfig = attrs.Factory(ConnectionConfig)
    protocol: ProtocolConfig = attrs.Factory(ProtocolConfig)
    awareness: AwarenessConfig = attrs.Factory(AwarenessConfig)
    auth: AuthConfig = attrs.Factory(AuthConfig)
    logging: LoggingConfig = attrs.Factory(LoggingConfig)
    records: RecordsConfig = attrs.Factory(RecordsConfig)
    http: HttpConfig = attrs.Factory(HttpConfig)
    demo: DemoConfig = attrs.Factory(DemoConfig)
    cluster: ClusterConfig = attrs.Factory(ClusterConfig)
    # More room types beside records, by name (the URL segment): docs/room-types.md.
    room_types: dict[str, RoomTypeConfig] = attrs.Factory(dict)

    @path.validator
    def _check_path(self, attribute: attrs.Attribute[str], value: str) -> None:
        if not value.startswith("/") or any(ch in value for ch in "?# "):
            raise FieldError(attribute.name, "a path starting with '/' without '?', '#' or space")
