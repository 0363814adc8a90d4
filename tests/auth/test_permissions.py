from __future__ import annotations

import pytest

from civicrealtime.auth import Identity
from civicrealtime.auth.permissions import (
    ALL,
    effective_permissions,
    has_permission,
    room_allowed,
    room_pattern_matches,
)
from civicrealtime.config import DEFAULT_ROLES


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("records:abc123", "records:abc123", True),
        ("records:abc123", "records:abc1234", False),
        ("records:*", "records:abc", True),
        ("records:*", "recordsx:abc", False),
        ("records:*", "notes:abc", False),
        ("*", "notes:abc", True),
        ("records:ab*", "records:abc", False),  # only a whole-id wildcard is a pattern
        ("", "records:abc", False),
    ],
)
def test_room_patterns(pattern: str, key: str, expected: bool) -> None:
    assert room_pattern_matches(pattern, key) is expected


def test_no_rooms_claim_means_any_room() -> None:
    assert room_allowed(Identity(user_id="u"), "records:x")
    assert not room_allowed(Identity(user_id="u", rooms=()), "records:x")
    assert room_allowed(Identity(user_id="u", rooms=("notes:*", "records:x")), "records:x")


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("admin", {"records:view", "records:edit"}),
        ("clerk", {"records:view", "records:edit"}),
        ("editor", {"records:view", "records:edit"}),
        ("public", {"records:view"}),
        ("stranger", set()),
        (None, set()),
    ],
)
def test_default_roles_mirror_civicpress(role: str | None, expected: set[str]) -> None:
    assert effective_permissions(Identity(user_id="u", role=role), DEFAULT_ROLES) == expected


def test_explicit_permissions_add_to_the_role() -> None:
    identity = Identity(user_id="u", role="public", permissions=frozenset({"notes:edit"}))
    assert effective_permissions(identity, DEFAULT_ROLES) == {"records:view", "notes:edit"}


def test_the_all_permission_grants_everything() -> None:
    granted = effective_permissions(
        Identity(user_id="dev", permissions=frozenset({ALL})), DEFAULT_ROLES
    )
    assert has_permission(granted, "notes:edit")
    assert not has_permission(frozenset({"records:view"}), "records:edit")
