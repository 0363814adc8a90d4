"""The command line: `main` (main.py) dispatches to the daemon and its subcommands.

`records.py` edits CivicPress record rooms, `snapshots.py` maintains stored room states.
`civicrealtime.cli:main` is the console script's entry point.
"""

from .main import main

__all__ = ["main"]
