"""Durable room state: snapshots and an update log, in SQLite, PostgreSQL or plain files.

`StoreWriter` (writer.py) is what rooms use; the stores (sqlite.py, postgres.py,
filesystem.py) implement `Store` (store.py). See docs/persistence.md.
"""

from .errors import (
    CorruptRecord,
    RoomDamaged,
    StoreBusy,
    StoreError,
    StoreFull,
    StoreReadOnly,
    StoreTimeout,
    StoreUnavailable,
)
from .filesystem import FilesystemStore
from .locations import store_for
from .rows import (
    CURRENT_FORMAT,
    LogRecord,
    SnapshotInfo,
    SnapshotRecord,
    build_log_record,
    build_snapshot,
    verify_log_record,
    verify_snapshot,
)
from .sqlite import SqliteStore
from .store import DEFAULT_KEEP, Loaded, Problem, Store, VerifyReport
from .writer import StoreWriter
from .writerstats import StoreWriterStats

__all__ = [
    "CURRENT_FORMAT",
    "DEFAULT_KEEP",
    "CorruptRecord",
    "FilesystemStore",
    "Loaded",
    "LogRecord",
    "Problem",
    "RoomDamaged",
    "SnapshotInfo",
    "SnapshotRecord",
    "SqliteStore",
    "Store",
    "StoreBusy",
    "StoreError",
    "StoreFull",
    "StoreReadOnly",
    "StoreTimeout",
    "StoreUnavailable",
    "StoreWriter",
    "StoreWriterStats",
    "VerifyReport",
    "build_log_record",
    "build_snapshot",
    "store_for",
    "verify_log_record",
    "verify_snapshot",
]
