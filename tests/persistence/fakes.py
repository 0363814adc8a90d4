"""An in-memory store for the writer's tests: no threads, so the autojump clock is safe."""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet

import trio

from civicrealtime.persistence import Loaded, LogRecord, Problem, SnapshotRecord, StoreUnavailable
from civicrealtime.persistence.rows import build_log_record, build_snapshot


class FakeStore:
    description = "fake"

    def __init__(self) -> None:
        self.log: dict[str, list[LogRecord]] = {}
        self.snaps: dict[str, list[SnapshotRecord]] = {}
        self.append_calls: list[list[tuple[str, bytes]]] = []
        self.snapshot_calls: list[dict[str, object]] = []
        self.attempts: list[float] = []
        self.failing = False
        self.hang = False
        self.problems: tuple[Problem, ...] = ()

    def everything(self, room_id: str) -> list[bytes]:
        return [record.data for record in self.log.get(room_id, [])]

    async def _enter(self) -> None:
        await trio.lowlevel.checkpoint()
        self.attempts.append(trio.current_time())
        if self.hang:
            await trio.sleep_forever()
        if self.failing:
            raise StoreUnavailable("fake: store is down")

    async def append(self, batch: Sequence[tuple[str, bytes]]) -> list[int]:
        await self._enter()
        self.append_calls.append(list(batch))
        seqs = []
        for room_id, data in batch:
            records = self.log.setdefault(room_id, [])
            base = max(
                [0, *(r.seq for r in records), *(s.log_seq for s in self.snaps.get(room_id, []))]
            )
            seq = base + 1
            records.append(build_log_record(room_id, seq, data, 0))
            seqs.append(seq)
        return seqs

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
        await self._enter()
        self.snapshot_calls.append(
            {
                "room_id": room_id,
                "covers_seq": covers_seq,
                "carry": list(carry),
                "compress": compress,
                "discard": set(discard),
            }
        )
        snaps = self.snaps.setdefault(room_id, [])
        record = build_snapshot(
            room_id,
            state,
            version=len(snaps) + 1,
            created_at=0,
            log_seq=covers_seq,
            compress=compress,
        )
        snaps.append(record)
        records = [r for r in self.log.get(room_id, []) if r.seq > covers_seq]
        last = max([r.seq for r in self.log.get(room_id, [])] + [covers_seq])
        for offset, data in enumerate(carry, start=1):
            records.append(build_log_record(room_id, last + offset, data, 0))
        self.log[room_id] = records
        return record

    async def load(self, room_id: str) -> Loaded:
        await self._enter()
        snaps = self.snaps.get(room_id, [])
        newest = snaps[-1] if snaps else None
        after = newest.log_seq if newest else 0
        return Loaded(
            room_id=room_id,
            snapshot=newest.info if newest else None,
            state=newest.data if newest else None,
            log=tuple(r for r in self.log.get(room_id, []) if r.seq > after),
            problems=self.problems,
        )
