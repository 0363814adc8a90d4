"""What can go wrong below the rooms: a store that cannot be used, or a row that cannot be trusted.

`StoreError` and its subclasses say the store itself failed (unreachable, read-only, full,
locked); the caller may retry. `CorruptRecord` says one stored row failed verification; the
row is kept and reported, and loading falls back to older data.
"""

from __future__ import annotations

from typing import Literal


class StoreError(Exception):
    """The store could not do what was asked; the message says which store and why."""


class StoreUnavailable(StoreError):
    """Cannot reach the store (connection refused or lost, file cannot be opened)."""


class StoreBusy(StoreError):
    """Another writer holds the lock longer than the busy timeout."""


class StoreReadOnly(StoreError):
    """The store refuses writes (read-only file, directory or database)."""


class StoreFull(StoreError):
    """No space left for the write."""


class StoreTimeout(StoreError):
    """The operation did not finish within its deadline and was interrupted."""


class RoomDamaged(StoreError):
    """Every snapshot of the room failed verification and the log cannot replace them.

    Serving what is left would show a blank (or partial) document, and its next snapshot
    would be written over the real data; an operator decides instead
    (`civicrealtime snapshots inspect|rebuild|accept-loss ROOM`).
    """


CorruptionKind = Literal[
    "hash", "format", "compression", "decompress", "size", "checksum", "metadata", "torn"
]


class CorruptRecord(Exception):
    """A stored snapshot or log record failed verification."""

    def __init__(self, kind: CorruptionKind, reason: str) -> None:
        self.kind: CorruptionKind = kind
        self.reason = reason
        super().__init__(reason)
