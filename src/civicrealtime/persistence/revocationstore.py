"""Keeping revocations durably: an interface a store's backend may implement.

Revoked users and token ids (`auth.revocation`) are not room state, so they are not part
of the `Store` contract. A backend that can keep them in the same database (SQLite,
PostgreSQL, the filesystem layout) implements this interface too; `revocations_in` finds
it. A daemon whose store keeps no revocations holds them in memory only.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..auth.revocation import Revocation


@runtime_checkable
class RevocationStore(Protocol):
    """Revocations kept durably. Both methods raise `StoreError` when the store fails."""

    async def save_revocation(self, revocation: Revocation) -> None:
        """Keep a revoked user or token id, replacing the one kept for it, durably."""
        ...

    async def load_revocations(self) -> list[Revocation]:
        """Every kept revocation that still applies (token ids past `until` are left out)."""
        ...


def revocations_in(store: object) -> RevocationStore | None:
    """The revocation storage `store` also provides, or None when it keeps none."""
    return store if isinstance(store, RevocationStore) else None
