"""A member's outbound queue: bounded in frames and in bytes, closing with 1013 when full."""

from __future__ import annotations

import ast
from pathlib import Path

import trio
from trio.testing import wait_all_tasks_blocked

from civicrealtime.protocol import closecodes
from civicrealtime.protocol.closecodes import CloseCode
from civicrealtime.protocol.wire import WireFrame, wire_bytes
from civicrealtime.stats import Stats
from civicrealtime.transport.outbound import Outbound


def test_a_queue_holding_its_bytes_closes_on_the_next_frame() -> None:
    queue = Outbound(1024, max_bytes=100_000)
    frame = b"\x01" * 60_000
    assert queue.push(frame)
    assert queue.push(frame)  # 60 KB held: under the bound, so one more frame fits
    assert queue.pending_bytes == 120_000
    assert not queue.push(frame)  # 120 KB held: full
    assert queue.close_request is not None
    assert queue.close_request.code == CloseCode.TRY_AGAIN_LATER
    assert "SLOW_CONSUMER" in queue.close_request.reason


def test_one_frame_larger_than_the_bound_still_fits_an_empty_queue() -> None:
    """A large document's step 2 on join must never close the joiner by itself."""
    queue = Outbound(1024, max_bytes=65_536)
    assert queue.push("ack")
    assert queue.push(b"\x00" * 1_000_000)
    assert not queue.closing


async def test_bytes_written_leave_the_count() -> None:
    queue = Outbound(1024, max_bytes=100_000)
    for _ in range(3):
        assert queue.push(b"\x02" * 40_000)
    batch, closing = await queue.next_batch(64 * 1024)
    assert (len(batch), closing) == (2, False)
    assert queue.pending_bytes == 40_000
    batch, _ = await queue.next_batch(64 * 1024)
    assert queue.pending_bytes == 0 and queue.pending == 0
    for _ in range(3):
        assert queue.push(b"\x02" * 40_000)
    assert not queue.closing


# -- coalescing: one drain, one write ----------------------------------------------------------


class FakeSocket:
    """A RawSocket that records writes and takes at most `takes` bytes of each."""

    direct = True

    def __init__(self, takes: int | None = None) -> None:
        self.takes = takes
        self.writes: list[bytes] = []

    def write_now(self, data: bytes) -> int:
        self.writes.append(data)
        return len(data) if self.takes is None else min(self.takes, len(data))


def attached(socket: FakeSocket) -> tuple[Outbound, Stats]:
    queue = Outbound(1024, max_bytes=1_000_000)
    stats = Stats()
    queue.attach(socket, stats)  # type: ignore[arg-type]
    return queue, stats


UPDATES = [WireFrame(b"\x00\x02" + bytes([n]) * n) for n in range(1, 4)]


async def test_the_frames_of_one_drain_go_out_in_one_write() -> None:
    socket = FakeSocket()
    queue, stats = attached(socket)
    for update in UPDATES:  # one drain: no checkpoint between the pushes
        assert queue.push(update)
    assert socket.writes == []  # the room itself makes no system call
    await wait_all_tasks_blocked()
    assert socket.writes == [b"".join(u.wire for u in UPDATES)]
    assert (queue.pending, queue.pending_bytes) == (0, 0)
    assert stats.messages_sent["sync_update"] == 3
    assert stats.bytes_sent == sum(len(u) for u in UPDATES)
    for update in UPDATES[:2]:  # the next drain: its own write
        queue.push(update)
    await wait_all_tasks_blocked()
    assert len(socket.writes) == 2


async def test_what_the_socket_does_not_take_goes_to_the_writer_in_order() -> None:
    socket = FakeSocket(takes=len(UPDATES[0].wire) + 2)
    queue, stats = attached(socket)
    for update in UPDATES:
        queue.push(update)
    await wait_all_tasks_blocked()
    batch, closing = await queue.next_batch(64 * 1024)
    assert not closing
    # The second frame's tail first (counted as its whole message), then the third.
    assert [wire_bytes(frame) for frame in batch] == [UPDATES[1].wire[2:], UPDATES[2].wire]
    assert [len(frame) for frame in batch] == [len(UPDATES[1]), len(UPDATES[2])]
    assert stats.messages_sent["sync_update"] == 1
    assert (queue.pending, queue.pending_bytes) == (0, 0)


