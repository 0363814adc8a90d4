"""Mapping token claims (JWT or introspection answer) to an `Identity`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import AuthRejected, Identity


def _optional_str(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise AuthRejected("AUTH_FAILED", f"claim {name!r} is not a string")
    return value


def _str_list(claims: Mapping[str, Any], name: str) -> tuple[str, ...] | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        # Space-separated, as OAuth's `scope` is.
        return tuple(value.split())
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AuthRejected("AUTH_FAILED", f"claim {name!r} is not a list of strings")
    return tuple(value)


def _optional_time(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AuthRejected("AUTH_FAILED", f"claim {name!r} is not a number")
    return float(value)


def identity_from_claims(claims: Mapping[str, Any], *, source: str) -> Identity:
    user_id = claims.get("sub")
    if not isinstance(user_id, str) or not user_id:
        raise AuthRejected("AUTH_FAILED", f"{source}: no 'sub' (user id)")
    return Identity(
        user_id=user_id,
        name=_optional_str(claims, "name"),
        role=_optional_str(claims, "role"),
        permissions=frozenset(_str_list(claims, "permissions") or ()),
        token_id=_optional_str(claims, "jti"),
        expires_at=_optional_time(claims, "exp"),
        issued_at=_optional_time(claims, "iat"),
        rooms=_str_list(claims, "rooms"),
    )
