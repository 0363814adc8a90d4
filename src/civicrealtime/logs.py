"""Logging: one line per event, `event key=value ...`, as text or as JSON lines.

Call sites log `"connection.closed conn=%s code=%s ..."`; the JSON formatter splits the
rendered message back into the event name and its fields, so every line is queryable by a
log shipper without a second logging API. Values may contain spaces: a field runs until
the next ` key=`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from typing import Any

ENV_LOG_LEVEL = "CIVICREALTIME_LOG_LEVEL"
_FIELD = re.compile(r" ([a-z_][a-z0-9_]*)=")


def split_event(message: str) -> tuple[str, dict[str, str]]:
    """`"room.created room=records:a size=3"` -> `("room.created", {"room": ..., "size": "3"})`."""
    parts = _FIELD.split(" " + message if "=" in message.split(" ", 1)[0] else message)
    head = parts[0].strip()
    fields = {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}
    event, _, rest = head.partition(" ")
    event = event.rstrip(":")
    if rest:
        fields.setdefault("message", rest.lstrip(":").strip())
    return event, fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event, fields = split_event(record.getMessage())
        document: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": event,
            **fields,
        }
        if record.exc_info:
            document["traceback"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False)


def configure(level: str, fmt: str = "text") -> None:
    chosen = (os.environ.get(ENV_LOG_LEVEL) or level).upper()
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s", "%Y-%m-%dT%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, chosen, logging.INFO))
    # trio-websocket logs every frame at debug, and hypercorn every request: keep them to
    # warnings so that our own debug output stays readable and never holds request URLs.
    for noisy in ("trio-websocket", "hypercorn.access", "hypercorn.error", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
