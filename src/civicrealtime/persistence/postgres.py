"""The PostgreSQL store: psycopg 3, one connection, used from one thread at a time.

The same tables as SQLite (BYTEA for blobs, BIGINT for times and sequence numbers). A
cancelled call sends a cancel request (`Connection.cancel_safe`) from another thread,
repeated until the statement has stopped. A broken connection is dropped and the next
call reconnects, so a database restart costs the calls made while it is down.

Writers of one room are serialised with a transaction-scoped advisory lock, so that two
daemons sharing a database cannot hand out the same sequence number.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from .errors import StoreBusy, StoreError, StoreFull, StoreReadOnly, StoreUnavailable
from .historysql import history_ddl
from .rows import now_ms
from .schema import (
    CREATE_SCHEMA_TABLE,
    RECORD_VERSION,
    SCHEMA_NAME,
    SCHEMA_TABLE,
    SELECT_VERSION,
    announce,
    check_version,
    needs_recording,
    record_params,
)
from .sqlbase import (
    INDEX_CREATED,
    INDEX_ROOM,
    REVOCATIONS,
    SNAPSHOTS,
    UPDATE_LOG,
    SqlStore,
    Tx,
)
from .store import DEFAULT_KEEP
from .worker import CallCancelled

log = logging.getLogger("civicrealtime.persistence")

T = TypeVar("T")

SCHEMA = (
    f"""CREATE TABLE IF NOT EXISTS {SNAPSHOTS} (
  id TEXT PRIMARY KEY,
  room_id TEXT NOT NULL,
  snapshot_data BYTEA NOT NULL,
  version INTEGER NOT NULL,
  integrity_hash TEXT NOT NULL DEFAULT '',
  format_version INTEGER NOT NULL DEFAULT 1,
  byte_size BIGINT NOT NULL DEFAULT 0,
  created_at BIGINT NOT NULL
)""",
    f"ALTER TABLE {SNAPSHOTS} ADD COLUMN IF NOT EXISTS compression TEXT DEFAULT NULL",
    f"ALTER TABLE {SNAPSHOTS} ADD COLUMN IF NOT EXISTS log_seq BIGINT NOT NULL DEFAULT 0",
    f"CREATE INDEX IF NOT EXISTS {INDEX_ROOM} ON {SNAPSHOTS}(room_id)",
    f"CREATE INDEX IF NOT EXISTS {INDEX_CREATED} ON {SNAPSHOTS}(created_at)",
    f"""CREATE TABLE IF NOT EXISTS {UPDATE_LOG} (
  room_id TEXT NOT NULL,
  seq BIGINT NOT NULL,
  update_data BYTEA NOT NULL,
  checksum BIGINT NOT NULL,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (room_id, seq)
)""",
    f"CREATE INDEX IF NOT EXISTS realtime_update_log_created_at_idx ON {UPDATE_LOG}(created_at)",
    f"""CREATE TABLE IF NOT EXISTS {REVOCATIONS} (
  kind TEXT NOT NULL,
  subject TEXT NOT NULL,
  revoked_at DOUBLE PRECISION NOT NULL,
  until_at DOUBLE PRECISION,
  PRIMARY KEY (kind, subject)
)""",
    # Schema 2: the history tables (a store of version 1 gets them, empty).
    *history_ddl("BYTEA"),
)


def describe_url(url: str) -> str:
    """The URL without its password, for log lines."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unparsable URL)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host', '')}{port}/{parts.get('dbname', '')}"


