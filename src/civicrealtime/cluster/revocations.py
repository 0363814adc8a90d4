"""Revocations across nodes, through the `<prefix>:revocations` stream.

A revocation made here (and stored first, see app.py) is appended to the stream; those
other nodes appended are carried out here with `relayed=True` and the origin's time, so
every node refuses the same tokens. A stream rather than pub/sub, so that a node briefly
cut off from Redis still gets them. The position to tail from is taken at the first
heartbeat that answers; `tailing` is set then, and the service reads the stored
revocations once more (one stored before that point was also published before it).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable
from typing import Any, Protocol

import trio
from coredis.patterns.pipeline import Pipeline

from .entries import NODE, REASON, REVOKED_AT, START, TOKEN, USER, StreamId, format_id, parse_id
from .outbox import Outgoing
from .publisher import Publisher
from .reader import Wake
from .shared import BeatPlan, RedisAccess, fields

REVOCATIONS_MAXLEN = 1000


class ApplyRevocation(Protocol):
    def __call__(
        self, *, user_id: str | None, token_id: str | None, reason: str, revoked_at: float | None
    ) -> object:
        """Another node revoked these sessions: refuse them here too, close live ones."""
        ...


class RevocationRelay:
    def __init__(
        self,
        redis: RedisAccess,
        publisher: Publisher,
        wake: Wake,
        apply: ApplyRevocation | None = None,
    ) -> None:
        self._redis = redis
        self._publisher = publisher
        self._wake = wake
        self._apply = apply
        self._stream = redis.keys.revocations
        self._read_id: StreamId | None = None
        # Set once this node reads the stream from a known position: from then on it
        # misses none.
        self.tailing = trio.Event()

    def publish(
        self, user_id: str | None, token_id: str | None, reason: str, revoked_at: float
    ) -> None:
        """A revocation made (and stored) here: the other nodes close the same sessions."""
        entry = {
            NODE: self._redis.me,
            USER: (user_id or "").encode(),
            TOKEN: (token_id or "").encode(),
            REASON: reason.encode(),
            REVOKED_AT: repr(revoked_at).encode(),
        }
        self._publisher.push(Outgoing(stream=self._stream, fields=entry, maxlen=REVOCATIONS_MAXLEN))

    # -- a source of the reader ----------------------------------------------------------

    def positions(self, now: float) -> tuple[dict[bytes, bytes], bool]:
        if self._read_id is None:
            return {}, False
        return {self._stream: format_id(self._read_id)}, False

    def received(self, result: dict[bytes, Any]) -> None:
        for entry in result.get(self._stream, ()):
            self._read_id = parse_id(entry.identifier)
            self._carry_out(fields(entry))

    def _carry_out(self, entry: dict[bytes, bytes]) -> None:
        if entry.get(NODE) == self._redis.me or self._apply is None:
            return
        user_id = entry.get(USER, b"").decode(errors="replace") or None
        token_id = entry.get(TOKEN, b"").decode(errors="replace") or None
        reason = entry.get(REASON, b"").decode(errors="replace") or "revoked"
        if user_id is None and token_id is None:
            return
        try:
            revoked_at: float | None = float(entry.get(REVOKED_AT, b""))
        except ValueError:
            revoked_at = None  # from an older node: the local time will do
        if revoked_at is not None and not math.isfinite(revoked_at):
            revoked_at = None
        self._apply(user_id=user_id, token_id=token_id, reason=reason, revoked_at=revoked_at)

    # -- a share of the heartbeat --------------------------------------------------------

    def beat(self, now: float) -> BeatPlan:
        """Until tailing: ask where the stream ends, and read on from there."""
        if self._read_id is not None:
            return BeatPlan()
        last: list[Awaitable[Any]] = []

        def queue(pipe: Pipeline[bytes]) -> None:
            last.append(pipe.xrevrange(self._stream, count=1))

        async def answered() -> None:
            tail = await last[0]
            if self._read_id is None:
                self._read_id = parse_id(tail[0].identifier) if tail else START
                self._wake.ring()
                self.tailing.set()

        return BeatPlan(queue=queue, answered=answered)

    def leave(self, pipe: Pipeline[bytes]) -> None:
        return None
