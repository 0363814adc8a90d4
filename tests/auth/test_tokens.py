"""Where the token is found, and in which order."""

from __future__ import annotations

import pytest

from civicrealtime.auth import UpgradeRequest, find_token


def request(
    *,
    target: str = "/realtime/records/a",
    headers: dict[str, str] | None = None,
    subprotocols: tuple[str, ...] = (),
) -> UpgradeRequest:
    return UpgradeRequest(
        target=target,
        headers=tuple((k.lower(), v) for k, v in (headers or {}).items()),
        subprotocols=subprotocols,
        peer="127.0.0.1",
    )


def test_bearer_header_wins_over_subprotocol_and_query() -> None:
    found = find_token(
        request(
            target="/realtime/records/a?token=q",
            headers={"Authorization": "Bearer h"},
            subprotocols=("auth.s",),
        ),
        allow_query=True,
    )
    assert found is not None
    assert (found.token, found.source) == ("h", "header")


def test_subprotocol_before_query() -> None:
    found = find_token(
        request(target="/r/records/a?token=q", subprotocols=("other", "auth.s")),
        allow_query=True,
    )
    assert found is not None
    assert (found.token, found.source) == ("s", "subprotocol")


def test_query_only_when_allowed() -> None:
    req = request(target="/realtime/records/a?x=1&token=q")
    assert find_token(req) is None
    found = find_token(req, allow_query=True)
    assert found is not None
    assert (found.token, found.source) == ("q", "query")


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": "Basic abc"}, {"Authorization": "Bearer "}, {"Authorization": "Bearer"}],
)
def test_unusable_authorization_falls_through(headers: dict[str, str]) -> None:
    assert find_token(request(headers=headers)) is None
    found = find_token(request(headers=headers, subprotocols=("auth.s",)))
    assert found is not None
    assert found.token == "s"


def test_bare_auth_prefix_is_not_a_token() -> None:
    assert find_token(request(subprotocols=("auth.",))) is None
