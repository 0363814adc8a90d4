"""How long a revocation by token id holds (issue #20: it was forgotten after 24 h)."""

from __future__ import annotations

import time

import pytest

from civicrealtime.auth import Identity
from civicrealtime.auth import revocation as revocation_module
from civicrealtime.auth.revocation import Revocations

DAY = 86400.0


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(revocation_module.time, "time", fake)
    return fake


def token(token_id: str) -> Identity:
    return Identity(user_id="mallory", token_id=token_id)


def test_a_token_revocation_without_expiry_is_kept(clock: Clock) -> None:
    revocations = Revocations()
    record = revocations.revoke_token("week-long", None)
    assert record.until is None  # stored as "never forget"
    clock.now += 8 * DAY
    revocations.revoke_token("another", None)  # pruning runs on every revocation
    assert revocations.is_revoked(token("week-long"))


def test_a_token_revocation_lasts_until_the_tokens_expiry(clock: Clock) -> None:
    revocations = Revocations()
    expires_at = clock.now + 7 * DAY
    record = revocations.revoke_token("week-long", expires_at)
    assert record.until == expires_at
    clock.now += 2 * DAY
    revocations.revoke_token("another", None)
    assert revocations.is_revoked(token("week-long"))
    clock.now = expires_at + 1
    # The token itself is expired by now: forgetting its id lets nothing in.
    assert not revocations.is_revoked(token("week-long"))
