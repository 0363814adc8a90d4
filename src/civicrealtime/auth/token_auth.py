"""Real authentication: a JWT checked with PyJWT, or an opaque token sent to introspection.

Every failure is an `AuthRejected("AUTH_FAILED", detail)`: the client learns only that it
failed (error frame, close 4001); the detail goes to the server log, and never holds the
token itself.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import jwt

from ..config import AuthConfig
from .base import AuthRejected, Identity, UpgradeRequest
from .claims import identity_from_claims
from .introspection import Introspector
from .keys import KeyError_, KeyProvider
from .revocation import Revocations
from .tokens import find_token

log = logging.getLogger("civicrealtime.auth")


def looks_like_jwt(token: str) -> bool:
    """Three base64url segments; opaque session ids go to introspection instead."""
    parts = token.split(".")
    return len(parts) == 3 and all(parts[:2])


class TokenAuthenticator:
    def __init__(
        self,
        config: AuthConfig,
        *,
        hmac_secret: bytes | None,
        keys: KeyProvider | None,
        introspector: Introspector | None,
        revocations: Revocations,
    ) -> None:
        self._config = config
        self._secret = hmac_secret
        self._keys = keys
        self._introspector = introspector
        self._revocations = revocations
        self._algorithms = list(config.effective_algorithms)
        self._query_warned = False

    async def authenticate(self, request: UpgradeRequest) -> Identity:
        found = find_token(request, allow_query=self._config.allow_query_token)
        if found is None:
            raise AuthRejected(
                "AUTH_FAILED",
                "no token (Authorization, auth.<token>, ?token=)",
                reason="missing_token",
            )
        # Once per process: the warning is for the operator, not a per-connection cost.
        if found.source == "query" and not self._query_warned:
            log.warning(
                "auth.query_token_deprecated: a client sent its token in the URL "
                "(?token=), which proxies log; use the auth.<token> subprotocol"
            )
            self._query_warned = True
        if looks_like_jwt(found.token):
            identity = await self._verify_jwt(found.token)
        elif self._introspector is not None:
            identity = await self._introspector.identify(found.token)
        else:
            raise AuthRejected("AUTH_FAILED", "token is not a JWT and no introspection is set")
        self._check_lifetime(identity)
        if self._revocations.is_revoked(identity):
            raise AuthRejected(
                "AUTH_FAILED", f"session revoked for user {identity.user_id}", reason="revoked"
            )
        return identity

    def _check_lifetime(self, identity: Identity) -> None:
        """Refuse a token past its expiry, leeway or not, and one that lives too long.

        The leeway absorbs clock skew on `nbf` and `iat` only. A session is closed when
        its token expires by this server's clock, so accepting a token inside the leeway
        after `exp` would only accept it to close it at once (TOKEN_EXPIRED), and the
        client would reconnect in a loop until the leeway ran out.
        """
        expires_at = identity.expires_at
        now = time.time()
        if expires_at is not None and expires_at <= now:
            raise AuthRejected(
                "AUTH_FAILED",
                f"ExpiredSignatureError: expired {now - expires_at:.0f} s ago",
                reason="expired",
            )
        longest = self._config.max_token_lifetime
        if longest is not None:
            if expires_at is None or identity.issued_at is None:
                # Without `exp` (an introspected session) the lifetime is unbounded; without
                # `iat` only `exp - now` could be measured, and it shrinks as the token ages:
                # a 30-day token would pass a 1-day limit on its 29th day. Either way a
                # revocation of its id, kept for the limit, would be forgotten too early.
                missing = "exp" if expires_at is None else "iat"
                raise AuthRejected(
                    "AUTH_FAILED",
                    f"token has no {missing}: auth.max_token_lifetime needs exp and iat",
                )
            lifetime = expires_at - identity.issued_at
            if lifetime > longest + self._config.leeway:
                raise AuthRejected(
                    "AUTH_FAILED",
                    f"token lifetime {lifetime:.0f} s exceeds auth.max_token_lifetime "
                    f"({longest:g} s)",
                )

    async def _verify_jwt(self, token: str) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as exc:
            raise AuthRejected("AUTH_FAILED", f"malformed JWT header: {exc}") from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self._algorithms:
            raise AuthRejected("AUTH_FAILED", f"algorithm {algorithm!r} is not allowed")
        key: Any
        if algorithm.startswith("HS"):
            if self._secret is None:
                raise AuthRejected("AUTH_FAILED", "HMAC token but no secret configured")
            key = self._secret
        else:
            if self._keys is None:
                raise AuthRejected("AUTH_FAILED", "public-key token but no key configured")
            kid = header.get("kid")
            try:
                key = await self._keys.key_for(kid if isinstance(kid, str) else None, algorithm)
            except KeyError_ as exc:
                raise AuthRejected("AUTH_FAILED", str(exc), reason="key_unavailable") from None
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                leeway=self._config.leeway,
                issuer=self._config.issuer,
                audience=self._config.audience,
                options={
                    "require": ["exp", "sub"],
                    "verify_aud": self._config.audience is not None,
                    "verify_iss": self._config.issuer is not None,
                },
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthRejected(
                "AUTH_FAILED", f"ExpiredSignatureError: {exc}", reason="expired"
            ) from None
        except jwt.ImmatureSignatureError as exc:
            raise AuthRejected(
                "AUTH_FAILED", f"ImmatureSignatureError: {exc}", reason="not_yet_valid"
            ) from None
        except jwt.InvalidTokenError as exc:
            raise AuthRejected("AUTH_FAILED", f"{type(exc).__name__}: {exc}") from None
        iat = claims.get("iat")
        if isinstance(iat, int | float) and iat > time.time() + self._config.leeway:
            raise AuthRejected(
                "AUTH_FAILED",
                "ImmatureSignatureError: issued in the future",
                reason="not_yet_valid",
            )
        return identity_from_claims(claims, source="JWT")
