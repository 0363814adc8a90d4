"""A room's timers: the grace period of an empty room, and the stale-connection sweep.

Both are tasks in the room's own nursery, started by the room; they act through callbacks
and pushes that never wait, like everything else the room does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import trio

from ..config import ConnectionCleanupConfig
from ..protocol import CloseCode, close_reason
from .member import Member

log = logging.getLogger("civicrealtime.room")


class GraceTimer:
    """A restartable timer that owns its cancel scope: `arm` starts it afresh.

    When `seconds` pass, `expired()` is called; it returns whether to wait another period
    (a room holding updates not yet durable is not evicted, and asks again later).
    """

    def __init__(self, seconds: float, expired: Callable[[], bool]) -> None:
        self._seconds = seconds
        self._expired = expired
        self._scope: trio.CancelScope | None = None

    def arm(self, nursery: trio.Nursery) -> None:
        self.cancel()
        nursery.start_soon(self._run)

    def cancel(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
            self._scope = None

    async def _run(self) -> None:
        with trio.CancelScope() as scope:
            self._scope = scope
            while True:
                await trio.sleep(self._seconds)
                if self._scope is not scope or not self._expired():
                    return


async def sweep_stale(
    key: str, members: Mapping[int, Member], cleanup: ConnectionCleanupConfig
) -> None:
    """Close members that sent nothing (not even a pong) for `stale_threshold`."""
    while True:
        await trio.sleep(cleanup.check_interval)
        deadline = trio.current_time() - cleanup.stale_threshold
        for member in list(members.values()):
            if member.last_seen < deadline:
                log.info("connection.stale room=%s conn=%s", key, member.conn_id)
                member.outbound.close(
                    CloseCode.GOING_AWAY, close_reason("STALE_CONNECTION"), flush=False
                )
