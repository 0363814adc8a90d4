"""The store's schema version: recorded in every store, checked each time one is opened.

A store written by this code carries `SCHEMA_VERSION`: a row of the `realtime_schema`
table (SQLite, PostgreSQL) or `realtime/schema.json` (filesystem). Opening a store reads
it first:

- none recorded: a store from before versions were kept (or a new one). Its layout is
  brought to the current one (the existing create-or-add-columns steps, which also take a
  bare CivicPress table) and the version is then recorded;
- an older version this code knows: migrated step by step, then recorded. Version 2
  adds the history tables (`realtime_history_*`, or `realtime/history/` in a filesystem
  store; see persistence/history.py): 1 -> 2 creates them, empty, and leaves the rest;
- the current version: nothing to do;
- a newer version, or something that is not a version: the store refuses to open, with a
  message saying which version it found, which this release knows, and what to do. A
  newer release may have changed the layout in a way this one would misread or damage.

Read-only stores (maintenance commands) check but never record.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..version import VERSION
from .errors import StoreError

# Bump when the stored layout changes, with a migration step from the previous version.
SCHEMA_VERSION = 2
SCHEMA_TABLE = "realtime_schema"
# The one row of SCHEMA_TABLE that is ours; the table is keyed by name so that the
# record-side tables of CivicPress could keep theirs beside it.
SCHEMA_NAME = "realtime"
SCHEMA_FILE = "schema.json"
WRITTEN_BY = f"civicrealtime {VERSION}"

log = logging.getLogger("civicrealtime.persistence")


class SchemaMismatch(StoreError):
    """The store was written by a newer (or unknown) civicrealtime: it is left untouched."""


def check_version(found: object, where: str) -> int:
    """The store's version (0: none recorded), or `SchemaMismatch` saying what to do."""
    if found is None:
        return 0
    if isinstance(found, bool) or not isinstance(found, int) or found < 1:
        raise SchemaMismatch(
            f"{where}: the schema version recorded in the store is {found!r}, which no "
            f"civicrealtime writes (this is {WRITTEN_BY}, schema version {SCHEMA_VERSION}). "
            "The store was changed by hand or by another program; restore it from a backup "
            f"(see docs/operations.md, Backups), or fix the record ({_where_kept()})"
        )
    if found > SCHEMA_VERSION:
        raise SchemaMismatch(
            f"{where}: the store has schema version {found}, written by a newer "
            f"civicrealtime; this is {WRITTEN_BY}, which knows versions up to "
            f"{SCHEMA_VERSION}. Nothing was changed. Run the newer release again, or "
            "restore the backup taken before the upgrade and then start this release "
            "(docs/operations.md, Upgrading)"
        )
    return found


def _where_kept() -> str:
    return (
        f"the {SCHEMA_TABLE} table's row {SCHEMA_NAME!r}, or realtime/{SCHEMA_FILE} in a "
        "filesystem store"
    )


def needs_recording(version: int) -> bool:
    """Whether opening must migrate the layout and record the current version."""
    return version < SCHEMA_VERSION


# -- SQL (SQLite and PostgreSQL alike) ---------------------------------------------------------

CREATE_SCHEMA_TABLE = f"""CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} (
  name TEXT PRIMARY KEY,
  version INTEGER NOT NULL,
  written_by TEXT NOT NULL,
  written_at BIGINT NOT NULL
)"""
SELECT_VERSION = f"SELECT version FROM {SCHEMA_TABLE} WHERE name = ?"
RECORD_VERSION = (
    f"INSERT INTO {SCHEMA_TABLE} (name, version, written_by, written_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET version = excluded.version, "
    "written_by = excluded.written_by, written_at = excluded.written_at"
)


def record_params(now_ms: int) -> tuple[str, int, str, int]:
    return (SCHEMA_NAME, SCHEMA_VERSION, WRITTEN_BY, now_ms)


def announce(where: str, found: int) -> None:
    """Say what opening did to the store's schema, once, when it did anything."""
    before = "none" if found == 0 else str(found)
    log.info("persistence.schema_recorded store=%s from=%s to=%d", where, before, SCHEMA_VERSION)


# -- the filesystem store ----------------------------------------------------------------------


def read_schema_file(root: Path, where: str) -> int:
    """The version `<root>/schema.json` records (0: no file), or `SchemaMismatch`."""
    path = root / SCHEMA_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    try:
        found = json.loads(data)["schema_version"]
    except (ValueError, TypeError, KeyError) as exc:
        raise SchemaMismatch(
            f"{where}: {path} is not a schema file ({exc!r}). Restore it from a backup, or "
            f'write {{"schema_version": {SCHEMA_VERSION}}} into it if this directory was '
            f"written by {WRITTEN_BY} or earlier"
        ) from None
    return check_version(found, where)


def schema_file_body(now_ms: int) -> bytes:
    body = {"schema_version": SCHEMA_VERSION, "written_by": WRITTEN_BY, "written_at": now_ms}
    return (json.dumps(body, indent=1) + "\n").encode()
