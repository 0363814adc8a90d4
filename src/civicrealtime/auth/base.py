"""The authentication seam: an upgrade request in, an identity or a rejection out."""

from __future__ import annotations

from typing import Protocol

import attrs


@attrs.frozen(kw_only=True, slots=True)
class UpgradeRequest:
    """What an authenticator may look at; built from the HTTP upgrade request."""

    target: str  # request target: path and query string, as sent
    headers: tuple[tuple[str, str], ...]  # lower-cased names
    subprotocols: tuple[str, ...]
    peer: str  # the TCP peer's address

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        for key, value in self.headers:
            if key == wanted:
                return value
        return None


@attrs.frozen(kw_only=True, slots=True)
class Identity:
    user_id: str
    name: str | None = None
    role: str | None = None
    permissions: frozenset[str] = frozenset()
    token_id: str | None = None
    expires_at: float | None = None  # unix seconds
    issued_at: float | None = None  # unix seconds
    # Room patterns the token is restricted to (`records:abc`, `records:*`); None: any.
    rooms: tuple[str, ...] | None = None


class AuthRejected(Exception):
    """The request carries no acceptable credentials.

    `code` goes to the client (error frame and close reason); `detail` goes only to the
    server's log, because it may say too much about the token; `reason` is a short fixed
    word for metrics (missing_token, invalid_token, expired, not_yet_valid, revoked,
    introspection, key_unavailable).
    """

    def __init__(self, code: str, detail: str, *, reason: str = "invalid_token") -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.reason = reason


class Authenticator(Protocol):
    async def authenticate(self, request: UpgradeRequest) -> Identity:
        """Return the identity behind the request, or raise `AuthRejected`.

        Called after the upgrade, inside the connection's setup deadline: a cancellation
        there means the client took too long, and the connection is closed.
        """
        ...
