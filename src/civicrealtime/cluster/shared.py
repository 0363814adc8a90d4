"""What the cluster's parts share: the Redis client and its health, the backoff, counters.

`RedisAccess` is handed to every part through its constructor. The service opens the
client and sets it here for as long as it runs; each part reaches Redis only through it,
and reports through `failed`/`succeeded` whether its last attempt did, so that `/health`
names what fails. `HeartbeatShare` is how a part rides on the heartbeat's pipeline (one
round trip for the liveness key, leases, trims and the revocations position).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import anyio
import attrs
import coredis
import trio
from coredis.exceptions import RedisError
from coredis.patterns.pipeline import Pipeline
from coredis.response.types import StreamEntry

from .entries import DATA, KIND, NODE, START, UPDATE, Keys, StreamId, parse_id

log = logging.getLogger("civicrealtime.cluster")

RETRY_INITIAL = 0.1
RETRY_MAX = 2.0

# anyio's errors: a connection torn down under a command.
REDIS_FAILURES = (
    RedisError,
    OSError,
    trio.TooSlowError,
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
)


@attrs.define
class ClusterStats:
    published: int = 0  # entries written to Redis
    delivered: int = 0  # remote entries handed to rooms
    publish_failures: int = 0
    read_failures: int = 0
    resyncs: int = 0
    nodes_gone: int = 0


class Backoff:
    """Retry delays of one loop: from RETRY_INITIAL, doubling up to RETRY_MAX."""

    def __init__(self) -> None:
        self._delay = 0.0

    def reset(self) -> None:
        self._delay = 0.0

    async def sleep(self) -> None:
        self._delay = min(RETRY_MAX, self._delay * 2) if self._delay else RETRY_INITIAL
        await trio.sleep(self._delay)


class RedisAccess:
    """This node's way to Redis, shared by the parts: the client while the service runs,
    the node's identity and key names, and which tasks currently fail to reach it."""

    def __init__(self, *, identity: str, keys: Keys, timeout: float) -> None:
        self.identity = identity
        self.me = identity.encode()
        self.keys = keys
        self.timeout = timeout
        # Set by the service for as long as it runs.
        self.client: coredis.Redis[bytes] | None = None
        # Continuous tasks that currently fail to reach Redis, with the error.
        self.failing: dict[str, str] = {}
        # The reader's last attempt failed: Redis is known to be unreachable, so the rooms
        # do not wait on it (and what they would have read is resynced once it answers).
        self.reader_down = False

    def require(self) -> coredis.Redis[bytes]:
        if self.client is None:
            raise RuntimeError("the cluster service is not running")
        return self.client

    def usable(self) -> coredis.Redis[bytes] | None:
        """The client, unless the service is stopped or Redis is known to be unreachable."""
        return None if self.reader_down else self.client

    def failed(self, task: str, exc: BaseException) -> None:
        error = f"{type(exc).__name__}: {exc}"[:200]
        if task not in self.failing:
            log.error("cluster.redis_unreachable task=%s error=%s", task, error)
        self.failing[task] = error

    def succeeded(self, task: str) -> None:
        if self.failing.pop(task, None) is not None:
            log.info("cluster.redis_recovered task=%s", task)


def _queue_nothing(pipe: Pipeline[bytes]) -> None:
    return None


async def _nothing() -> None:
    return None


def _ignore() -> None:
    return None


@attrs.frozen
class BeatPlan:
    """A part's share of one heartbeat, planned before the round trip: `queue` puts its
    commands in the pipeline; then `answered` (its replies can be awaited) when Redis
    answered, or `unanswered` when it did not."""

    queue: Callable[[Pipeline[bytes]], None] = _queue_nothing
    answered: Callable[[], Awaitable[None]] = _nothing
    unanswered: Callable[[], None] = _ignore


class HeartbeatShare(Protocol):
    """A part whose commands ride on the heartbeat's pipeline and on the leaving one."""

    def beat(self, now: float) -> BeatPlan:
        """Plan this beat's share (without waiting)."""
        ...

    def leave(self, pipe: Pipeline[bytes]) -> None:
        """Queue the commands that take this node's part out of Redis (graceful stop)."""
        ...


@attrs.frozen
class StreamUpdate:
    sid: StreamId
    node: str
    update: bytes


def updates_in(entries: Sequence[StreamEntry]) -> list[StreamUpdate]:
    """The update entries of a room's stream (presence and queries are not replayed)."""
    found = []
    for entry in entries:
        values = fields(entry)
        if values.get(KIND) == UPDATE:
            node = values.get(NODE, b"").decode(errors="replace")
            found.append(StreamUpdate(parse_id(entry.identifier), node, values.get(DATA, b"")))
    return found


def last_id(entries: Sequence[StreamEntry]) -> StreamId:
    """Where to read on after these entries (the stream's start when there are none)."""
    return parse_id(entries[-1].identifier) if entries else START


def fields(entry: StreamEntry) -> dict[bytes, bytes]:
    return {_bytes(k): _bytes(v) for k, v in entry.field_values.items()}


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value
