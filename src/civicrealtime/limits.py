"""Connection counters per IP and per user, released exactly once on every path."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import attrs


class LimitExceeded(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


@attrs.define
class ConnectionLimits:
    per_ip: int
    per_user: int
    _by_ip: Counter[str] = attrs.Factory(Counter)
    _by_user: Counter[str] = attrs.Factory(Counter)

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
