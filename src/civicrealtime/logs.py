"""Logging setup: one line per event, `event key=value ...`, to stderr."""

from __future__ import annotations

import logging
import os
import sys

ENV_LOG_LEVEL = "CIVICREALTIME_LOG_LEVEL"


def configure(level: str) -> None:
    chosen = os.environ.get(ENV_LOG_LEVEL, level).upper()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, chosen, logging.INFO))
    # trio-websocket logs every frame at debug; keep it out of our debug output.
    logging.getLogger("trio-websocket").setLevel(logging.WARNING)
