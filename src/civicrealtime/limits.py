"""Limits: connections per IP and per user, message rate, and who the client really is."""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Protocol

import attrs


class LimitExceeded(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class SharedCounts(Protocol):
    """Per-user connection counts shared by several nodes (the cluster)."""

    async def add(self, user: str) -> int:
        """Count one more connection of `user`; return their connections on every node."""
        ...

    def remove(self, user: str) -> None:
        """One connection counted by `add` ended. Never waits."""
        ...


@attrs.define
class ConnectionLimits:
    per_ip: int
    per_user: int
    _by_ip: Counter[str] = attrs.Factory(Counter)
    _by_user: Counter[str] = attrs.Factory(Counter)
    # Set when nodes share the per-user limit: see `hold_across_nodes`.
    shared: SharedCounts | None = None

    @contextmanager
    def hold(self, ip: str, user: str) -> Iterator[None]:
        """Count one connection for the duration of the block, or raise LimitExceeded."""
        if self._by_ip[ip] >= self.per_ip:
            raise LimitExceeded("connections_per_ip")
        if self._by_user[user] >= self.per_user:
            raise LimitExceeded("connections_per_user")
        self._by_ip[ip] += 1
        self._by_user[user] += 1
        try:
            yield
        finally:
            self._release(self._by_ip, ip)
            self._release(self._by_user, user)

    @asynccontextmanager
    async def hold_across_nodes(self, user: str) -> AsyncIterator[None]:
        """With `shared` counts, the per-user limit counts every node (released once)."""
        if self.shared is None:
            yield
            return
        total = await self.shared.add(user)
        try:
            if total > self.per_user:
                raise LimitExceeded("connections_per_user")
            yield
        finally:
            self.shared.remove(user)

    @staticmethod
    def _release(counter: Counter[str], key: str) -> None:
        counter[key] -= 1
        if counter[key] <= 0:
            del counter[key]  # no empty entries left behind by passing IPs

    def count_ip(self, ip: str) -> int:
        return self._by_ip[ip]

    def count_user(self, user: str) -> int:
        return self._by_user[user]

    @property
    def tracked(self) -> int:
        return len(self._by_ip) + len(self._by_user)


class TokenBucket:
    """Sustained `rate` per second with room for `burst` at once. Sans-IO: time is passed in.

    `take(now)` spends one token and returns how long the caller must wait before acting on
    that message (0 when a token was available). The caller waits by not reading its socket,
    so a flood is slowed down by TCP backpressure and nothing is dropped.
    """

    __slots__ = ("_burst", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._stamp = now

    def take(self, now: float) -> float:
        elapsed = max(0.0, now - self._stamp)
        self._stamp = max(self._stamp, now)
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        self._tokens -= 1.0
        # Floating-point refills land a hair short of whole tokens; that is not a flood.
        if self._tokens >= -1e-9:
            return 0.0
        return -self._tokens / self._rate

    def try_take(self, now: float) -> bool:
        """Spend a token if one is there; never runs into debt (an allowance, not a pace)."""
        elapsed = max(0.0, now - self._stamp)
        self._stamp = max(self._stamp, now)
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        if self._tokens < 1.0 - 1e-9:
            return False
        self._tokens -= 1.0
        return True


def client_address(peer: str, forwarded_for: str | None, trusted: Sequence[str]) -> str:
    """The client's address: X-Forwarded-For is believed only from a trusted proxy.

    Walk the header from the right (the hop closest to us) past trusted proxies; the first
    untrusted address is the client. Anything unparsable stops the walk there.
    """
    if not trusted or forwarded_for is None:
        return peer
    networks = [ipaddress.ip_network(t, strict=False) for t in trusted]

    def is_trusted(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in networks)

    if not is_trusted(peer):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    client = peer
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break
        client = hop
        if not is_trusted(hop):
            break
    return client
