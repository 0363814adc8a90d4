"""Verification keys for asymmetric JWTs: a PEM file, a JWKS file, or a JWKS URL.

The URL is fetched with httpx (it runs on trio through anyio), under a timeout, only when a
token needs a key: connections whose keys are cached never wait on it. The key set is
cached for `jwks_cache_seconds` and refetched early when a token names an unknown `kid`,
at most once per `MIN_REFRESH_SECONDS`, so forged key ids cannot make us hammer the URL.
Concurrent connections needing a fetch share one request.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Protocol

import httpx
import jwt
import trio

log = logging.getLogger("civicrealtime.auth")

MIN_REFRESH_SECONDS = 10.0


class KeyError_(Exception):
    """No key can verify this token (unknown kid, unreachable JWKS URL, bad key file)."""


class KeyProvider(Protocol):
    async def key_for(self, kid: str | None, algorithm: str) -> Any:
        """The key to verify a token with; raises KeyError_."""
        ...


class StaticKey:
    """One PEM public key, read once at start and prepared per algorithm on first use."""

    def __init__(self, path: Path) -> None:
        try:
            self._pem = path.read_bytes()
        except OSError as exc:
            raise KeyError_(f"cannot read public key file {path}: {exc.strerror}") from None
        self._prepared: dict[str, Any] = {}

    async def key_for(self, kid: str | None, algorithm: str) -> Any:
        if algorithm not in self._prepared:
            try:
                # PyJWT refuses a key of the wrong kind for the algorithm (RSA for ES256...).
                key = jwt.get_algorithm_by_name(algorithm).prepare_key(self._pem)
            except (jwt.InvalidKeyError, ValueError, TypeError, NotImplementedError) as exc:
                raise KeyError_(f"the public key cannot verify {algorithm}: {exc}") from None
            self._prepared[algorithm] = key
        return self._prepared[algorithm]


class _JwkSetKeys:
    def __init__(self) -> None:
        self._keys: dict[str | None, Any] = {}

    def _load(self, document: object, origin: str) -> None:
        try:
            key_set = jwt.PyJWKSet.from_dict(document)  # type: ignore[arg-type]
        except (jwt.PyJWKSetError, jwt.PyJWKError, TypeError, ValueError) as exc:
            raise KeyError_(f"invalid JWKS from {origin}: {exc}") from None
        self._keys = {k.key_id: k for k in key_set.keys}

    def _find(self, kid: str | None) -> Any | None:
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values())).key
        jwk = self._keys.get(kid)
        return None if jwk is None else jwk.key


class JwksFile(_JwkSetKeys):
    def __init__(self, path: Path) -> None:
        super().__init__()
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise KeyError_(f"cannot read JWKS file {path}: {exc}") from None
        self._load(document, str(path))

    async def key_for(self, kid: str | None, algorithm: str) -> Any:
        key = self._find(kid)
        if key is None:
            raise KeyError_(f"no key with kid {kid!r} in the JWKS file")
        return key


class JwksUrl(_JwkSetKeys):
    def __init__(self, url: str, *, cache_seconds: float, timeout: float) -> None:
        super().__init__()
        self._url = url
        self._cache_seconds = cache_seconds
        self._timeout = timeout
        self._fetched_at: float | None = None
        self._fetching: trio.Event | None = None
        self._last_error: str | None = None

    async def key_for(self, kid: str | None, algorithm: str) -> Any:
        now = trio.current_time()
        stale = self._fetched_at is None or now - self._fetched_at > self._cache_seconds
        if stale:
            await self._refresh()
        key = self._find(kid)
        # Keys rotate: an unknown kid may be a new key. Refetch, but not too often.
        if (
            key is None
            and self._fetched_at is not None
            and trio.current_time() - self._fetched_at >= MIN_REFRESH_SECONDS
        ):
            await self._refresh()
            key = self._find(kid)
        if key is None:
            detail = f" (last fetch failed: {self._last_error})" if self._last_error else ""
            raise KeyError_(f"no key with kid {kid!r} at the JWKS URL{detail}")
        return key

    async def _refresh(self) -> None:
        """Fetch the key set once for every waiter; a failed fetch keeps the old keys."""
        if self._fetching is not None:
            await self._fetching.wait()
            return
        self._fetching = trio.Event()
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                response = await client.get(self._url)
                response.raise_for_status()
                self._load(response.json(), self._url)
            self._last_error = None
            log.info("auth.jwks_fetched keys=%d", len(self._keys))
        except (httpx.HTTPError, ValueError, KeyError_) as exc:
            self._last_error = f"{type(exc).__name__}: {exc}"
            log.warning("auth.jwks_fetch_failed error=%s", self._last_error)
        finally:
            now = trio.current_time()
            # A failed fetch is retried after MIN_REFRESH_SECONDS, not on every token.
            if self._last_error is None:
                self._fetched_at = now
            else:
                self._fetched_at = now - self._cache_seconds + MIN_REFRESH_SECONDS
            event, self._fetching = self._fetching, None
            event.set()
