"""Event-loop lag: how late the scheduler wakes a task that asked to sleep.

A busy room (or a blocking call that slipped into the loop) shows up here first; it is
exported as a metric and feeds /health.
"""

from __future__ import annotations

from collections import deque

import trio

from .stats import Stats

INTERVAL = 0.25
WINDOW = 60.0


async def measure_loop_lag(stats: Stats) -> None:
    """Run until cancelled, updating `stats.loop_lag_seconds` and its one-minute maximum."""
    recent: deque[tuple[float, float]] = deque()
    while True:
        before = trio.current_time()
        await trio.sleep(INTERVAL)
        now = trio.current_time()
        lag = max(0.0, now - before - INTERVAL)
        recent.append((now, lag))
        while recent and recent[0][0] < now - WINDOW:
            recent.popleft()
        stats.loop_lag_seconds = lag
        stats.loop_lag_max_seconds = max(value for _, value in recent)
