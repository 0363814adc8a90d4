"""Choosing a store from one configuration string."""

from __future__ import annotations

from ..extras import import_extra
from .filesystem import FilesystemStore
from .sqlite import SqliteStore
from .store import DEFAULT_KEEP, Store


def store_for(location: str, *, keep: int = DEFAULT_KEEP) -> Store:
    """`postgresql://…` (or `postgres://…`): PostgreSQL; `filesystem:DIR`: the filesystem
    layout under DIR; `sqlite:PATH` or a bare path: SQLite. The store is not opened.

    Raises MissingExtra for PostgreSQL without psycopg installed."""
    if location.startswith(("postgresql://", "postgres://")):
        # Imported here so that psycopg (the [postgres] extra) loads only when it is used.
        postgres = import_extra(
            "civicrealtime.persistence.postgres",
            setting="snapshots.database_url",
            feature="PostgreSQL",
            extra="postgres",
        )
        store: Store = postgres.PostgresStore(location, keep=keep)
        return store
    if location.startswith("filesystem:"):
        return FilesystemStore(location.removeprefix("filesystem:"), keep=keep)
    return SqliteStore(location.removeprefix("sqlite:"), keep=keep)
