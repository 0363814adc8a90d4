"""The SQLite store: the standard `sqlite3` module, one connection, one thread at a time.

Durability: WAL journal with `synchronous=FULL` by default. In WAL mode, NORMAL already
survives a crash of the process (kill -9): a commit is in the WAL file once `COMMIT`
returns. It can lose the last commits on power loss or an OS crash, which FULL cannot,
at the price of one fsync of the WAL per commit. With group commit that is one fsync per
flush (10 per second at the default 100 ms), so FULL costs little; see
docs/persistence.md for the measured numbers.

A cancelled call interrupts its statement: `Connection.interrupt()` from the event loop's
side, plus a progress handler that stops a statement which started just after the
interrupt. A writer waiting on another process's lock is not interrupted by either; it
gives up after `busy_timeout` seconds.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import quote

from ..auth.revocation import Revocation
from .errors import (
    StoreBusy,
    StoreError,
    StoreFull,
    StoreReadOnly,
    StoreUnavailable,
)
from .historysql import HISTORY_TABLES, history_ddl
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

DEFAULT_PATH = Path(".system-data/realtime.sqlite3")
# The progress handler runs every this many SQLite VM instructions (a few microseconds).
PROGRESS_STEPS = 10_000

# CivicPress's table, column for column; ours are added by ALTER TABLE with defaults.
CREATE_SNAPSHOTS = f"""
CREATE TABLE IF NOT EXISTS {SNAPSHOTS} (
  id TEXT PRIMARY KEY,
  room_id TEXT NOT NULL,
  snapshot_data BLOB NOT NULL,
  version INTEGER NOT NULL,
  integrity_hash TEXT NOT NULL DEFAULT '',
  format_version INTEGER NOT NULL DEFAULT 1,
  byte_size INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL
)"""
ADD_COLUMNS = {
    "compression": f"ALTER TABLE {SNAPSHOTS} ADD COLUMN compression TEXT DEFAULT NULL",
    "log_seq": f"ALTER TABLE {SNAPSHOTS} ADD COLUMN log_seq INTEGER NOT NULL DEFAULT 0",
}
DEFAULTS = {"compression": "NULL", "log_seq": "0"}
CREATE_LOG = f"""
CREATE TABLE IF NOT EXISTS {UPDATE_LOG} (
  room_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  update_data BLOB NOT NULL,
  checksum INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (room_id, seq)
) WITHOUT ROWID"""
CREATE_REVOCATIONS = f"""
CREATE TABLE IF NOT EXISTS {REVOCATIONS} (
  kind TEXT NOT NULL,
  subject TEXT NOT NULL,
  revoked_at REAL NOT NULL,
  until_at REAL,
  PRIMARY KEY (kind, subject)
)"""
CREATE_INDEXES = (
    f"CREATE INDEX IF NOT EXISTS {INDEX_ROOM} ON {SNAPSHOTS}(room_id)",
    f"CREATE INDEX IF NOT EXISTS {INDEX_CREATED} ON {SNAPSHOTS}(created_at)",
    f"CREATE INDEX IF NOT EXISTS realtime_update_log_created_at_idx ON {UPDATE_LOG}(created_at)",
)


class SqliteStore(SqlStore):
    def __init__(
        self,
        path: str | os.PathLike[str] = DEFAULT_PATH,
        *,
        keep: int = DEFAULT_KEEP,
        read_only: bool = False,
        synchronous: Literal["NORMAL", "FULL"] = "FULL",
        busy_timeout: float = 5.0,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self._synchronous = synchronous
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        super().__init__(name=f"sqlite:{self.path}", keep=keep, clock=clock)

    @property
    def description(self) -> str:
        return f"sqlite:{self.path}{' (read-only)' if self.read_only else ''}"

    async def open(self) -> None:
        """Open the database (creating its directory, file and tables unless read-only).

        Raises `StoreError` naming the file and the reason. Idempotent.
        """
        await self._worker.call(self._open)

    async def save_revocation(self, revocation: Revocation) -> None:
        # Read-only, the table may be a TEMP stand-in: writing there would not last.
        if self.read_only:
            raise StoreReadOnly(f"{self.description}: opened read-only")
        await super().save_revocation(revocation)

    async def close(self) -> None:
        """Close the connection once the current call (even an abandoned one) has ended."""
        await self._worker.call(self._close)

    async def run_blocking(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(connection)` in the store's thread, for maintenance and tests.

        Cancellation interrupts the statement `fn` is running.
        """
        return await self._worker.call(lambda: self._with_errors(fn))

    # -- in the worker thread ----------------------------------------------------------------

    def _open(self) -> None:
        if self._conn is not None:
            return
        try:
            if self.read_only:
                uri = f"file:{quote(str(self.path.absolute()))}?mode=ro"
                conn = sqlite3.connect(
                    uri,
                    uri=True,
                    timeout=self._busy_timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(
                    self.path,
                    timeout=self._busy_timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
        except OSError as exc:
            raise StoreUnavailable(
                f"{self.description}: cannot create its directory: {exc}"
            ) from exc
        except sqlite3.Error as exc:
            raise self._classify(exc) from exc
        try:
            self._prepare(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise self._classify(exc) from exc
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        # Driven by our own thread: the handler stops a statement once its call is cancelled.
        conn.set_progress_handler(lambda: 1 if self._worker.cancelled() else 0, PROGRESS_STEPS)
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        if self.read_only:
            check_version(_recorded_version(conn), self.description)
            self._shadow_missing(conn)
            return
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Before anything is created or altered: a newer store is left as it is.
            version = check_version(_recorded_version(conn), self.description)
            # Version 1's layout, from nothing, from a bare CivicPress table, or from an
            # unversioned store of ours (then nothing changes).
            conn.execute(CREATE_SNAPSHOTS)
            columns = {row[1] for row in conn.execute(f"PRAGMA table_info({SNAPSHOTS})")}
            for column, statement in ADD_COLUMNS.items():
                if column not in columns:
                    conn.execute(statement)
            conn.execute(CREATE_LOG)
            conn.execute(CREATE_REVOCATIONS)
            for statement in CREATE_INDEXES:
                conn.execute(statement)
            # Schema 2: the history tables (a store of version 1 gets them, empty).
            for statement in history_ddl("BLOB", " WITHOUT ROWID"):
                conn.execute(statement)
            if needs_recording(version):
                conn.execute(CREATE_SCHEMA_TABLE)
                conn.execute(RECORD_VERSION, record_params(self._now_ms()))
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        if needs_recording(version):
            announce(self.description, version)

    def _shadow_missing(self, conn: sqlite3.Connection) -> None:
        """Read-only: stand in for what a CivicPress database lacks, without writing to it.

        TEMP objects live in the connection's own temporary database and shadow the main
        ones for unqualified names, so the shared queries work unchanged.
        """
        tables = {row[0] for row in conn.execute("SELECT name FROM main.sqlite_master")}
        if SNAPSHOTS not in tables:
            conn.execute(CREATE_SNAPSHOTS.replace("CREATE TABLE", "CREATE TEMP TABLE"))
        else:
            columns = {row[1] for row in conn.execute(f"PRAGMA main.table_info({SNAPSHOTS})")}
            if not columns.issuperset(ADD_COLUMNS):
                extra = ", ".join(
                    f"{DEFAULTS[name]} AS {name}" for name in ADD_COLUMNS if name not in columns
                )
                conn.execute(
                    f"CREATE TEMP VIEW {SNAPSHOTS} AS SELECT *, {extra} FROM main.{SNAPSHOTS}"
                )
        if UPDATE_LOG not in tables:
            conn.execute(CREATE_LOG.replace("CREATE TABLE", "CREATE TEMP TABLE"))
        if REVOCATIONS not in tables:
            conn.execute(CREATE_REVOCATIONS.replace("CREATE TABLE", "CREATE TEMP TABLE"))
        if not tables.issuperset(HISTORY_TABLES):
            # A version-1 store read by maintenance commands: no history yet, read as empty.
            for statement in history_ddl("BLOB"):
                if statement.startswith("CREATE TABLE"):
                    conn.execute(statement.replace("CREATE TABLE", "CREATE TEMP TABLE"))

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _interrupt(self) -> None:
        conn = self._conn
        if conn is not None:
            conn.interrupt()

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[Tx]:
        conn = self._connection()
        try:
            # IMMEDIATE takes the write lock up front: a deferred transaction that later
            # needs to write can fail with SQLITE_BUSY without waiting for the lock.
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield _SqliteTx(conn, self._worker.check_cancelled)
            except BaseException:
                _rollback(conn)
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(conn)
            raise self._classify(exc) from exc

    def _with_errors(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._connection()
        try:
            return fn(conn)
        except sqlite3.Error as exc:
            raise self._classify(exc) from exc

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreUnavailable(f"{self.description}: not open")
        return self._conn

    def _classify(self, exc: sqlite3.Error) -> StoreError:
        name = getattr(exc, "sqlite_errorname", "") or ""
        where = self.description
        if name == "SQLITE_INTERRUPT":
            return CallCancelled(f"{where}: interrupted")
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return StoreBusy(
                f"{where}: database is locked by another connection "
                f"(waited {self._busy_timeout:g} s): {exc}"
            )
        if name.startswith("SQLITE_READONLY"):
            return StoreReadOnly(f"{where}: database is read-only: {exc}")
        if name == "SQLITE_FULL":
            return StoreFull(f"{where}: disk or database is full: {exc}")
        if name.startswith("SQLITE_CANTOPEN"):
            return StoreUnavailable(f"{where}: cannot open the database file: {exc}")
        if name in ("SQLITE_CORRUPT", "SQLITE_NOTADB"):
            return StoreError(f"{where}: the database file is damaged or not SQLite: {exc}")
        return StoreError(f"{where}: {exc} ({name or type(exc).__name__})")


class _SqliteTx:
    def __init__(self, conn: sqlite3.Connection, check: Callable[[], None]) -> None:
        self._conn = conn
        self._check = check

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        self._check()
        return self._conn.execute(sql, params).fetchall()

    def run(self, sql: str, params: Sequence[object] = ()) -> None:
        self._check()
        self._conn.execute(sql, params)

    def run_many(self, sql: str, params: Sequence[Sequence[object]]) -> None:
        self._check()
        self._conn.executemany(sql, params)


def _recorded_version(conn: sqlite3.Connection) -> object:
    """The schema version the database records, or None (a store from before versions)."""
    tables = conn.execute(
        "SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = ?", (SCHEMA_TABLE,)
    ).fetchall()
    if not tables:
        return None
    row = conn.execute(SELECT_VERSION, (SCHEMA_NAME,)).fetchone()
    return row[0] if row is not None else None


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        # The error that brought us here is the one to report; SQLite may already have
        # rolled back by itself, which makes ROLLBACK fail harmlessly.
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
