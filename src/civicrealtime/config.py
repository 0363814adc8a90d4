"""The daemon's configuration: attrs classes, structured from YAML by cattrs, strictly.

Where it comes from, first match wins: `--config PATH`, `$CIVICREALTIME_CONFIG`, then
`.system-data/realtime.yml` relative to the working directory. A missing file means the
embedded defaults (and a log line saying so). A file that fails validation is an error
naming the key path, the value and what was expected; we never fall back to defaults
silently (the original did, re-enabling a server its operator had switched off). Keys may
be nested under `realtime:` as in the seed, or written at the top level.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, cast, get_args

import attrs
import cattrs
import yaml
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from .protocol.control import ControlFramesMode

DEFAULT_CONFIG_PATH = Path(".system-data/realtime.yml")
ENV_CONFIG = "CIVICREALTIME_CONFIG"
ENV_HOST = "CIVICREALTIME_HOST"
ENV_PORT = "CIVICREALTIME_PORT"
ENV_HTTP_PORT = "CIVICREALTIME_HTTP_PORT"

T = TypeVar("T")


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
    # Seconds to receive the HTTP upgrade request (trio-websocket's default is 60).
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


class ConfigError(Exception):
    """The configuration cannot be used; `problems` lists each one, with its key path."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid configuration in {source}:\n{lines}")


# --- strict structuring -------------------------------------------------------------------
# cattrs' default hooks coerce ("3001" becomes 3001, True becomes 1); a config file that
# says `port: yes` is a mistake to report, not a value to guess.

_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _strict_int(value: object, _: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("expected an integer")
    return value


def _strict_float(value: object, _: type) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("expected a number")
    return float(value)


def _strict_bool(value: object, _: type) -> bool:
    if not isinstance(value, bool):
        raise TypeError("expected true or false")
    return value


def _strict_str(value: object, _: type) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _strict_str_tuple(value: object, _: type) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise TypeError("expected a list of strings")
    return tuple(value)


def _strict_role_map(value: object, _: type) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, Mapping):
        raise TypeError("expected a mapping of role names to lists of permissions")
    return {_strict_str(k, str): _strict_str_tuple(v, tuple) for k, v in value.items()}


def _structure_room_types(value: object, _: type) -> dict[str, RoomTypeConfig]:
    # The shapes were checked beforehand by _room_type_problems, which names each problem
    # with its key path (cattrs would name only `room_types`).
    if value is None:
        return {}
    assert isinstance(value, Mapping)
    result = {}
    for name, entry in value.items():
        settings = entry or {}
        roles = settings.get("roles")
        result[name] = RoomTypeConfig(
            handler=settings.get("handler"),
            options=dict(settings.get("options") or {}),
            roles=None if roles is None else dict(roles),
        )
    return result


# `protocol.control_frames` was a boolean; a file written then keeps meaning what it meant.
_CONTROL_FRAMES_BOOLEANS: dict[bool, ControlFramesMode] = {True: "always", False: "never"}


def _control_frames_mode(value: object, _: type) -> ControlFramesMode:
    if isinstance(value, bool):
        return _CONTROL_FRAMES_BOOLEANS[value]
    for mode in get_args(ControlFramesMode):
        if value == mode:
            return cast(ControlFramesMode, mode)
    raise TypeError(
        "expected one of 'opt-in', 'always', 'never' (or the former true, meaning 'always', "
        "or false, meaning 'never')"
    )


# Literal types structured by their own hook (which names the allowed values itself).
_LITERALS_WITH_HOOKS = (ControlFramesMode,)


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    converter.register_structure_hook(int, _strict_int)
    converter.register_structure_hook(float, _strict_float)
    converter.register_structure_hook(bool, _strict_bool)
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook_func(lambda t: t == tuple[str, ...], _strict_str_tuple)
    converter.register_structure_hook_func(
        lambda t: t == dict[str, tuple[str, ...]], _strict_role_map
    )
    converter.register_structure_hook_func(
        lambda t: t == dict[str, RoomTypeConfig], _structure_room_types
    )
    converter.register_structure_hook_func(lambda t: t == ControlFramesMode, _control_frames_mode)
    return converter


_converter = _make_converter()


def _value_at(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, Mapping) or key not in data:
            return None
        data = data[key]
    return data


def _fields_of(cls: type) -> list[str]:
    return [a.name for a in attrs.fields(cls)]


