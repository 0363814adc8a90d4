"""Opaque session tokens (CivicPress's own sessions are not JWTs): ask the issuer.

POST `token=<token>` (form-encoded, as RFC 7662 token introspection does) to
`auth.introspection_url`; the answer is JSON: `{"active": true, "sub": "...", "name": ...,
"role": ..., "permissions": [...], "rooms": [...], "exp": <unix s>}`. Answers are cached
per token (by its hash, never the token itself) for `introspection_cache_seconds`, never
beyond the token's `exp`. Any failure refuses the connection: we fail closed.
"""

from __future__ import annotations

import hashlib
import time

import httpx
import trio

from .base import AuthRejected, Identity
from .claims import identity_from_claims


class Introspector:
    def __init__(self, url: str, *, cache_seconds: float, timeout: float) -> None:
        self._url = url
        self._cache_seconds = cache_seconds
        self._timeout = timeout
        self._cache: dict[str, tuple[float, Identity]] = {}
        self.calls = 0

    async def identify(self, token: str) -> Identity:
        """The identity behind an opaque token, or AuthRejected (on any failure)."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = trio.current_time()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            identity = cached[1]
            if identity.expires_at is None or identity.expires_at > time.time():
                return identity
        self.calls += 1
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                response = await client.post(self._url, data={"token": token})
        except httpx.HTTPError as exc:
            raise AuthRejected(
                "AUTH_FAILED",
                f"introspection unreachable ({type(exc).__name__})",
                reason="introspection",
            ) from None
        if response.status_code != 200:
            raise AuthRejected(
                "AUTH_FAILED",
                f"introspection answered HTTP {response.status_code}",
                reason="introspection",
            )
        try:
            answer = response.json()
        except ValueError:
            raise AuthRejected(
                "AUTH_FAILED", "introspection answer is not JSON", reason="introspection"
            ) from None
        if not isinstance(answer, dict) or answer.get("active") is not True:
            raise AuthRejected(
                "AUTH_FAILED", "token is not active (introspection)", reason="introspection"
            )
        identity = identity_from_claims(answer, source="introspection")
        self._forget_expired(now)
        self._cache[digest] = (now + self._cache_seconds, identity)
        return identity

    def _forget_expired(self, now: float) -> None:
        if len(self._cache) > 10_000:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
