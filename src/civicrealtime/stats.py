"""Counters the daemon keeps about itself, as plain numbers.

The data path only increments integers here (a dict lookup and an add); the HTTP port turns
them into Prometheus exposition when scraped. That keeps the metrics library out of every
connection's hot loop and lets several services run in one process (tests) without a
global registry.
"""

from __future__ import annotations

from collections import Counter

import attrs

from .protocol.closecodes import SLOW_CONSUMER_CLOSES, Close


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
    # Closes by reason code (a row of protocol/closecodes.py; "" for a normal close).
    close_reasons: Counter[str] = attrs.Factory(Counter)
    auth_failures: Counter[str] = attrs.Factory(Counter)
    rate_limit_slowdowns: int = 0
    rate_limit_closes: int = 0
    slow_consumer_closes: int = 0
    # Awareness changes refused, by reason: foreign_client (an id another connection owns),
    # client_id_limit, room_full, and the frame limits too_many_entries, update_too_large,
    # state_too_large.
    awareness_refused: Counter[str] = attrs.Factory(Counter)
    room_crashes: int = 0
    on_snapshot_failures: int = 0
    # Pending updates (waiting for changes never received) dropped: past a budget, or
    # unresolved after rooms.pending_timeout; and connections closed for them.
    pending_dropped_updates: int = 0
    pending_dropped_bytes: int = 0
    pending_closes: int = 0
    last_pending_drop_at: float | None = None
    # Published record files merged into their rooms, and those that could not be read.
    record_file_merges: int = 0
    record_file_failures: int = 0
    # trio.current_time() of the last room crash; /health reports it for a while.
    last_room_crash_at: float | None = None
    hydration_seconds: Summary = attrs.Factory(Summary)
    # Hydration durations by bucket upper bound (seconds), for a histogram.
    hydration_buckets: Counter[float] = attrs.Factory(Counter)
    loop_lag_seconds: float = 0.0
    loop_lag_max_seconds: float = 0.0

    # The "saved" acknowledgement: updates acknowledged as durable, and the time from each
    # one's arrival to its acknowledgement, by bucket upper bound (seconds).
    saved_updates: int = 0
    save_ack_seconds: Summary = attrs.Factory(Summary)
    save_ack_buckets: Counter[float] = attrs.Factory(Counter)

    HYDRATION_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

    def count_close(self, close: Close) -> None:
        """One close sent: counted by code and by reason, from its row of the table."""
        self.closes[close.code] += 1
        self.close_reasons[close.reason_code] += 1
        if close in SLOW_CONSUMER_CLOSES:
            self.slow_consumer_closes += 1

    # Fine around flush_ms (100 ms by default): the target is p99 <= flush_ms + 50 ms.
    SAVE_ACK_BOUNDS = (
        0.005,
        0.01,
        0.025,
        0.05,
        0.075,
        0.1,
        0.125,
        0.15,
        0.2,
        0.3,
        0.5,
        1.0,
        2.5,
        10.0,
        60.0,
    )

    def observe_save_ack(self, waited: tuple[float, ...]) -> None:
        self.saved_updates += len(waited)
        for seconds in waited:
            self.save_ack_seconds.observe(seconds)
            for bound in self.SAVE_ACK_BOUNDS:
                if seconds <= bound:
                    self.save_ack_buckets[bound] += 1
                    break
            else:
                self.save_ack_buckets[float("inf")] += 1

    def observe_hydration(self, seconds: float) -> None:
        self.hydration_seconds.observe(seconds)
        for bound in self.HYDRATION_BOUNDS:
            if seconds <= bound:
                self.hydration_buckets[bound] += 1
                break
        else:
            self.hydration_buckets[float("inf")] += 1