def _describe(
    exc: BaseException, path: tuple[str, ...], raw: Any, cls: type | None
) -> Iterator[str]:
    """Turn cattrs' nested exception groups into one line per problem."""
    if isinstance(exc, ClassValidationError | IterableValidationError):
        for sub in exc.exceptions:
            sub_path = path
            sub_cls = None
            for note in getattr(sub, "__notes__", []):
                name = getattr(note, "name", None)
                if isinstance(name, str):
                    sub_path = (*path, name)
                    sub_type = getattr(note, "type", None)
                    is_class = isinstance(sub_type, type) and attrs.has(sub_type)
                    sub_cls = sub_type if is_class else None
            yield from _describe(sub, sub_path, raw, sub_cls)
        return
    if isinstance(exc, FieldError):
        where = ".".join((*path, exc.field))
        yield f"{where}: {_value_at(raw, (*path, exc.field))!r} is invalid: expected {exc.expected}"
        return
    dotted = ".".join(path) or "(top level)"
    if isinstance(exc, ForbiddenExtraKeysError):
        known = _fields_of(exc.cl)
        for key in sorted(exc.extra_fields):
            where = ".".join((*path, key))
            hint = difflib.get_close_matches(key, known, n=1)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
            yield f"{where}: unknown key{suggestion} (known keys here: {', '.join(known)})"
        return
    value = _value_at(raw, path)
    if isinstance(exc, KeyError | AttributeError) or (
        cls is not None and not isinstance(value, Mapping)
    ):
        yield f"{dotted}: expected a mapping of keys, got {value!r}"
        return
    message = str(exc).strip("'\"") or type(exc).__name__
    if "Literal" in message or "not in" in message:
        message = "expected one of the documented values"
    yield f"{dotted}: {value!r} is invalid: {message}"


def _literal_problems(raw: Mapping[str, Any]) -> list[str]:
    """Literal fields: cattrs says little about them, so name the allowed values ourselves."""
    problems: list[str] = []

    def walk(cls: type, data: Any, path: tuple[str, ...]) -> None:
        if not isinstance(data, Mapping):
            return
        hints = attrs.resolve_types(cls)
        for field in attrs.fields(hints):
            if field.name not in data:
                continue
            value = data[field.name]
            ftype = field.type
            if attrs.has(ftype):
                walk(ftype, value, (*path, field.name))
            elif getattr(ftype, "__origin__", None) is Literal and (
                ftype not in _LITERALS_WITH_HOOKS
            ):
                allowed = ftype.__args__
                if value not in allowed or isinstance(value, bool):
                    choices = ", ".join(repr(a) for a in allowed)
                    where = ".".join((*path, field.name))
                    problems.append(f"{where}: {value!r} is invalid: expected one of {choices}")

    walk(RealtimeConfig, raw, ())
    return problems


def _defined_roles(raw: Mapping[str, Any]) -> set[str] | None:
    """The role names auth.roles will define, or None when it is itself invalid."""
    auth = raw.get("auth")
    if auth is None or (isinstance(auth, Mapping) and "roles" not in auth):
        return set(DEFAULT_ROLES)
    if not isinstance(auth, Mapping) or not isinstance(auth["roles"], Mapping):
        return None  # reported by cattrs
    return {role for role in auth["roles"] if isinstance(role, str)}


def _room_type_problems(raw: Mapping[str, Any]) -> list[str]:
    """`room_types`: every problem with its key path (names, keys, handler, options, roles)."""
    section = raw.get("room_types")
    if section is None:
        return []
    if not isinstance(section, Mapping):
        return [f"room_types: expected a mapping of room type names to settings, got {section!r}"]
    defined = _defined_roles(raw)
    known = _fields_of(RoomTypeConfig)
    problems: list[str] = []
    for name, entry in section.items():
        where = f"room_types.{name}"
        if not isinstance(name, str) or not ROOM_TYPE_NAME.fullmatch(name):
            problems.append(
                f"room_types: {name!r} is not a room type name: expected 1 to 64 lowercase "
                "letters, digits, '-' or '_', starting with a letter"
            )
            continue
        if name in RESERVED_ROOM_TYPES:
            problems.append(f"{where}: records rooms are built in; configure them under records:")
            continue
        if entry is None:
            continue
        if not isinstance(entry, Mapping):
            problems.append(
                f"{where}: expected a mapping of keys ({', '.join(known)}), got {entry!r}"
            )
            continue
        for key in entry:
            if key not in known:
                hint = difflib.get_close_matches(str(key), known, n=1)
                suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
                problems.append(
                    f"{where}.{key}: unknown key{suggestion} (known keys here: {', '.join(known)})"
                )
        handler = entry.get("handler")
        if handler is not None and not (
            isinstance(handler, str)
            and (HANDLER_REFERENCE.fullmatch(handler) or ENTRY_POINT_NAME.fullmatch(handler))
        ):
            problems.append(
                f"{where}.handler: {handler!r} is invalid: expected 'package.module:factory' or "
                "the name of an entry point of the group civicrealtime.room_types"
            )
        options = entry.get("options")
        if options is not None and (
            not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options)
        ):
            problems.append(
                f"{where}.options: {options!r} is invalid: expected a mapping of option names "
                "to values (the factory's keyword arguments)"
            )
        roles = entry.get("roles")
        if roles is not None and not isinstance(roles, Mapping):
            problems.append(
                f"{where}.roles: {roles!r} is invalid: expected a mapping of role names to "
                "'view' or 'edit'"
            )
        elif roles is not None:
            for role, access in roles.items():
                if not isinstance(access, str) or access not in ACCESS_VALUES:
                    problems.append(
                        f"{where}.roles.{role}: {access!r} is invalid: expected 'view' or 'edit'"
                    )
                if defined is not None and role not in defined:
                    problems.append(
                        f"{where}.roles.{role}: unknown role: auth.roles defines "
                        f"{', '.join(sorted(defined)) or 'no role'}"
                    )
    return problems


