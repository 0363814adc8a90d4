"""Revocations that outlive a restart and reach every node.

`Revoking` owns the daemon's side of a revocation: it applies one at once (the server closes
the sessions), keeps it in the store when the store keeps revocations
(`persistence/revocationstore.py`), publishes it to the other nodes, restores the kept ones
before the first connection, and reads them again once the cluster tails the stream. It
never decides who may revoke (the operations port does) and holds no session itself.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio

from .auth.revocation import Revocations
from .http.ports import Outcome
from .persistence import Store, StoreError, StoreWriter
from .persistence.revocationstore import revocations_in
from .persistence.store import STORE_CALL_TIMEOUT
from .server import RealtimeServer, Revoked
from .startup import StoreSetupError

if TYPE_CHECKING:
    from .cluster import ClusterService

log = logging.getLogger("civicrealtime")


class Revoking:
    """Revocations applied here, kept in the store, and shared with the other nodes."""

    def __init__(
        self,
        server: RealtimeServer,
        revocations: Revocations,
        store_writer: StoreWriter | None,
        cluster: ClusterService | None,
    ) -> None:
        self._server = server
        self._revocations = revocations
        self._store_writer = store_writer
        self._cluster = cluster

    async def restore(self, store: Store) -> None:
        """Before the first connection: a restart must not let a revoked session back in."""
        durable = revocations_in(store)
        if durable is None:
            log.warning(
                "auth.revocations_not_kept store=%s: revocations last until the daemon stops",
                store.description,
            )
            return
        try:
            with trio.fail_after(STORE_CALL_TIMEOUT):
                kept = await durable.load_revocations()
        except (StoreError, trio.TooSlowError) as exc:
            raise StoreSetupError(
                f"cannot read the revoked sessions from {store.description}: "
                f"{exc or 'no answer'}; refusing to start without them"
            ) from None
        count = self._revocations.restore(kept)
        if count:
            log.info("auth.revocations_restored count=%d", count)

    async def restore_when_tailing(self, store: Store) -> None:
        """Read the stored revocations again once the cluster tails the revocations stream.

        A revocation another node stored after our first read but published before we
        started tailing would otherwise be missed. Sessions admitted meanwhile are closed.
        """
        assert self._cluster is not None
        durable = revocations_in(store)
        if durable is None:
            return
        await self._cluster.revocations.tailing.wait()
        while True:
            try:
                with trio.fail_after(STORE_CALL_TIMEOUT):
                    kept = await durable.load_revocations()
                break
            except (StoreError, trio.TooSlowError) as exc:
                log.warning("auth.revocations_reread_failed error=%s; retrying", exc)
                await trio.sleep(5)
        self._revocations.restore(kept)
        closed = self._server.close_revoked("revoked by an administrator")
        if closed:
            log.info("auth.revoked_on_reread connections=%d", closed)

    async def revoke(
        self,
        *,
        user_id: str | None,
        token_id: str | None,
        reason: str,
        token_expires_at: float | None = None,
    ) -> Outcome:
        """Revoke at once (here, and on the other nodes), then keep it in the store.

        The revocation holds in memory whatever the store does; 503 says it would not
        survive a restart (the store failed; asking again is safe). `token_expires_at`:
        the revoked token's `exp`, until which its id is refused.
        """
        revoked = self._server.revoke(
            user_id=user_id, token_id=token_id, reason=reason, token_expires_at=token_expires_at
        )
        try:
            return await self._keep(revoked, user_id, token_id)
        finally:
            # Published after the store write: a node that starts meanwhile reads the store
            # once it tails the stream, so it misses neither (`restore_when_tailing`).
            if self._cluster is not None:
                self._cluster.revocations.publish(
                    user_id, token_id, reason, revoked.records[0].revoked_at
                )

    async def _keep(self, revoked: Revoked, user_id: str | None, token_id: str | None) -> Outcome:
        body: dict[str, Any] = {
            "revoked": True,
            "connections_closed": revoked.connections_closed,
        }
        if self._store_writer is None:
            body["persisted"] = False
            body["note"] = "snapshots are disabled: the revocation lasts until the daemon stops"
            return Outcome(200, body)
        store = revocations_in(self._store_writer.store)
        if store is None:
            body["persisted"] = False
            body["note"] = "the store keeps no revocations: it lasts until the daemon stops"
            return Outcome(200, body)
        try:
            with trio.fail_after(STORE_CALL_TIMEOUT):
                for record in revoked.records:
                    await store.save_revocation(record)
        except (StoreError, trio.TooSlowError) as exc:
            why = str(exc) or f"no answer within {STORE_CALL_TIMEOUT:g} s"
            log.error(  # noqa: TRY400 - the store's message says it all; no bug to trace
                "auth.revocation_not_stored user=%s token_id=%s error=%s", user_id, token_id, why
            )
            body["persisted"] = False
            body["error"] = f"in force, but not stored (a restart would forget it): {why}"
            return Outcome(503, body)
        body["persisted"] = True
        return Outcome(200, body)
