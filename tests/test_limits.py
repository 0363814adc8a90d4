"""The token bucket (sans-IO) and the client address behind trusted proxies."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from civicrealtime.config import RateLimitingConfig
from civicrealtime.limits import TokenBucket, client_address


def test_fast_typist_is_never_slowed_under_the_defaults() -> None:
    """15 keystrokes a second, two frames each (update + caret), for a whole minute."""
    defaults = RateLimitingConfig()
    bucket = TokenBucket(defaults.messages_per_second, defaults.burst, now=0.0)
    t = 0.0
    for _ in range(15 * 60):
        assert bucket.take(t) == 0.0
        assert bucket.take(t + 0.001) == 0.0
        t += 1 / 15


def test_a_paste_within_the_burst_is_not_slowed() -> None:
    defaults = RateLimitingConfig()
    bucket = TokenBucket(defaults.messages_per_second, defaults.burst, now=0.0)
    assert all(bucket.take(0.0) == 0.0 for _ in range(defaults.burst))
    assert bucket.take(0.0) > 0


def test_flood_is_paced_at_the_sustained_rate() -> None:
    bucket = TokenBucket(rate=10, burst=5, now=0.0)
    for _ in range(5):
        assert bucket.take(0.0) == 0.0
    waits = [bucket.take(0.0) for _ in range(3)]
    assert waits == pytest.approx([0.1, 0.2, 0.3])


@settings(max_examples=300)
@given(
    rate=st.floats(min_value=1, max_value=1000),
    burst=st.integers(min_value=1, max_value=500),
    gaps=st.lists(st.floats(min_value=0, max_value=2), min_size=1, max_size=300),
)
def test_bucket_never_admits_more_than_rate_times_time_plus_burst(
    rate: float, burst: int, gaps: list[float]
) -> None:
    """Whatever the arrival pattern, a message waits exactly until the long-run bound allows it."""
    bucket = TokenBucket(rate, burst, now=0.0)
    now = 0.0
    for count, gap in enumerate(gaps, start=1):
        now += gap
        wait = bucket.take(now)
        assert wait >= 0
        # Acting at now + wait, `count` messages fit in burst + rate * (now + wait).
        assert count <= burst + rate * (now + wait) + 1e-6


@settings(max_examples=200)
@given(st.lists(st.floats(min_value=0, max_value=10), min_size=1, max_size=100))
def test_arrivals_slower_than_the_rate_never_wait(gaps: list[float]) -> None:
    bucket = TokenBucket(rate=10, burst=1, now=0.0)
    now = 0.0
    for gap in gaps:
        now += max(gap, 0.1)
        assert bucket.take(now) == 0.0


@pytest.mark.parametrize(
    ("peer", "xff", "trusted", "expected"),
    [
        ("203.0.113.9", "1.2.3.4", (), "203.0.113.9"),  # no trusted proxies: the peer
        ("203.0.113.9", "1.2.3.4", ("127.0.0.1",), "203.0.113.9"),  # peer not trusted
        ("127.0.0.1", "1.2.3.4", ("127.0.0.1",), "1.2.3.4"),
        ("127.0.0.1", None, ("127.0.0.1",), "127.0.0.1"),
        ("10.0.0.5", "6.6.6.6, 1.2.3.4, 10.0.0.7", ("10.0.0.0/8",), "1.2.3.4"),  # spoofed left
        ("127.0.0.1", "garbage, 1.2.3.4", ("127.0.0.1",), "1.2.3.4"),
        ("127.0.0.1", "1.2.3.4, garbage", ("127.0.0.1",), "127.0.0.1"),
        ("::1", "2001:db8::1", ("::1",), "2001:db8::1"),
    ],
)
def test_client_address(
    peer: str, xff: str | None, trusted: tuple[str, ...], expected: str
) -> None:
    assert client_address(peer, xff, trusted) == expected


def test_an_allowance_never_runs_into_debt() -> None:
    """The free pings: spent while there are some, refused (not delayed) after that."""
    bucket = TokenBucket(rate=2, burst=3, now=0.0)
    assert [bucket.try_take(0.0) for _ in range(5)] == [True, True, True, False, False]
    # Refusals cost nothing: half a second later one token is back, not minus two.
    assert bucket.try_take(0.5)
    assert not bucket.try_take(0.5)
    assert [bucket.try_take(10.0) for _ in range(4)] == [True, True, True, False]
