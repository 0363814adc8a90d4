"""The `HistoryStore` of each document store kind."""

from __future__ import annotations

from .filesystem import FilesystemStore
from .history import HistoryStore
from .historyfs import FsHistory
from .historysql import SqlHistory
from .sqlbase import SqlStore
from .store import Store


def history_for(store: Store) -> HistoryStore | None:
    """History kept in the same database (or directory) as `store`, with its connection.

    None for a store of another kind (a test double): that daemon keeps no history.
    """
    if isinstance(store, SqlStore):
        return SqlHistory(store)
    if isinstance(store, FilesystemStore):
        return FsHistory(store)
    return None
