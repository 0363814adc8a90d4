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
from typing import Any, Literal, cast, get_args

import attrs
import cattrs
import yaml
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from ..protocol.control import ControlFramesMode
from .schema import (
    ACCESS_VALUES,
    DEFAULT_ROLES,
    ENTRY_POINT_NAME,
    HANDLER_REFERENCE,
    RESERVED_ROOM_TYPES,
    ROOM_TYPE_NAME,
    FieldError,
    RealtimeConfig,
    RoomTypeConfig,
)

DEFAULT_CONFIG_PATH = Path(".system-data/realtime.yml")
ENV_CONFIG = "CIVICREALTIME_CONFIG"
ENV_HOST = "CIVICREALTIME_HOST"
ENV_PORT = "CIVICREALTIME_PORT"
ENV_HTTP_PORT = "CIVICREALTIME_HTTP_PORT"


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
