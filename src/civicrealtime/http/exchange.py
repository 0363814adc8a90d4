"""The request and response plumbing both ops-port handlers share (asgi.py, content.py)."""

from __future__ import annotations

import json
from typing import Any

from .ports import Receive, Scope

Response = tuple[int, list[Any], bytes]


class BodyTooLarge(Exception):
    """A request body longer than the handler accepts (413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body larger than {limit} bytes")
        self.limit = limit


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of header `name` (lower case), or None."""
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def json_response(status: int, payload: object) -> Response:
    return (
        status,
        [(b"content-type", b"application/json")],
        json.dumps(payload, ensure_ascii=False).encode(),
    )


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body; `BodyTooLarge` as soon as it passes `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)
