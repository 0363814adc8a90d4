"""Revoked sessions: by token id until the token would have expired, or by user.

Revoking a user refuses every token of theirs issued before the revocation (tokens carry
`iat`); a token without `iat` cannot prove it is newer, so it is refused too until it
expires.
"""

from __future__ import annotations

import time

from .base import Identity


class Revocations:
    def __init__(self) -> None:
        self._tokens: dict[str, float] = {}  # token id -> unix time after which to forget it
        self._users: dict[str, float] = {}  # user id -> unix time of the revocation

    def revoke_token(self, token_id: str, until: float | None) -> None:
        # Without an expiry, remember it for a day: long enough for any session token.
        self._tokens[token_id] = until if until is not None else time.time() + 86400
        self._forget_expired()

    def revoke_user(self, user_id: str) -> None:
        self._users[user_id] = time.time()

    def is_revoked(self, identity: Identity) -> bool:
        if identity.token_id is not None and identity.token_id in self._tokens:
            return True
        revoked_at = self._users.get(identity.user_id)
        if revoked_at is None:
            return False
        return identity.issued_at is None or identity.issued_at <= revoked_at

    def _forget_expired(self) -> None:
        now = time.time()
        self._tokens = {t: until for t, until in self._tokens.items() if until > now}
