"""Minting HMAC tokens: `civicrealtime token` and the demo page's token endpoint.

A minted token carries the configured issuer and audience, so a daemon that checks them
accepts the tokens it mints itself.
"""

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
    issuer: str | None = None,
    audience: str | None = None,
) -> str:
    if ttl_seconds <= 0:
        raise ValueError(f"a token's lifetime must be positive, got {ttl_seconds} s")
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": user,
        "iat": now,
        "exp": now + ttl_seconds,
        "jti": secrets.token_hex(8),
    }
    if issuer is not None:
        claims["iss"] = issuer
    if audience is not None:
        claims["aud"] = audience
    if name:
        claims["name"] = name
    if role:
        claims["role"] = role
    if rooms:
        claims["rooms"] = list(rooms)
    if permissions:
        claims["permissions"] = list(permissions)
    return jwt.encode(claims, secret, algorithm=algorithm)
