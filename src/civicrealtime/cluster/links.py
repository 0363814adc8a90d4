"""One open room as the cluster sees it: where its stream was read up to, and what was
delivered to its mailbox.

Delivery never waits: `send_nowait`, and when the mailbox is full the message waits in
`pending` (the room's stream is not read further until it drains, so this stays small).

`applied_below()` answers "which stream entries are surely in the room's document?" for
trimming. The reader knows what it handed to the mailbox, not what the room has taken out
of it; but the mailbox is FIFO, holds at most `buffer_used` messages, and the room task
may hold one more it was handed but has not handled. So of our deliveries, all but the
last `buffer_used + 1` were applied.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator

import attrs
import trio

from ..rooms.messages import RoomMessage
from .entries import StreamId, successor


@attrs.define(eq=False)
class RoomLink:
    key: str
    stream: bytes
    mailbox: trio.MemorySendChannel[RoomMessage]
    # The last stream entry read; None: unknown (Redis was unreachable when the room
    # opened), to be found by a resync before the stream is read.
    read_id: StreamId | None = None
    pending: deque[tuple[RoomMessage, StreamId | None]] = attrs.Factory(deque)
    # Stream ids of the latest deliveries (None for messages that are not entries).
    delivered: deque[StreamId | None] = attrs.field(init=False)
    alive: bool = True
    paused_since: float | None = None
    # Nodes whose presence this room holds (their death must reach the room).
    remote_nodes: set[str] = attrs.Factory(set)
    # Set when a snapshot's state was captured: the trim point it allows once written.
    trim_candidate: StreamId | None = None

    def __attrs_post_init__(self) -> None:
        size = self.mailbox.statistics().max_buffer_size
        self.delivered = deque(maxlen=int(size) + 2 if math.isfinite(size) else 0)

    def deliver(self, message: RoomMessage, sid: StreamId | None) -> None:
        if self.pending:
            self.pending.append((message, sid))
            return
        if not self._send(message, sid) and self.alive:
            self.pending.append((message, sid))
            self.paused_since = trio.current_time()

    def flush(self) -> None:
        """Deliver what waits, in order, while the mailbox has room."""
        while self.pending and self.alive:
            message, sid = self.pending[0]
            if not self._send(message, sid):
                return
            self.pending.popleft()
        self.paused_since = None

    def _send(self, message: RoomMessage, sid: StreamId | None) -> bool:
        try:
            self.mailbox.send_nowait(message)
        except trio.WouldBlock:
            return False
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.close()  # the room is gone
            return False
        self.delivered.append(sid)
        return True

    def close(self) -> None:
        self.alive = False
        self.pending.clear()
        self.mailbox.close()

    def applied_below(self) -> StreamId | None:
        """Every entry of the stream with a smaller id is in the room's document.

        None when that cannot be told (the stream position is unknown, or the mailbox is
        unbounded): no trimming then.
        """
        if self.read_id is None or self.delivered.maxlen == 0:
            return None
        unapplied = self.mailbox.statistics().current_buffer_used + 1
        recent = list(self.delivered)[-unapplied:]
        for sid in recent:
            if sid is not None:
                return sid
        for _, sid in self.pending:
            if sid is not None:
                return sid
        return successor(self.read_id)


class RoomLinks:
    """The rooms open on this node, each linked to its stream: the relay opens and closes
    them; the leases, the resync and the node checks look them up."""

    def __init__(self) -> None:
        self._links: dict[str, RoomLink] = {}

    def __len__(self) -> int:
        return len(self._links)

    def __contains__(self, key: str) -> bool:
        return key in self._links

    def get(self, key: str) -> RoomLink | None:
        return self._links.get(key)

    def __iter__(self) -> Iterator[str]:
        """The rooms' keys, as they are now (the loop may close some)."""
        return iter(list(self._links))

    def items(self) -> list[tuple[str, RoomLink]]:
        return list(self._links.items())

    def alive(self) -> list[str]:
        """The rooms whose mailbox still takes messages."""
        return [key for key, link in self._links.items() if link.alive]

    def by_stream(self) -> dict[bytes, RoomLink]:
        return {link.stream: link for link in self._links.values()}

    def add(self, link: RoomLink) -> None:
        """Link a room, in place of its previous link (closed) if it had one."""
        previous = self._links.pop(link.key, None)
        if previous is not None:
            previous.close()
        self._links[link.key] = link

    def remove(self, key: str) -> None:
        link = self._links.pop(key, None)
        if link is not None:
            link.close()

    def forget(self, key: str) -> None:
        """Drop a link whose room is gone (already closed)."""
        self._links.pop(key, None)
