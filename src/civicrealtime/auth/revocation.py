"""Revoked sessions: by token id until the token would have expired, or by user.

A token id is remembered until the token's own expiry when it is known (the admin call
can give it; a live session with that id tells it), else for `auth.max_token_lifetime`
(plus twice the leeway), else for ever: forgetting it any earlier would let a long-lived
token work again.

Revoking a user refuses every token of theirs issued before the revocation (tokens carry
`iat`); a token without `iat` cannot prove it is newer, so it is refused too until it
expires. Each revocation is also a `Revocation` record, which the store keeps so that a
restart does not let a revoked session back in (`RealtimeService.revoke`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Literal

import attrs

from .base import Identity


@attrs.frozen(kw_only=True)
class Revocation:
    """A revoked user (tokens issued up to `revoked_at`) or token id (until `until`)."""

    kind: Literal["user", "token"]
    subject: str
    revoked_at: float  # unix seconds
    until: float | None  # unix seconds after which it may be forgotten; None: never


class Revocations:
    def __init__(self) -> None:
        self._tokens: dict[str, float] = {}  # token id -> unix time after which to forget it
        self._users: dict[str, float] = {}  # user id -> unix time of the revocation

    def revoke_token(self, token_id: str, until: float | None) -> Revocation:
        """Refuse `token_id` until `until` (unix seconds, its expiry); None: for ever."""
        now = time.time()
        forget_at = until if until is not None else math.inf
        forget_at = max(forget_at, self._tokens.get(token_id, forget_at))
        self._tokens[token_id] = forget_at
        self._forget_expired()
        kept = None if math.isinf(forget_at) else forget_at
        return Revocation(kind="token", subject=token_id, revoked_at=now, until=kept)

    def revoke_user(self, user_id: str, at: float | None = None) -> Revocation:
        """`at`: when another node revoked it (its clock decides which tokens are refused)."""
        revoked_at = time.time() if at is None else at
        self._users[user_id] = max(revoked_at, self._users.get(user_id, revoked_at))
        return Revocation(kind="user", subject=user_id, revoked_at=revoked_at, until=None)

    def restore(self, revocations: Iterable[Revocation]) -> int:
        """Take back revocations kept by the store; how many still apply."""
        now = time.time()
        count = 0
        for revocation in revocations:
            if revocation.kind == "user":
                # The later of two revocations refuses more tokens: keep it.
                previous = self._users.get(revocation.subject, revocation.revoked_at)
                self._users[revocation.subject] = max(previous, revocation.revoked_at)
                count += 1
            elif revocation.until is None or revocation.until > now:
                previous = self._tokens.get(revocation.subject, 0.0)
                until = revocation.until if revocation.until is not None else math.inf
                self._tokens[revocation.subject] = max(previous, until)
                count += 1
        return count

    def is_revoked(self, identity: Identity) -> bool:
        if identity.token_id is not None:
            until = self._tokens.get(identity.token_id)
            if until is not None and until > time.time():
                return True
        revoked_at = self._users.get(identity.user_id)
        if revoked_at is None:
            return False
        return identity.issued_at is None or identity.issued_at <= revoked_at

    def _forget_expired(self) -> None:
        now = time.time()
        self._tokens = {t: until for t, until in self._tokens.items() if until > now}
