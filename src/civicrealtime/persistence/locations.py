"""Choosing a store from one configuration string."""

from __future__ import annotations

from .basestore import StoreBase
from .filesystem import FilesystemStore
from .sqlite import SqliteStore
from .store import DEFAULT_KEEP


def store_for(location: str, *, keep: int = DEFAULT_KEEP) -> StoreBase:
    """`postgresql://…` (or `postgres://…`): PostgreSQL; `filesystem:DIR`: the filesystem
    layout under DIR; `sqlite:PATH` or a bare path: SQLite. The store is not opened."""
    if location.startswith(("postgresql://", "postgres://")):
        # Imported here so that psycopg loads only when PostgreSQL is used.
        from .postgres import PostgresStore  # noqa: PLC0415

        return PostgresStore(location, keep=keep)
    if location.startswith("filesystem:"):
        return FilesystemStore(location.removeprefix("filesystem:"), keep=keep)
    return SqliteStore(location.removeprefix("sqlite:"), keep=keep)
