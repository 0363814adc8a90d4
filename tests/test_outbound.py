"""A member's outbound queue: bounded in frames and in bytes, closing with 1013 when full."""

from __future__ import annotations

from civicrealtime.protocol.closecodes import CloseCode
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
