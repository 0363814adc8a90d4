"""Fixtures for the cluster tests: the local Redis and PostgreSQL, isolated per test.

Every test gets its own Redis key prefix (its keys are deleted afterwards) and its own
PostgreSQL schema (dropped afterwards); a test skips, saying why, when either server is
not reachable.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

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