class PostgresStore(SqlStore):
    _blocks = True  # a cancel request is a network round trip
    shared_by_nodes = True  # a database server every node of a cluster reaches

    def __init__(
        self,
        url: str,
        *,
        keep: int = DEFAULT_KEEP,
        schema: str | None = None,
        connect_timeout: float = 10.0,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._url = url
        self._schema = schema
        self._connect_timeout = connect_timeout
        self._conn: psycopg.Connection[Any] | None = None
        where = describe_url(url) + (f" schema {schema}" if schema else "")
        self._description = where
        super().__init__(name=where, keep=keep, clock=clock)

    @property
    def description(self) -> str:
        return self._description

    async def open(self) -> None:
        """Connect and create or upgrade the tables. Raises `StoreError`. Idempotent."""
        await self._worker.call(self._open)

    async def close(self) -> None:
        """Disconnect once the current call (even an abandoned one) has ended."""
        await self._worker.call(self._close)

    async def run_blocking(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run `fn(connection)` in the store's thread, for maintenance and tests.

        Cancellation sends a cancel request for the statement `fn` is running.
        """

        def call() -> T:
            try:
                return fn(self._connection())
            except psycopg.Error as exc:
                raise self._classify(exc) from exc

        return await self._worker.call(call)

    # -- in the worker thread ----------------------------------------------------------------

    def _open(self) -> None:
        conn = self._connection()
        try:
            with conn.transaction():
                # Daemons starting together on one database take turns: concurrent
                # CREATE TABLE IF NOT EXISTS can fail, and only one should migrate.
                conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (SCHEMA_TABLE,)
                )
                # Before anything is created or altered: a newer store is left as it is.
                version = check_version(self._recorded_version(conn), self.description)
                for statement in SCHEMA:
                    conn.execute(statement)
                if needs_recording(version):
                    conn.execute(CREATE_SCHEMA_TABLE)
                    conn.execute(_placeholders(RECORD_VERSION), record_params(self._now_ms()))
        except psycopg.Error as exc:
            raise self._classify(exc) from exc
        if needs_recording(version):
            announce(self.description, version)

    @staticmethod
    def _recorded_version(conn: psycopg.Connection[Any]) -> object:
        """The schema version the database records, or None (a store from before versions).

        `to_regclass` follows the search path, as every other statement here does.
        """
        (table,) = conn.execute("SELECT to_regclass(%s)::text", (SCHEMA_TABLE,)).fetchone() or (
            None,
        )
        if table is None:
            return None
        row = conn.execute(_placeholders(SELECT_VERSION), (SCHEMA_NAME,)).fetchone()
        return row[0] if row is not None else None

    def _connection(self) -> psycopg.Connection[Any]:
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn
        self._conn = None
        try:
            conn = psycopg.connect(
                self._url, autocommit=True, connect_timeout=max(1, round(self._connect_timeout))
            )
        except psycopg.Error as exc:
            raise StoreUnavailable(f"{self.description}: cannot connect: {exc}") from exc
        try:
            if self._schema is not None:
                name = sql.Identifier(self._schema)
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(name))
                conn.execute(sql.SQL("SET search_path TO {}").format(name))
        except psycopg.Error as exc:
            conn.close()
            raise self._classify(exc) from exc
        self._conn = conn
        return conn

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _interrupt(self) -> None:
        conn = self._conn
        if conn is not None and not conn.closed:
            try:
                conn.cancel_safe(timeout=2.0)
            except psycopg.Error as exc:
                # The worker repeats the request until the call ends; say why this one failed.
                log.warning("persistence.cancel_failed store=%s error=%s", self.description, exc)

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[Tx]:
        conn = self._connection()
        try:
            with conn.transaction():
                yield _PostgresTx(conn, self._worker.check_cancelled)
        except psycopg.Error as exc:
            raise self._classify(exc) from exc

    def _lock_room(self, tx: Tx, room_id: str) -> None:
        tx.rows("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (room_id,))

    def _classify(self, exc: psycopg.Error) -> StoreError:
        where = self.description
        conn = self._conn
        if conn is not None and conn.broken:
            # The next call reconnects.
            self._conn = None
            conn.close()
        if isinstance(exc, pgerrors.QueryCanceled):
            return CallCancelled(f"{where}: statement cancelled")
        if isinstance(exc, pgerrors.ReadOnlySqlTransaction | pgerrors.InsufficientPrivilege):
            return StoreReadOnly(f"{where}: writes refused: {exc}")
        if isinstance(exc, pgerrors.DiskFull | pgerrors.OutOfMemory):
            return StoreFull(f"{where}: {exc}")
        if isinstance(exc, pgerrors.LockNotAvailable | pgerrors.DeadlockDetected):
            return StoreBusy(f"{where}: {exc}")
        if isinstance(exc, psycopg.OperationalError):
            return StoreUnavailable(f"{where}: {exc}")
        return StoreError(f"{where}: {exc} ({type(exc).__name__})")


class _PostgresTx:
    def __init__(self, conn: psycopg.Connection[Any], check: Callable[[], None]) -> None:
        self._conn = conn
        self._check = check

    def rows(self, query: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        self._check()
        cursor = self._conn.execute(_placeholders(query), params)
        return [tuple(row) for row in cursor.fetchall()]

    def run(self, query: str, params: Sequence[object] = ()) -> None:
        self._check()
        self._conn.execute(_placeholders(query), params)

    def run_many(self, query: str, params: Sequence[Sequence[object]]) -> None:
        self._check()
        with self._conn.cursor() as cursor:
            cursor.executemany(_placeholders(query), params)


def _placeholders(query: str) -> Any:
    # Our queries hold no literal '?' or '%': the conversion is exact.
    return query.replace("?", "%s")
