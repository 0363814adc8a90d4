"""The client helper the operations port serves: `/client/civicrealtime.js` (docs/saved.md).

One plain ES module, shipped in the package, loaded by editors straight from the daemon
(no build step). It is public code, so any origin may import it (CORS `*`).
"""

from __future__ import annotations

from importlib import resources

CLIENT_PREFIX = "/client/"
CLIENT_FILES = frozenset({"civicrealtime.js"})


def client_asset(path: str) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
    """The response for a `/client/...` path, or None when it names no shipped file."""
    name = path[len(CLIENT_PREFIX) :]
    if name not in CLIENT_FILES:
        return None
    body = resources.files("civicrealtime.http").joinpath("static", "client", name).read_bytes()
    headers = [
        (b"content-type", b"text/javascript; charset=utf-8"),
        (b"access-control-allow-origin", b"*"),
        (b"cache-control", b"no-cache"),
    ]
    return 200, headers, body
