"""The saved acknowledgement is true through kill -9 (tests/faults/saved_kills.py).

A few random kills per store here; `nox -s faults` runs CIVICREALTIME_SAVED_KILLS per store
(70, so 210 kills over SQLite, PostgreSQL and files) and prints the same figures.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from . import saved_kills

KILLS = int(os.environ.get("CIVICREALTIME_SAVED_KILLS", "5"))


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "files"])
def test_every_acknowledged_update_survives_kill_9(backend: str, tmp_path: Path) -> None:
    seed = int(os.environ.get("CIVICREALTIME_SAVED_KILLS_SEED", random.randrange(2**31)))
    figures = saved_kills.run(backend, KILLS, tmp_path, seed=seed)
    print(figures.line(), f"seed={seed}")
    assert figures.kills == KILLS
    # Acknowledgements came (the property is not vacuous), and none of them lied.
    assert figures.acked > 0
    assert figures.lost_after_ack == 0, figures.failures
