"""Room types enabled by configuration: find each handler, build it, say what roles get.

`room_types.<name>.handler` names a factory, `package.module:attribute`, or an entry point
of the group `civicrealtime.room_types` that a plugin package declares; without it, the
entry point named like the room type. The factory is called as `factory(name, **options)`
(a `RoomType` subclass is such a factory) and must return a `RoomType` of that name.
Installing a plugin enables nothing: only the configuration does (docs/room-types.md).

Every failure is a `RoomTypeLoadError` whose message is one line naming the setting: the
daemon refuses to start (exit 2) and `check-config` reports it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from ..config import RealtimeConfig, RoomTypeConfig
from .types import RoomType, RoomTypeRegistry

log = logging.getLogger("civicrealtime.rooms")

ENTRY_POINT_GROUP = "civicrealtime.room_types"


class RoomTypeLoadError(Exception):
    """A configured room type cannot be built; the message names the setting to fix."""


def add_configured_room_types(config: RealtimeConfig, registry: RoomTypeRegistry) -> RealtimeConfig:
    """Build and register every type of `config.room_types`; the configuration to run with.

    The configuration returned has the types' `roles` added to `auth.roles`, so that the
    permissions of every role are in one place from here on.
    """
    for room_type in load_room_types(config):
        try:
            registry.register(room_type)
        except ValueError:
            raise RoomTypeLoadError(
                f"room_types.{room_type.name}: a room type of this name is already "
                "registered; choose another name"
            ) from None
        access = config.room_types[room_type.name].access(config.auth.roles)
        log.info(
            "room_type.enabled name=%s view=%s edit=%s roles=%s",
            room_type.name,
            room_type.view_permission,
            room_type.edit_permission,
            ",".join(f"{role}:{level}" for role, level in access.items()) or "none",
        )
    roles = role_grants(config, registry)
    if roles == config.auth.roles:
        return config
    return attrs.evolve(config, auth=attrs.evolve(config.auth, roles=roles))


def load_room_types(config: RealtimeConfig) -> list[RoomType]:
    """Build every room type of `config.room_types`, in the order the file gives them."""
    return [load_room_type(name, settings) for name, settings in config.room_types.items()]


def load_room_type(name: str, settings: RoomTypeConfig) -> RoomType:
    where = f"room_types.{name}"
    factory, described = _find_factory(name, settings.handler)
    try:
        room_type = factory(name, **settings.options)
    except TypeError as exc:
        # Mostly an option the factory does not take, or a missing one.
        raise RoomTypeLoadError(
            f"{where}.options: {described} does not accept them: {exc}; fix {where}.options"
        ) from exc
    except Exception as exc:
        # Plugin code, run once at start: whatever it raises stops the start with one line
        # naming the setting (the traceback would only show the plugin's internals).
        raise RoomTypeLoadError(
            f"{where}: {described} failed: {type(exc).__name__}: {exc}; fix {where}.options"
        ) from exc
    if not isinstance(room_type, RoomType):
        raise RoomTypeLoadError(
            f"{where}.handler: {described} returned {type(room_type).__name__}, not a "
            "civicrealtime.rooms.RoomType"
        )
    if room_type.name != name:
        raise RoomTypeLoadError(
            f"{where}.handler: {described} built a room type named {room_type.name!r}, not "
            f"{name!r}; it must use the name it is given"
        )
    return room_type


def _find_factory(name: str, handler: str | None) -> tuple[Callable[..., Any], str]:
    """The factory and how to name it in messages."""
    where = f"room_types.{name}.handler"
    if handler is not None and ":" in handler:
        return _import_reference(handler, where), handler
    entry_name = handler or name
    found = [ep for ep in _entry_points() if ep.name == entry_name]
    if not found:
        installed = sorted({ep.name for ep in _entry_points()})
        listed = ", ".join(installed) if installed else "none is installed"
        raise RoomTypeLoadError(
            f"{where}: no entry point {entry_name!r} in the group {ENTRY_POINT_GROUP} "
            f"({listed}); install the plugin package, or set {where} to "
            "'package.module:factory'"
        )
    if len({ep.value for ep in found}) > 1:
        values = ", ".join(sorted({ep.value for ep in found}))
        raise RoomTypeLoadError(
            f"{where}: several installed packages declare the entry point {entry_name!r} "
            f"({values}); set {where} to the one to use, as 'package.module:factory'"
        )
    entry_point = found[0]
    described = f"the entry point {entry_name!r} ({entry_point.value})"
    try:
        loaded = entry_point.load()
    except Exception as exc:
        # Importing runs the plugin's module code: a SyntaxError or its own exception is
        # as much "cannot load" as a missing module, and gets the same one line.
        raise RoomTypeLoadError(
            f"{where}: cannot load {described}: {type(exc).__name__}: {exc}"
        ) from exc
    return _callable(loaded, described, where), described


def _entry_points() -> Iterable[importlib.metadata.EntryPoint]:
    return importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)


def _import_reference(reference: str, where: str) -> Callable[..., Any]:
    module_name, _, attribute = reference.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # as for entry points: whatever the module's code raises
        raise RoomTypeLoadError(
            f"{where}: cannot import {module_name!r} ({reference}): {type(exc).__name__}: "
            f"{exc}; install the package or fix {where}"
        ) from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise RoomTypeLoadError(
                f"{where}: {module_name!r} has no attribute {attribute!r} ({reference}); "
                f"fix {where}"
            ) from None
    return _callable(target, reference, where)


def _callable(target: Any, described: str, where: str) -> Callable[..., Any]:
    if not callable(target):
        raise RoomTypeLoadError(
            f"{where}: {described} is a {type(target).__name__}, not a RoomType class or a "
            "function returning one"
        )
    return target  # type: ignore[no-any-return]


def role_grants(
    config: RealtimeConfig, room_types: Iterable[RoomType]
) -> dict[str, tuple[str, ...]]:
    """`auth.roles`, plus what each configured room type's `roles` grant.

    "view" grants the type's view permission; "edit" both. The permissions are the type's
    own names (a plugin may call them `notes:read`), so this needs the built types.
    """
    granted: dict[str, list[str]] = {role: list(perms) for role, perms in config.auth.roles.items()}
    by_name: Mapping[str, RoomType] = {t.name: t for t in room_types}
    for name, settings in config.room_types.items():
        room_type = by_name.get(name)
        if room_type is None:
            continue
        for role, access in settings.access(config.auth.roles).items():
            added = [room_type.view_permission]
            if access == "edit":
                added.append(room_type.edit_permission)
            perms = granted.setdefault(role, [])
            perms.extend(p for p in added if p not in perms)
    return {role: tuple(perms) for role, perms in granted.items()}
