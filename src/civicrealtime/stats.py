"""Counters the daemon keeps about itself, as plain numbers.

The data path only increments integers here (a dict lookup and an add); the HTTP port turns
them into Prometheus exposition when scraped. That keeps the metrics library out of every
connection's hot loop and lets several services run in one process (tests) without a
global registry.
"""

from __future__ import annotations

from collections import Counter

import attrs


@attrs.define
class Summary:
    """Count and sum of observations, plus the largest, for a Prometheus summary."""

    count: int = 0
    total: float = 0.0
    largest: float = 0.0

    def observe(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.largest = max(self.largest, value)


@attrs.define
class Stats:
    messages_received: Counter[str] = attrs.Factory(Counter)
    messages_sent: Counter[str] = attrs.Factory(Counter)
    bytes_received: int = 0
    bytes_sent: int = 0
    updates_applied: int = 0
    # Characters outside the BMP rewritten as two U+FFFD because an update split them.
    text_splits: int = 0
    fanout_deliveries: int = 0
    closes: Counter[int] = attrs.Factory(Counter)
    auth_failures: Counter[str] = attrs.Factory(Counter)
    rate_limit_slowdowns: int = 0
    rate_limit_closes: int = 0
    slow_consumer_closes: int = 0
    room_crashes: int = 0
    on_snapshot_failures: int = 0
    # trio.current_time() of the last room crash; /health reports it for a while.
    last_room_crash_at: float | None = None
    hydration_seconds: Summary = attrs.Factory(Summary)
    # Hydration durations by bucket upper bound (seconds), for a histogram.
    hydration_buckets: Counter[float] = attrs.Factory(Counter)
    loop_lag_seconds: float = 0.0
    loop_lag_max_seconds: float = 0.0

    HYDRATION_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

    def observe_hydration(self, seconds: float) -> None:
        self.hydration_seconds.observe(seconds)
        for bound in self.HYDRATION_BOUNDS:
            if seconds <= bound:
                self.hydration_buckets[bound] += 1
                break
        else:
            self.hydration_buckets[float("inf")] += 1
