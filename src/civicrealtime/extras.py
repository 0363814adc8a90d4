"""Optional dependencies: PostgreSQL (`civicrealtime[postgres]`) and clustering (`[cluster]`).

SQLite is the default store and clustering is off, so psycopg and coredis are extras. A
configuration that needs one that is not installed is refused with what to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtra(Exception):
    """The configuration asks for a feature whose optional dependency is not installed."""

    def __init__(self, *, setting: str, feature: str, extra: str, module: str) -> None:
        super().__init__(
            f"{setting} asks for {feature}, which needs the Python package {module!r}, not "
            f"installed here: pip install 'civicrealtime[{extra}]' (in the daemon's venv)"
        )
        self.extra = extra


def import_extra(name: str, *, setting: str, feature: str, extra: str) -> ModuleType:
    """Import the civicrealtime module `name` that needs an extra; MissingExtra if absent."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        # Only the optional package itself is "not installed"; a module of ours that is
        # missing is a broken install, reported as it is.
        missing = (exc.name or "").split(".")[0]
        if missing in ("civicrealtime", ""):
            raise
        raise MissingExtra(setting=setting, feature=feature, extra=extra, module=missing) from exc