async def test_a_busy_socket_leaves_every_frame_to_the_writer() -> None:
    socket = FakeSocket(takes=0)
    queue, _ = attached(socket)
    for update in UPDATES:
        queue.push(update)
    await wait_all_tasks_blocked()
    queue.push("control")  # queued behind them, not held: the writer has frames waiting
    await wait_all_tasks_blocked()
    assert len(socket.writes) == 1
    batch, _ = await queue.next_batch(64 * 1024)
    assert batch == [*UPDATES, "control"]


async def test_a_flushing_close_writes_held_frames_first() -> None:
    socket = FakeSocket()
    queue, _ = attached(socket)
    for update in UPDATES:
        queue.push(update)
    queue.close(closecodes.ROOM_EVICTED, flush=True)
    await wait_all_tasks_blocked()
    assert socket.writes == []
    assert await queue.next_batch(64 * 1024) == (UPDATES, True)


async def test_an_aborting_close_drops_held_frames() -> None:
    socket = FakeSocket()
    queue, _ = attached(socket)
    for update in UPDATES:
        queue.push(update)
    queue.close(closecodes.SLOW_CONSUMER, flush=False)
    await wait_all_tasks_blocked()
    assert socket.writes == []
    assert (queue.pending, queue.pending_bytes) == (0, 0)
    assert queue.aborted


async def test_an_aborting_close_overrides_a_flushing_one() -> None:
    """A send timeout while flushing before a close: the write may have been cut mid-frame.
    The second close was ignored, so the socket got a close frame after a partial one."""
    queue = Outbound(1024)
    scope = trio.CancelScope()
    queue.bind(scope)
    assert queue.push(b"\x02" * 1000)
    queue.close(closecodes.PENDING_LIMIT, flush=True)
    assert not queue.aborted
    assert not scope.cancel_called
    queue.close(closecodes.SEND_TIMEOUT, flush=False)
    assert queue.aborted
    assert scope.cancel_called
    assert queue.close_request is not None
    assert "PENDING_LIMIT" in queue.close_request.reason  # the first reason stands


async def test_held_frames_count_against_the_bounds() -> None:
    queue = Outbound(2, max_bytes=1_000_000)
    queue.attach(FakeSocket(), Stats())  # type: ignore[arg-type]
    assert queue.push(UPDATES[0]) and queue.push(UPDATES[1])
    assert not queue.push(UPDATES[2])  # two held: full, before any write
    assert queue.close_request is not None
    assert queue.close_request.close is closecodes.SLOW_CONSUMER


# -- the room layer knows no socket --------------------------------------------------------

FORBIDDEN_MODULES = {"trio_websocket", "wsproto", "socket", "os", "ssl"}
FORBIDDEN_NAMES = {"_stream", "_stream_lock", "Lock", "StrictFIFOLock", "fileno", "SocketStream"}


def test_rooms_import_no_socket_websocket_or_lock() -> None:
    rooms = Path(__file__).resolve().parents[2] / "src" / "civicrealtime" / "rooms"
    for path in sorted(rooms.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = {(node.module or "").split(".")[0]}
            elif isinstance(node, ast.ImportFrom):
                # Relative: nothing from the transport.
                assert not (node.module or "").startswith(("transport", ".transport")), path
                modules = set()
            else:
                modules = set()
            assert not modules & FORBIDDEN_MODULES, (path.name, modules)
            if isinstance(node, ast.Attribute):
                assert node.attr not in FORBIDDEN_NAMES, (path.name, node.attr)
            if isinstance(node, ast.Name):
                assert node.id not in FORBIDDEN_NAMES, (path.name, node.id)
