"""The command line: `main` (main.py) dispatches to the daemon and its subcommands.

`records.py` edits CivicPress record rooms, `snapshots.py` maintains stored room states,
`history.py` reads a room's history and restores a version.
`civicrealtime.cli:main` is the console script's entry point.
"""

from .main import main

__all__ = ["main"]
