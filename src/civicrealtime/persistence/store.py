"""The storage interface every backend implements, and the results it returns.

A store holds two things per room: snapshots (full states, `realtime_snapshots`) and an
update log (raw updates, `realtime_update_log`). Loading a room is the newest snapshot that
verifies plus the log records after it. Rows that fail verification are kept, reported in
`problems`, and skipped; no code path deletes a row that fails verification.

Every method runs the blocking work in the store's own thread. Cancelling a call
interrupts it; whether a cancelled write was committed is then unknown, which is safe here
because applying a Yjs update twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from typing import Literal, Protocol

import attrs

from ..auth.revocation import Revocation
from .rows import LogRecord, SnapshotInfo, SnapshotRecord

DEFAULT_KEEP = 3


@attrs.frozen(kw_only=True)
class Problem:
    """One stored row that failed verification (or could not be parsed)."""

    room_id: str
    what: Literal["snapshot", "log"]
    ident: str  # the snapshot id, or "seq N" / "offset N" for the log
    reason: str

    def __str__(self) -> str:
        return f"{self.what} {self.ident} of room {self.room_id!r}: {self.reason}"


@attrs.frozen(kw_only=True)
class Loaded:
    """What a room is rebuilt from: apply `updates()` in order into a fresh document."""

    room_id: str
    snapshot: SnapshotInfo | None  # the newest snapshot that verified, if any
    state: bytes | None  # its uncompressed state
    log: tuple[LogRecord, ...]  # verified records with seq > snapshot.log_seq, in seq order
    problems: tuple[Problem, ...]

    @property
    def covered_seq(self) -> int:
        """The highest log seq the loaded updates contain."""
        base = self.snapshot.log_seq if self.snapshot is not None else 0
        return max(base, self.log[-1].seq) if self.log else base

    @property
    def damaged(self) -> bool:
        """Snapshots exist, none verified, and the log does not rebuild the room alone.

        The log reaches back far enough when it still starts at seq 1: nothing was ever
        truncated, so it holds every update the snapshots were made of. Once truncated (the
        first snapshot cuts the log up to its `log_seq`), the records left depend on
        content only the snapshots held: applied alone they are all pending, a blank
        document. What the log cannot show is a state that only ever lived in a snapshot
        (an `import`, or updates shed while the store failed); `inspect` lists the sizes.
        """
        if self.snapshot is not None or not any(p.what == "snapshot" for p in self.problems):
            return False
        return not (self.log and self.log[0].seq == 1)

    def damage(self) -> str:
        """What `damaged` found, for log lines and errors."""
        failed = sum(1 for p in self.problems if p.what == "snapshot")
        start = f"starts at seq {self.log[0].seq}" if self.log else "is empty"
        return (
            f"room {self.room_id!r}: all {failed} snapshots failed verification and the "
            f"update log {start}, so it cannot rebuild the room; refusing to serve it blank "
            f"(see `civicrealtime snapshots inspect {self.room_id}`)"
        )

    def updates(self) -> list[bytes]:
        head = [self.state] if self.state is not None else []
        return head + [record.data for record in self.log]


@attrs.frozen(kw_only=True)
class VerifyReport:
    rooms: int
    snapshots: int
    log_records: int
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


class Store(Protocol):
    """A room-state store. All methods raise `StoreError` (a subclass) when the store fails."""

    @property
    def description(self) -> str:
        """Where the data lives, for log lines (no credentials)."""
        ...

    async def open(self) -> None:
        """Connect and create or upgrade the schema. Idempotent."""
        ...

    async def close(self) -> None:
        """Wait for the store's thread to finish its current call, then disconnect."""
        ...

    async def ping(self) -> None:
        """Return when the store answers; raise `StoreError` when it does not."""
        ...

    async def load(self, room_id: str) -> Loaded:
        """The newest verifying snapshot (falling back to older ones) and the log after it."""
        ...

    async def append(self, batch: Sequence[tuple[str, bytes]]) -> list[int]:
        """Append raw updates for any rooms in one transaction; their seqs, in batch order.

        Seqs are per room and increasing. Either the whole batch is stored or (on error)
        none of it is, except on the filesystem store, where rooms are separate files and
        a failure can leave earlier rooms of the batch written (a retry then duplicates
        them, which is harmless).
        """
        ...

    async def write_snapshot(
        self,
        room_id: str,
        state: bytes,
        *,
        covers_seq: int,
        carry: Sequence[bytes] = (),
        compress: bool = False,
        discard: AbstractSet[bytes] = frozenset(),
    ) -> SnapshotRecord:
        """Store a snapshot containing every log record up to `covers_seq`, in one transaction.

        Then applies retention (the newest `keep` snapshots stay) and truncates the log up
        to the oldest kept snapshot's `log_seq`, so that any kept snapshot plus the log
        still rebuilds the room. Log records whose content is not in `state` (updates still
        waiting for a missing dependency) and rows that fail verification are never
        truncated. `carry` holds raw updates to re-append after the truncation. Log records
        up to `covers_seq` whose sha256 digest is in `discard` (updates the room dropped,
        see `StoreWriter.discard`) are deleted rather than kept.
        """
        ...

    async def sweep(self, older_than_ms: int, live_rooms: set[str]) -> int:
        """Delete the rows of rooms not in `live_rooms` whose newest row is older than the cutoff.

        Returns how many rooms were swept. Rows that fail verification stay.
        """
        ...

    async def list_rooms(self) -> list[str]: ...

    async def snapshots(self, room_id: str) -> list[SnapshotInfo]:
        """Snapshot metadata, newest first."""
        ...

    async def verify_all(self) -> VerifyReport:
        """Read and verify every row of every room."""
        ...

    async def export_state(self, room_id: str) -> bytes:
        """The room's full state (snapshot and log merged) as one update."""
        ...

    async def import_state(self, room_id: str, state: bytes) -> SnapshotRecord:
        """Replace the room's state by `state`: a new snapshot covering the whole log."""
        ...

    async def compact(self, room_id: str) -> SnapshotRecord | None:
        """Fold the log into a new snapshot; None when there is nothing to fold."""
        ...

    async def save_revocation(self, revocation: Revocation) -> None:
        """Keep a revoked user or token id, replacing the one kept for it, durably."""
        ...

    async def load_revocations(self) -> list[Revocation]:
        """Every kept revocation that still applies (token ids past `until` are left out)."""
        ...
