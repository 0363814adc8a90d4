"""What an identity may do in a room: role permissions, explicit claims, room patterns."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .base import Identity


def effective_permissions(identity: Identity, roles: Mapping[str, Iterable[str]]) -> frozenset[str]:
    granted = set(identity.permissions)
    if identity.role is not None:
        granted.update(roles.get(identity.role, ()))
    return frozenset(granted)


# Reading a room's history (who changed what, earlier versions) and, with the edit
# permission, restoring one; see docs/security.md for why editing alone does not grant it.
HISTORY = "records:history"
ALL = "*"  # a permission that grants every other (development mode, operators' tokens)


def has_permission(granted: frozenset[str], permission: str) -> bool:
    return permission in granted or ALL in granted


def room_pattern_matches(pattern: str, key: str) -> bool:
    """`records:abc123` exactly, `records:*` any room of a type, `*` any room."""
    if pattern == "*":
        return True
    if pattern.endswith(":*"):
        return key.startswith(pattern[:-1])
    return pattern == key


def room_allowed(identity: Identity, key: str) -> bool:
    if identity.rooms is None:
        return True
    return any(room_pattern_matches(p, key) for p in identity.rooms)
