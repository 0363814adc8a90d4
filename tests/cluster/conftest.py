"""Fixtures for the cluster tests: the local Redis and PostgreSQL, isolated per test.

Every test gets its own Redis key prefix (its keys are deleted afterwards) and its own
PostgreSQL schema (dropped afterwards); a test skips, saying why, when either server is
not reachable.
"""

from __future__ import annotations

import socket
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from typing import Any
from urllib.parse import quote

import coredis
import psycopg
import pytest
import trio
from coredis.response.types import StreamEntry
from psycopg import sql

from civicrealtime.app import RealtimeService
from civicrealtime.auth import DevelopmentAuthenticator
from civicrealtime.cluster.entries import Keys
from civicrealtime.cluster.shared import HeartbeatShare, RedisAccess
from civicrealtime.config import RealtimeConfig

from ..conftest import RunningServer, make_config

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}"
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"

_reachable: dict[str, str] = {}


def _redis_problem(host: str = REDIS_HOST, port: int = REDIS_PORT) -> str:
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            answer = sock.recv(64)
    except OSError as exc:
        return f"Redis not reachable at {host}:{port}: {exc}"
    if not answer.startswith(b"+PONG"):
        return f"Redis at {host}:{port} answered {answer!r} to PING"
    return ""


def redis_or_skip() -> None:
    if "redis" not in _reachable:
        _reachable["redis"] = _redis_problem()
    if _reachable["redis"]:
        pytest.skip(_reachable["redis"])


def postgres_or_skip() -> None:
    if "postgres" not in _reachable:
        try:
            with psycopg.connect(PG_URL, connect_timeout=2):
                _reachable["postgres"] = ""
        except Exception as exc:  # any failure to connect means: no server for these tests
            _reachable["postgres"] = f"PostgreSQL not reachable at {PG_URL}: {exc}"
    if _reachable["postgres"]:
        pytest.skip(_reachable["postgres"])


def redis_command(*args: bytes | str, host: str = REDIS_HOST, port: int = REDIS_PORT) -> bytes:
    """One command in RESP, its raw answer (enough for the cleanup and a few checks)."""
    parts = [a.encode() if isinstance(a, str) else a for a in args]
    request = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(request)
        chunks = []
        sock.settimeout(0.3)
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def delete_prefix(prefix: str, host: str = REDIS_HOST, port: int = REDIS_PORT) -> None:
    """Delete every key under the prefix (KEYS is fine on a test server)."""
    answer = redis_command("KEYS", f"{prefix}:*", host=host, port=port)
    keys = [line for line in answer.split(b"\r\n") if line and line[:1] not in b"*$"]
    for start in range(0, len(keys), 100):
        redis_command("DEL", *keys[start : start + 100], host=host, port=port)


def _prefix() -> Iterator[str]:
    redis_or_skip()
    prefix = f"crt-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    delete_prefix(prefix)


def _pg_url() -> Iterator[str]:
    """A database URL whose connections live in a schema of their own."""
    postgres_or_skip()
    schema = f"cluster_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    yield f"{PG_URL}?options={quote(f'-csearch_path={schema}')}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    yield from _prefix()


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from _pg_url()


@pytest.fixture(scope="module")
def module_redis_prefix() -> Iterator[str]:
    yield from _prefix()


@pytest.fixture(scope="module")
def module_pg_url() -> Iterator[str]:
    yield from _pg_url()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def redis_access(redis_prefix: str) -> AsyncIterator[RedisAccess]:
    """Node "a"'s access to the local Redis, under the test's key prefix."""
    client: coredis.Redis[bytes] = coredis.Redis.from_url(REDIS_URL, decode_responses=False)
    async with client:
        access = RedisAccess(identity="a.1", keys=Keys(redis_prefix), timeout=2.0)
        access.client = client
        yield access


def other_node(access: RedisAccess, identity: str) -> RedisAccess:
    """Another node's access, through the same client (a second node, as Redis sees it)."""
    other = RedisAccess(identity=identity, keys=access.keys, timeout=access.timeout)
    other.client = access.client
    return other


async def run_beat(access: RedisAccess, now: float, *shares: HeartbeatShare) -> None:
    """One heartbeat's pipeline with only these shares (no liveness key)."""
    plans = [share.beat(now) for share in shares]
    async with access.require().pipeline(transaction=False) as pipe:
        for plan in plans:
            plan.queue(pipe)
    for plan in plans:
        await plan.answered()


def entry(sid: str, **values: bytes) -> StreamEntry:
    """A stream entry as `XREAD` returns it; field names as keyword arguments."""
    return StreamEntry(sid.encode(), OrderedDict((k.encode(), v) for k, v in values.items()))


class RecordingPipe:
    """Stands for a pipeline: records each command, answers None."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def command(*args: Any, **kwargs: Any) -> Reply:
            self.commands.append((name, args))
            return Reply(None)

        return command

    def names(self) -> list[str]:
        return [name for name, _ in self.commands]


class Reply:
    def __init__(self, value: object) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, object]:
        return self.value
        yield  # a generator: awaitable, never suspends


# -- in-process nodes --------------------------------------------------------------------


def cluster_config(prefix: str, pg_url: str, **overrides: Any) -> RealtimeConfig:
    cluster = {
        "enabled": True,
        "redis_url": REDIS_URL,
        "key_prefix": prefix,
        "heartbeat_interval": 0.2,
        "presence_ttl": 1.0,
        "redis_timeout": 2.0,
        **overrides.pop("cluster", {}),
    }
    snapshots = {
        "enabled": True,
        "database_url": pg_url,
        "flush_ms": 20,
        **overrides.pop("snapshots", {}),
    }
    return make_config(cluster=cluster, snapshots=snapshots, **overrides)


StartNode = Callable[..., Any]


@pytest.fixture
async def start_node(
    nursery: trio.Nursery, redis_prefix: str, pg_url: str
) -> AsyncIterator[StartNode]:
    services: list[RealtimeService] = []

    async def start(**overrides: Any) -> RunningServer:
        config = cluster_config(redis_prefix, pg_url, **overrides)
        service = RealtimeService(config, authenticator=DevelopmentAuthenticator())
        port = await nursery.start(service.run)
        services.append(service)
        return RunningServer(service=service, port=port, nursery=nursery)

    yield start
    for service in services:
        service.shutdown()
    with trio.fail_after(15):
        for service in services:
            await service.stopped.wait()
    nursery.cancel_scope.cancel()
