from __future__ import annotations

from pathlib import Path

from civicrealtime.persistence import FilesystemStore, SqliteStore, store_for
from civicrealtime.persistence.postgres import PostgresStore


def test_store_for_picks_the_backend(tmp_path: Path) -> None:
    assert isinstance(store_for("postgresql://u@h/db"), PostgresStore)
    assert isinstance(store_for("postgres://u@h/db"), PostgresStore)
    fs = store_for(f"filesystem:{tmp_path}", keep=5)
    assert isinstance(fs, FilesystemStore) and fs.directory == tmp_path and fs.keep == 5
    sqlite = store_for(f"sqlite:{tmp_path}/a.db")
    assert isinstance(sqlite, SqliteStore) and sqlite.path == tmp_path / "a.db"
    assert isinstance(store_for(".system-data/realtime.sqlite3"), SqliteStore)
