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
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import attrs
import cattrs
import yaml
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

DEFAULT_CONFIG_PATH = Path(".system-data/realtime.yml")
ENV_CONFIG = "CIVICREALTIME_CONFIG"
ENV_HOST = "CIVICREALTIME_HOST"
ENV_PORT = "CIVICREALTIME_PORT"

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


@attrs.frozen(kw_only=True)
class RoomsConfig:
    max_rooms: int = attrs.field(default=100, validator=_at_least(1))
    # Grace period, in seconds, an empty room stays in memory before eviction.
    cleanup_timeout: float = attrs.field(default=300.0, validator=_at_least(0))
    # The original's name for the grace period, in milliseconds; overrides cleanup_timeout.
    grace_period_ms: int | None = attrs.field(default=None, validator=_at_least(0))
    # Bound of each room actor's mailbox; a full mailbox slows its senders down.
    mailbox_size: int = attrs.field(default=1024, validator=_at_least(1))

    @property
    def grace_seconds(self) -> float:
        if self.grace_period_ms is not None:
            return self.grace_period_ms / 1000
        return self.cleanup_timeout


@attrs.frozen(kw_only=True)
class SnapshotsConfig:
    enabled: bool = True
    interval: float = attrs.field(default=300.0, validator=_at_least(0))
    max_updates: int = attrs.field(default=100, validator=_at_least(1))
    storage: Literal["database", "filesystem"] = "database"


@attrs.frozen(kw_only=True)
class RateLimitingConfig:
    messages_per_second: float = attrs.field(default=10.0, validator=_at_least(1))
    connections_per_ip: int = attrs.field(default=100, validator=_at_least(1))
    connections_per_user: int = attrs.field(default=10, validator=_at_least(1))


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
    # Largest inbound message, bytes; a larger one closes the connection with 1009.
    max_message_size: int = attrs.field(default=10 * 1024 * 1024, validator=_at_least(1024))


@attrs.frozen(kw_only=True)
class ProtocolConfig:
    # Unsolicited text frames (connection.ack, error, notice) for CivicPress's editor.
    control_frames: bool = True


@attrs.frozen(kw_only=True)
class AuthConfig:
    # "jwt": signed tokens (the default). "development": anyone may connect; the token,
    # if any, is taken as the user id. Never use development mode on a shared network.
    mode: Literal["jwt", "development"] = "jwt"


@attrs.frozen(kw_only=True)
class LoggingConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"


@attrs.frozen(kw_only=True)
class RealtimeConfig:
    enabled: bool = True
    host: str = "0.0.0.0"  # behind a reverse proxy, listen broadly
    # 0 asks the OS for a free port (tests, embedding); the log line says which one.
    port: int = attrs.field(default=3001, validator=[_at_least(0), _at_most(65535)])
    path: str = attrs.field(default="/realtime")
    # Seconds rooms get to finish their work at shutdown before they are cancelled.
    shutdown_timeout: float = attrs.field(default=5.0, validator=_positive)
    rooms: RoomsConfig = attrs.Factory(RoomsConfig)
    snapshots: SnapshotsConfig = attrs.Factory(SnapshotsConfig)
    rate_limiting: RateLimitingConfig = attrs.Factory(RateLimitingConfig)
    connection_cleanup: ConnectionCleanupConfig = attrs.Factory(ConnectionCleanupConfig)
    connection: ConnectionConfig = attrs.Factory(ConnectionConfig)
    protocol: ProtocolConfig = attrs.Factory(ProtocolConfig)
    auth: AuthConfig = attrs.Factory(AuthConfig)
    logging: LoggingConfig = attrs.Factory(LoggingConfig)

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


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    converter.register_structure_hook(int, _strict_int)
    converter.register_structure_hook(float, _strict_float)
    converter.register_structure_hook(bool, _strict_bool)
    converter.register_structure_hook(str, _strict_str)
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
            elif getattr(ftype, "__origin__", None) is Literal:
                allowed = ftype.__args__
                if value not in allowed or isinstance(value, bool):
                    choices = ", ".join(repr(a) for a in allowed)
                    where = ".".join((*path, field.name))
                    problems.append(f"{where}: {value!r} is invalid: expected one of {choices}")

    walk(RealtimeConfig, raw, ())
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
    literal_problems = _literal_problems(raw)
    if literal_problems:
        raise ConfigError(source, literal_problems)
    try:
        return _converter.structure(raw, RealtimeConfig)
    except (ClassValidationError, ForbiddenExtraKeysError) as exc:
        problems = list(dict.fromkeys(_describe(exc, (), raw, RealtimeConfig)))
        raise ConfigError(source, problems) from None


def unstructure(config: RealtimeConfig) -> dict[str, Any]:
    result: dict[str, Any] = _converter.unstructure(config)
    return result


def apply_environment(config: RealtimeConfig, environ: Mapping[str, str]) -> RealtimeConfig:
    """`CIVICREALTIME_HOST` and `CIVICREALTIME_PORT` override the file."""
    changes: dict[str, Any] = {}
    if environ.get(ENV_HOST):
        changes["host"] = environ[ENV_HOST]
    if environ.get(ENV_PORT):
        text = environ[ENV_PORT]
        if not text.isdigit() or not 1 <= int(text) <= 65535:
            raise ConfigError(ENV_PORT, [f"{ENV_PORT}: {text!r} is invalid: expected 1..65535"])
        changes["port"] = int(text)
    return attrs.evolve(config, **changes) if changes else config


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
        raise ConfigError(str(path), [f"not valid YAML: {exc}"]) from None
    config = structure(raw, str(path))
    return LoadedConfig(config=apply_environment(config, env), source=path, found=True)


def dump_yaml(config: RealtimeConfig) -> str:
    return yaml.safe_dump({"realtime": unstructure(config)}, sort_keys=False)
