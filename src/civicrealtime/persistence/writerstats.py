"""What the store writer reports: counters for metrics, /health and the CLI."""

from __future__ import annotations

import attrs


@attrs.frozen(kw_only=True)
class StoreWriterStats:
    log_writes: int  # successful append calls (one per flush)
    updates_written: int
    snapshot_writes: int
    failures: int  # failed appends and snapshots
    failing_seconds: float  # how long the store has been failing (0 when healthy)
    log_failures: int
    snapshot_failures: int
    log_seconds: float  # time spent in successful appends
    snapshot_seconds: float  # time spent in successful snapshot writes
    corrupt_rows: int  # rows reported by loads
    shed_updates: int  # dropped from memory past max_pending_bytes (their rooms hold them)
    pending_updates: int
    pending_bytes: int
    last_flush_ms: float | None  # duration of the last successful append
    healthy: bool
    last_error: str | None
