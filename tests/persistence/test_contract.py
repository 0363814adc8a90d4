"""One store contract: what a backend declares (shared, revocations) and what it inherits."""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path

import pytest

from civicrealtime.app import RealtimeService
from civicrealtime.auth import DevelopmentAuthenticator
from civicrealtime.persistence import FilesystemStore, Loaded, SqliteStore, Store, VerifyReport
from civicrealtime.persistence.postgres import PostgresStore
from civicrealtime.persistence.revocationstore import RevocationStore, revocations_in
from civicrealtime.persistence.rows import SnapshotInfo, SnapshotRecord

from ..conftest import make_config


class RoomsOnly(Store):
    """A backend that keeps room state and nothing else (no revocations)."""

    description = "rooms only"

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None: ...

    async def load(self, room_id: str) -> Loaded:
        return Loaded(room_id=room_id, snapshot=None, state=None, log=(), problems=())

    async def append(self, batch: Sequence[tuple[str, bytes]]) -> list[int]:
        return list(range(1, len(batch) + 1))

    async def write_snapshot(
        self,
        room_id: str,
        state: bytes,
        *,
        covers_seq: int,
        carry: Sequence[bytes] = (),
        compress: bool = False,
        discard: AbstractSet[bytes] = frozenset(),
    ) -> SnapshotRecord:
        raise NotImplementedError

    async def sweep(self, older_than_ms: int, live_rooms: set[str]) -> int:
        return 0

    async def list_rooms(self) -> list[str]:
        return []

    async def snapshots(self, room_id: str) -> list[SnapshotInfo]:
        return []

    async def verify_all(self) -> VerifyReport:
        return VerifyReport(rooms=0, snapshots=0, log_records=0, problems=())


def test_only_a_database_server_is_shared_by_nodes(tmp_path: Path) -> None:
    assert not SqliteStore(tmp_path / "x.sqlite3").shared_by_nodes
    assert not FilesystemStore(tmp_path).shared_by_nodes
    assert PostgresStore.shared_by_nodes
    assert not RoomsOnly().shared_by_nodes  # the contract's default: not shared


def test_revocation_storage_is_its_own_interface(tmp_path: Path) -> None:
    for store in (SqliteStore(tmp_path / "x.sqlite3"), FilesystemStore(tmp_path)):
        assert isinstance(store, RevocationStore)
        assert revocations_in(store) is store
    assert revocations_in(RoomsOnly()) is None
    assert not hasattr(Store, "save_revocation")


def test_the_contract_cannot_be_half_implemented() -> None:
    class Half(Store):
        async def open(self) -> None: ...

    with pytest.raises(TypeError, match="abstract"):
        Half()  # type: ignore[abstract]


async def test_a_store_without_revocations_keeps_them_in_memory(tmp_path: Path) -> None:
    config = make_config(data_dir=str(tmp_path), snapshots={"enabled": True})
    service = RealtimeService(config, authenticator=DevelopmentAuthenticator(), store=RoomsOnly())
    await service.revoking.restore(RoomsOnly())  # nothing to read: no error
    outcome = await service.revoking.revoke(user_id="u1", token_id=None, reason="left")
    assert outcome.status == 200
    assert outcome.body["persisted"] is False
    assert "keeps no revocations" in outcome.body["note"]
