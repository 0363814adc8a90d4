"""Development tokens: `civicrealtime token` signs one with the configured HMAC secret."""

from __future__ import annotations

import secrets
import time

import jwt


def mint_token(
    secret: bytes,
    *,
    user: str,
    role: str | None = None,
    name: str | None = None,
    rooms: tuple[str, ...] = (),
    permissions: tuple[str, ...] = (),
    ttl_seconds: int = 3600,
    algorithm: str = "HS256",
) -> str:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": user,
        "iat": now,
        "exp": now + ttl_seconds,
        "jti": secrets.token_hex(8),
    }
    if name:
        claims["name"] = name
    if role:
        claims["role"] = role
    if rooms:
        claims["rooms"] = list(rooms)
    if permissions:
        claims["permissions"] = list(permissions)
    return jwt.encode(claims, secret, algorithm=algorithm)
