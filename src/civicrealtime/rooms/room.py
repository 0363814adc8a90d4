"""A room actor: one mailbox loop, the only code that touches its document and awareness.

Connection tasks send `Join`, `Leave` and `FromClient` messages; the room answers by
pushing frames into members' outbound queues, never waiting on a socket. Timers (grace
period before eviction, the stale-connection sweep) are cancel scopes in the room's own
nursery. The manager supervises the room: an exception here closes this room's members
with 4500 and touches nothing else.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import trio
from pycrdt import Doc

from ..config import RealtimeConfig
from ..protocol import (
    AwarenessReceived,
    AwarenessStates,
    CloseCode,
    InvalidUpdate,
    MalformedMessage,
    QueryAwarenessReceived,
    SyncStep1Received,
    UpdateReceived,
    close_reason,
    diff_update,
)
from ..protocol import control as control_frames
from ..protocol.awareness import decode_awareness_update
from ..protocol.document import YDocument
from ..protocol.messages import (
    encode_awareness,
    encode_permission_denied,
    encode_sync_step1,
    encode_sync_step2,
    encode_sync_update,
)
from ..protocol.updates import adds_structs, decode_state_vector
from ..protocol.wire import WireFrame
from ..stats import Stats
from .hooks import RoomHooks, SnapshotFailed
from .member import Member
from .messages import FromClient, FromNode, Join, Leave, NodeGone, RoomMessage, TakeSnapshot
from .relay import NoRelay, RoomRelay
from .types import RoomType

log = logging.getLogger("civicrealtime.room")

EMPTY_UPDATE = b"\x00\x00"


class Room:
    def __init__(
        self,
        *,
        key: str,
        config: RealtimeConfig,
        hooks: RoomHooks,
        room_type: RoomType,
        relay: RoomRelay | None = None,
        mailbox_sender: trio.MemorySendChannel[RoomMessage] | None = None,
        mailbox: trio.MemoryReceiveChannel[RoomMessage],
        on_empty: Callable[[Room], None],
        on_join: Callable[[Room], None],
        stats: Stats | None = None,
    ) -> None:
        self.key = key
        self._stats = stats if stats is not None else Stats()
        self._config = config
        self._hooks = hooks
        self._type = room_type
        self._relay: RoomRelay = relay if relay is not None else NoRelay()
        self._mailbox_sender = mailbox_sender
        # Awareness client ids other nodes published, by node: removed if the node dies.
        self._remote_awareness: dict[str, set[int]] = {}
        self.room_id = key.partition(":")[2]
        # Snapshot bookkeeping: updates received since the last snapshot, and a trigger.
        self._unsnapshotted = 0
        self._snapshot_wanted = trio.Event()
        self.snapshots_taken = 0
        self._mailbox = mailbox
        self._on_empty = on_empty
        self._on_join = on_join
        self.awareness = AwarenessStates()
        self.members: dict[int, Member] = {}
        # What each transaction changed, collected by the document's observer.
        self._applied: list[bytes] = []
        self.document = YDocument(label=key, on_change=self._applied.append)
        self._grace_scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self._stop_scope = trio.CancelScope()
        self.stopping_reason: CloseRequestReason | None = None
        self.updates_applied = 0
        # Encoded size, estimated: exact at load, then grown by each applied change.
        self.size_estimate = 0
        self._size_warned = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load (or seed), then serve the mailbox until stopped; persist on the way out.

        Errors propagate to the manager's supervisor: a load that fails refuses joiners
        (4500) instead of serving a blank document. A stop request (eviction, shutdown)
        ends the loop; the last snapshot then runs shielded under the shutdown deadline.
        """
        await self._hydrate()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                # The first joiner holds a pending join; should it never arrive, the room
                # must still go away, so the grace period starts now.
                self._arm_grace()
                if self._config.connection_cleanup.enabled:
                    nursery.start_soon(self._sweep_stale)
                if self._hooks.persistent and self._config.snapshots.enabled:
                    nursery.start_soon(self._snapshotter)
                with self._stop_scope:
                    async for message in self._mailbox:
                        self._handle(message)
                        # What is queued already, without a checkpoint per message.
                        for _ in range(255):
                            try:
                                queued = self._mailbox.receive_nowait()
                            except (trio.WouldBlock, trio.EndOfChannel):
                                break
                            self._handle(queued)
                nursery.cancel_scope.cancel()
        finally:
            # Senders to a room that is gone get BrokenResourceError instead of waiting.
            self._mailbox.close()
            # pycrdt holds the observer from Rust, a cycle the garbage collector cannot see:
            # without this, every evicted room stayed in memory.
            self.document.close()
            with trio.CancelScope(shield=True), trio.move_on_after(self._config.shutdown_timeout):
                await self._retire()

    async def _hydrate(self) -> None:
        """Stored state, else the room type's seed; exactly once, before anyone syncs."""
        started = time.perf_counter()
        stored = list(await self._hooks.load(self.key))
        if self._mailbox_sender is not None:
            # Updates other nodes published that the shared store may not hold yet.
            stored += await self._relay.opened(self.key, self._mailbox_sender.clone())
        for update in stored:
            try:
                self._apply_to_document(update)
            except InvalidUpdate as exc:
                log.warning("room.bad_stored_update room=%s error=%s", self.key, exc)
        self._applied.clear()
        seeded = False
        if not stored and self.doc.get_update() == EMPTY_UPDATE:
            # A room with history is never re-seeded: duplicated content after a restart
            # is the classic failure of servers that seed whenever the document looks empty.
            await self._type.seed(self.room_id, self.doc)
            seeded = self.doc.get_update() != EMPTY_UPDATE
            # The seed was written into the Doc directly, not through `apply`.
            self.document.reindex()
            if seeded:
                # The seed is the room's first state: persist it like an edit.
                for update in self._applied:
                    self._hooks.received(self.key, update)
                self._unsnapshotted += len(self._applied)
            self._applied.clear()
        self.size_estimate = len(self.doc.get_update())
        load_seconds = time.perf_counter() - started
        self._stats.observe_hydration(load_seconds)
        log.info(
            "room.hydrated room=%s source=%s updates=%d load_ms=%.1f size=%d",
            self.key,
            "store" if stored else ("seed" if seeded else "empty"),
            len(stored),
            load_seconds * 1000,
            self.size_estimate,
        )

    async def _retire(self) -> None:
        """The last snapshot before the room leaves memory (eviction or shutdown)."""
        self._relay.closed(self.key)
        if (
            self._hooks.persistent
            and self._config.snapshots.enabled
            and (self._unsnapshotted or self._hooks.unflushed(self.key))
        ):
            await self._take_snapshot(why="retire")
        self._hooks.forget(self.key)

    async def _admin_snapshot(self, reply: trio.MemorySendChannel[bool]) -> None:
        before = self.snapshots_taken
        await self._take_snapshot(why="admin")
        with reply:
            reply.send_nowait(self.snapshots_taken > before)

    async def _snapshotter(self) -> None:
        """Snapshot every `snapshots.interval` seconds when changed, or after `max_updates`."""
        interval = self._config.snapshots.interval
        while True:
            with trio.move_on_after(interval if interval > 0 else math.inf):
                await self._snapshot_wanted.wait()
            if self._unsnapshotted:
                await self._take_snapshot(why="trigger")

    async def _take_snapshot(self, *, why: str) -> None:
        # State and mark are captured together, with no checkpoint in between: the
        # snapshot then covers exactly the updates received so far.
        if not self._relay.snapshot_allowed(self.key):
            # Another node holds this room's snapshot lease; its log has our updates. The
            # trigger is re-armed, or the snapshotter would spin on a set event.
            self._snapshot_wanted = trio.Event()
            return
        state = self.doc.get_update()
        mark = self._hooks.mark(self.key)
        taken = self._unsnapshotted
        self._unsnapshotted = 0
        self._snapshot_wanted = trio.Event()
        started = time.perf_counter()
        try:
            await self._hooks.snapshot(self.key, state, received=mark)
        except SnapshotFailed as exc:
            self._unsnapshotted += taken
            log.warning("snapshot.failed room=%s why=%s error=%s", self.key, why, exc)
            return
        self.snapshots_taken += 1
        self.size_estimate = len(state)
        self._relay.snapshot_written(self.key)
        log.info(
            "snapshot.written room=%s why=%s bytes=%d updates=%d ms=%.1f",
            self.key,
            why,
            len(state),
            taken,
            (time.perf_counter() - started) * 1000,
        )
        try:
            await self._type.on_snapshot(self.room_id, self.doc)
        except Exception:
            # A draft that cannot be written never breaks editing or the binary snapshot.
            log.exception("room_type.on_snapshot_failed room=%s", self.key)
            self._stats.on_snapshot_failures += 1

    def stop(self, reason: CloseRequestReason) -> None:
        """Stop serving: close members with the reason's code, then leave the loop."""
        if self.stopping_reason is not None:
            return
        self.stopping_reason = reason
        for member in list(self.members.values()):
            self._send_error(member, reason.error_code, reason.message)
            member.outbound.close(reason.close_code, reason.close_reason, flush=True)
        self._stop_scope.cancel()

    def abort_members(self, reason: CloseRequestReason) -> None:
        """After a crash: tell every member and close them; no other state is trusted."""
        for member in list(self.members.values()):
            self._send_error(member, reason.error_code, reason.message)
            member.outbound.close(reason.close_code, reason.close_reason, flush=True)

    @property
    def holds_unwritten_updates(self) -> bool:
        """Updates not yet durable that eviction could lose (the store is failing)."""
        return self._hooks.must_stay(self.key)

    # -- the mailbox -------------------------------------------------------------------------

    def _handle(self, message: RoomMessage) -> None:
        match message:
            case FromClient(member=member, event=event):
                if member.conn_id in self.members:
                    self._on_client_event(member, event)
            case Join(member=member):
                self._join(member)
            case Leave(member=member):
                self._leave(member)
            case FromNode(node=node, update=update, awareness=awareness):
                self._from_node(node, update, awareness)
            case NodeGone(node=node):
                removal = self.awareness.remove(self._remote_awareness.pop(node, set()))
                if removal is not None:
                    self._broadcast(encode_awareness(removal), exclude=None)
            case TakeSnapshot(reply=reply):
                if self._nursery is not None:
                    self._nursery.start_soon(self._admin_snapshot, reply)

    def _join(self, member: Member) -> None:
        self.members[member.conn_id] = member
        self._cancel_grace()
        self._on_join(self)
        out = member.outbound
        if self._config.protocol.control_frames:
            out.push(control_frames.connection_ack(self.key, member.client_id))
        out.push(encode_sync_step1(self.doc.get_state()))
        out.push(encode_sync_step2(self.doc.get_update()))
        everyone = self.awareness.encode_all()
        if everyone is not None:
            out.push(encode_awareness(everyone))

    def _leave(self, member: Member) -> None:
        if self.members.pop(member.conn_id, None) is None:
            return
        removal = self.awareness.remove(member.awareness_ids)
        if removal is not None:
            frame = encode_awareness(removal)
            self._broadcast(frame, exclude=None)
            self._relay.local_awareness(self.key, frame)  # other nodes' clients see it too
        if not self.members:
            self.awareness.forget_clocks()
            self._arm_grace()

    def _on_client_event(self, member: Member, event: object) -> None:
        match event:
            case UpdateReceived(update=update, is_step2=is_step2):
                if member.can_edit:
                    self._apply(member, update)
                else:
                    self._refuse_viewer_update(member, update, is_step2=is_step2)
            case SyncStep1Received(state_vector=sv):
                try:
                    member.outbound.push(encode_sync_step2(diff_update(self.doc, sv)))
                except InvalidUpdate as exc:
                    self._reject(member, str(exc))
            case AwarenessReceived(entries=entries, frame=frame):
                if not member.may_publish_awareness:
                    return
                change = self.awareness.apply(entries)
                member.awareness_ids.update(change.updated)
                member.awareness_ids.difference_update(change.removed)
                if change.changed:
                    # To everyone, the sender included: a lone y-websocket client must hear
                    # something within 30 s or it drops the connection and reconnects.
                    self._broadcast(WireFrame(frame), exclude=None)
                    self._relay.local_awareness(self.key, frame)
                first, member.awareness_seen = not member.awareness_seen, True
                # A returning y-websocket client opens with its own state alone. Anything
                # else outranked is an echo: every client sends back what it applies, and
                # echoes of a state that has just left would otherwise each set off a wave.
                if first and len(entries) == 1 and change.outranked:
                    self._welcome_back(member, change.outranked)
            case QueryAwarenessReceived():
                everyone = self.awareness.encode_all()
                if everyone is not None:
                    member.outbound.push(encode_awareness(everyone))

    def _welcome_back(self, member: Member, returning: frozenset[int]) -> None:
        """A client is back (after a blip) with the awareness clock it had before we removed it.

        Without help it stays invisible to the others, and they to it, until the next
        renewal 15 s later (yjs/y-websocket#122). Its own removal makes it raise its clock
        and announce itself again; each client whose state it last saw at the current clock
        is asked to do the same, so the returning client sees it again too.
        """
        removals = self.awareness.removals(returning)
        if removals is not None:
            member.outbound.push(encode_awareness(removals))
        stale = self.awareness.unchanged_since_removal(returning)
        if not stale:
            return
        for other in self.members.values():
            # A y-websocket client publishes its own state only; a member that published
            # several ids is not nudged (its echo of a foreign removal would remove that id).
            if other is member or len(other.awareness_ids) != 1:
                continue
            (own,) = other.awareness_ids
            if own in stale:
                nudge = self.awareness.nudge(own)
                if nudge is not None:
                    other.outbound.push(encode_awareness(nudge))

    def _refuse_viewer_update(self, member: Member, update: bytes, *, is_step2: bool) -> None:
        """A read-only member's change is never applied nor relayed; it is told once.

        y-websocket answers our step 1 with a step 2 even when it has nothing new (it then
        carries only the delete set we sent): that is not an edit and gets no error.
        """
        if update == EMPTY_UPDATE:
            return
        try:
            doc_state = decode_state_vector(self.doc.get_state())
            attempt = not is_step2 or adds_structs(update, doc_state)
        except InvalidUpdate as exc:
            self._reject(member, str(exc))
            return
        if not attempt or member.told_read_only:
            return
        member.told_read_only = True
        log.info(
            "edit.denied room=%s conn=%s user=%s",
            self.key,
            member.conn_id,
            member.identity.user_id,
        )
        if self._config.protocol.control_frames:
            self._send_error(member, "PERMISSION_DENIED", "read-only access: changes are not saved")
        else:
            member.outbound.push(encode_permission_denied("read-only access"))

    def _apply(self, member: Member, update: bytes) -> None:
        limit = self._config.rooms.max_document_bytes
        if self.size_estimate + len(update) > limit:
            log.warning(
                "document.too_large room=%s size=%d limit=%d", self.key, self.size_estimate, limit
            )
            self._send_error(
                member, "DOCUMENT_TOO_LARGE", f"the document reached its limit of {limit} bytes"
            )
            return
        try:
            self._apply_to_document(update)
        except InvalidUpdate as exc:
            self._applied.clear()
            self._reject(member, str(exc))
            return
        # The observer collected what the transaction actually changed: duplicates and
        # empty step 2 answers change nothing and are not relayed.
        changed = False
        for applied in self._applied:
            if applied == EMPTY_UPDATE:
                continue
            changed = True
            self.updates_applied += 1
            self._stats.updates_applied += 1
            self.size_estimate += len(applied)
            self._broadcast(WireFrame(encode_sync_update(applied)), exclude=member)
        self._applied.clear()
        if changed or self._is_pending(update):
            # The raw update, as received: one whose dependencies are missing waits inside
            # pycrdt and is absent from get_update(), so only the raw bytes keep it.
            self._hooks.received(self.key, update)
            self._relay.local_update(self.key, update)
            self._unsnapshotted += 1
            if self._unsnapshotted >= self._config.snapshots.max_updates:
                self._snapshot_wanted.set()
        if not self._size_warned and self.size_estimate > self._config.rooms.document_warn_bytes:
            self._size_warned = True
            log.warning("document.large room=%s size=%d", self.key, self.size_estimate)

    def _from_node(self, node: str, update: bytes | None, awareness: bytes | None) -> None:
        """Apply another node's traffic and fan it out locally; never publish it again."""
        if update is not None:
            try:
                self._apply_to_document(update)
            except InvalidUpdate as exc:
                self._applied.clear()
                log.warning("node.bad_update room=%s node=%s error=%s", self.key, node, exc)
                return
            for applied in self._applied:
                if applied != EMPTY_UPDATE:
                    self.size_estimate += len(applied)
                    self._broadcast(encode_sync_update(applied), exclude=None)
            self._applied.clear()
            # The origin node logs it; this node's snapshots include it through the doc.
            self._unsnapshotted += 1
            if self._unsnapshotted >= self._config.snapshots.max_updates:
                self._snapshot_wanted.set()
        if awareness is not None:
            try:
                entries = decode_awareness_update(awareness)
            except MalformedMessage as exc:
                log.warning("node.bad_awareness room=%s node=%s error=%s", self.key, node, exc)
                return
            change = self.awareness.apply(entries)
            ids = self._remote_awareness.setdefault(node, set())
            ids.update(change.updated)
            ids.difference_update(change.removed)
            if change.changed:
                self._broadcast(encode_awareness(awareness), exclude=None)
            if change.outranked:
                # A client came back on that node with the clock it had before this node
                # removed it (it moved here from a node that died, or that node never had the
                # room open). Send the removal back: that node tells the client, which then
                # raises its clock past it and is shown everywhere again.
                removals = self.awareness.removals(change.outranked)
                if removals is not None:
                    self._relay.local_awareness(self.key, encode_awareness(removals))

    def _is_pending(self, update: bytes) -> bool:
        try:
            return adds_structs(update, decode_state_vector(self.doc.get_state()))
        except InvalidUpdate:
            return False

    @property
    def doc(self) -> Doc[Any]:
        """The room's pycrdt document: read it when used, a contained split replaces it."""
        return self.document.doc

    def _apply_to_document(self, update: bytes) -> None:
        """Apply through `YDocument`, which splits characters as Yjs does; count it."""
        contained = self.document.apply(update)
        if contained:
            self._stats.text_splits += contained
            log.warning("text.split room=%s characters=%d", self.key, contained)

    def _broadcast(self, frame: bytes | WireFrame, exclude: Member | None) -> None:
        # One encoding, the same bytes object queued for every member.
        delivered = 0
        for member in list(self.members.values()):
            if member is not exclude and member.outbound.push(frame):
                delivered += 1
        self._stats.fanout_deliveries += delivered

    def _reject(self, member: Member, detail: str) -> None:
        log.info("message.invalid room=%s conn=%s detail=%s", self.key, member.conn_id, detail)
        self._send_error(member, "INVALID_MESSAGE", "message rejected: " + detail)

    def _send_error(self, member: Member, code: str, message: str) -> None:
        if self._config.protocol.control_frames:
            member.outbound.push(control_frames.error_frame(code, message))

    # -- timers ------------------------------------------------------------------------------

    def _arm_grace(self) -> None:
        if self._nursery is None or self.stopping_reason is not None:
            return
        self._cancel_grace()
        self._nursery.start_soon(self._grace_timer)

    def _cancel_grace(self) -> None:
        if self._grace_scope is not None:
            self._grace_scope.cancel()
            self._grace_scope = None

    async def _grace_timer(self) -> None:
        with trio.CancelScope() as scope:
            self._grace_scope = scope
            # Repeats: a room holding updates not yet durable is not evicted, and asks
            # again after another grace period.
            while True:
                await trio.sleep(self._config.rooms.grace_seconds)
                if self._grace_scope is not scope or self.members:
                    return
                self._on_empty(self)

    async def _sweep_stale(self) -> None:
        """Close members that sent nothing (not even a pong) for `stale_threshold`."""
        cleanup = self._config.connection_cleanup
        while True:
            await trio.sleep(cleanup.check_interval)
            deadline = trio.current_time() - cleanup.stale_threshold
            for member in list(self.members.values()):
                if member.last_seen < deadline:
                    log.info("connection.stale room=%s conn=%s", self.key, member.conn_id)
                    member.outbound.close(
                        CloseCode.GOING_AWAY, close_reason("STALE_CONNECTION"), flush=False
                    )


class CloseRequestReason:
    """Why a room closes its members: the error frame and the close frame they get."""

    __slots__ = ("close_code", "close_reason", "error_code", "message")

    def __init__(self, *, close_code: int, error_code: str, message: str) -> None:
        self.close_code = close_code
        self.error_code = error_code
        self.message = message
        self.close_reason = close_reason(error_code)


SHUTDOWN = CloseRequestReason(
    close_code=CloseCode.SHUTTING_DOWN,
    error_code="SERVER_SHUTTING_DOWN",
    message="server restarting",
)
EVICTED = CloseRequestReason(
    close_code=CloseCode.TRY_AGAIN_LATER, error_code="ROOM_EVICTED", message="room evicted"
)
CLOSED_BY_ADMIN = CloseRequestReason(
    close_code=CloseCode.SHUTTING_DOWN,
    error_code="ROOM_CLOSED",
    message="room closed; reconnecting",
)
CRASHED = CloseRequestReason(
    close_code=CloseCode.ROOM_FAILED, error_code="UNKNOWN_ERROR", message="room failed; reconnect"
)
