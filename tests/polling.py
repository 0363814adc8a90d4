"""Waiting for server-side state that no frame announces (counters, eviction).

Frames are awaited with `YClient.wait_for`, which wakes on every frame. Some outcomes are
only visible inside the server (a room evicted, a close the client never reads), and for
those we poll, always under a deadline, so a regression fails fast instead of hanging.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

POLL_INTERVAL = 0.005


async def eventually(predicate: Callable[[], object], within: float = 5) -> None:
    with trio.fail_after(within):
        # No event exists to wait on: that is why this helper polls.
        while not predicate():  # noqa: ASYNC110
            await trio.sleep(POLL_INTERVAL)