def structure(raw: Any, source: str = "<config>") -> RealtimeConfig:
    """Validate a parsed YAML document and build the configuration, or raise ConfigError."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(source, [f"(top level): expected a mapping of keys, got {raw!r}"])
    if "realtime" in raw:
        if set(raw) != {"realtime"}:
            others = ", ".join(sorted(k for k in raw if k != "realtime"))
            raise ConfigError(
                source,
                [f"(top level): keys beside 'realtime:' ({others}) must be nested inside it"],
            )
        raw = raw["realtime"] if raw["realtime"] is not None else {}
        if not isinstance(raw, Mapping):
            raise ConfigError(source, [f"realtime: expected a mapping of keys, got {raw!r}"])
    early_problems = _literal_problems(raw) + _room_type_problems(raw)
    if early_problems:
        raise ConfigError(source, early_problems)
    try:
        return _converter.structure(raw, RealtimeConfig)
    except (ClassValidationError, ForbiddenExtraKeysError) as exc:
        problems = list(dict.fromkeys(_describe(exc, (), raw, RealtimeConfig)))
        raise ConfigError(source, problems) from None


def unstructure(config: RealtimeConfig) -> dict[str, Any]:
    result: dict[str, Any] = _converter.unstructure(config)
    return result


def apply_environment(config: RealtimeConfig, environ: Mapping[str, str]) -> RealtimeConfig:
    """`CIVICREALTIME_HOST`, `CIVICREALTIME_PORT`, `CIVICREALTIME_HTTP_PORT` override the file."""
    changes: dict[str, Any] = {}
    if environ.get(ENV_HOST):
        changes["host"] = environ[ENV_HOST]
    if environ.get(ENV_PORT):
        changes["port"] = _env_port(environ, ENV_PORT)
    if environ.get(ENV_HTTP_PORT):
        changes["http"] = attrs.evolve(config.http, port=_env_port(environ, ENV_HTTP_PORT))
    return attrs.evolve(config, **changes) if changes else config


def _env_port(environ: Mapping[str, str], name: str) -> int:
    text = environ[name]
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise ConfigError(name, [f"{name}: {text!r} is invalid: expected 0..65535"])
    return int(text)


@attrs.frozen(kw_only=True)
class LoadedConfig:
    config: RealtimeConfig
    source: Path
    found: bool  # False: the file does not exist and defaults are in effect


def resolve_path(explicit: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> Path:
    if explicit is not None:
        return Path(explicit)
    if environ.get(ENV_CONFIG):
        return Path(environ[ENV_CONFIG])
    return DEFAULT_CONFIG_PATH


def load(
    explicit: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> LoadedConfig:
    """Find, read, validate and apply environment overrides. Raises ConfigError."""
    env = os.environ if environ is None else environ
    path = resolve_path(explicit, env)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit is not None or env.get(ENV_CONFIG):
            # A file the operator named must exist; only the default location may be absent.
            raise ConfigError(str(path), ["file not found"]) from None
        return LoadedConfig(
            config=apply_environment(RealtimeConfig(), env), source=path, found=False
        )
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc}"]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        if isinstance(exc, yaml.MarkedYAMLError):
            # PyYAML names a string source "<unicode string>"; the file is what to open.
            for mark in (exc.context_mark, exc.problem_mark):
                if mark is not None:
                    mark.name = str(path)
        raise ConfigError(str(path), [f"not valid YAML: {exc}"]) from None
    config = structure(raw, str(path))
    return LoadedConfig(config=apply_environment(config, env), source=path, found=True)


def dump_yaml(config: RealtimeConfig) -> str:
    return yaml.safe_dump({"realtime": unstructure(config)}, sort_keys=False)
