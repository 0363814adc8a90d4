"""Finding the token in an upgrade request (sans-IO).

Order of the original: `Authorization: Bearer <token>`, then a `Sec-WebSocket-Protocol`
entry `auth.<token>`. The query string (`?token=`) is deprecated and only read when the
deployment allows it; the access-control layer decides that.
"""

from __future__ import annotations

from urllib.parse import parse_qs

import attrs

from .base import UpgradeRequest

SUBPROTOCOL_PREFIX = "auth."


@attrs.frozen(kw_only=True, slots=True)
class FoundToken:
    token: str
    source: str  # "header", "subprotocol" or "query"


def find_token(request: UpgradeRequest, *, allow_query: bool = False) -> FoundToken | None:
    authorization = request.header("authorization")
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return FoundToken(token=value.strip(), source="header")
    for proposed in request.subprotocols:
        if proposed.startswith(SUBPROTOCOL_PREFIX) and len(proposed) > len(SUBPROTOCOL_PREFIX):
            return FoundToken(token=proposed[len(SUBPROTOCOL_PREFIX) :], source="subprotocol")
    if allow_query:
        _, _, query = request.target.partition("?")
        values = parse_qs(query).get("token")
        if values and values[0]:
            return FoundToken(token=values[0], source="query")
    return None
