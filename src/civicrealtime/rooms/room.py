"""A room actor: one mailbox loop, the only code that touches its document and awareness.

Connection tasks send `Join`, `Leave` and `FromClient` messages; the room answers by
pushing frames into members' outbound queues, never waiting on a socket. Timers (grace
period before eviction, the stale-connection sweep) are cancel scopes in the room's own
nursery. The manager supervises the room: an exception here closes this room's members
with 4500 and touches nothing else. Its parts (presence, held updates, snapshots, fan-out,
refusals, timers, the "saved" acknowledgement) live in the modules beside this one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import trio
from pycrdt import Doc

from ..config import RealtimeConfig
from ..protocol import (
    AwarenessReceived,
    AwarenessStates,
    InvalidUpdate,
    QueryAwarenessReceived,
    SyncStep1Received,
    UpdateReceived,
    diff_update,
)
from ..protocol import control as control_frames
from ..protocol.document import YDocument
from ..protocol.messages import encode_sync_step1, encode_sync_step2, encode_sync_update
from ..protocol.updates import EMPTY_UPDATE
from ..protocol.wire import WireFrame
from ..stats import Stats
from .fanout import CloseRequestReason, Fanout, send_error
from .hooks import RoomHooks
from .member import Member
from .messages import (
    EditResult,
    FromClient,
    FromClientBatch,
    FromNode,
    Join,
    Leave,
    NodeGone,
    RoomMessage,
    ServerEdit,
    TakeSnapshot,
)
from .origin import SEED_ORIGIN, Origin
from .pending import PendingBudget, PendingUpdates, waits
from .presence import Presence
from .refusals import refuse_viewer_update, reject
from .relay import NoRelay, RoomRelay
from .saving import Durable, Saving
from .snapshots import Snapshots
from .timers import GraceTimer, sweep_stale
from .types import RoomType

log = logging.getLogger("civicrealtime.room")

# Loop time the mailbox loop may spend on queued messages before it lets other tasks run.
MAILBOX_SLICE_SECONDS = 0.01
TOO_LARGE = "DOCUMENT_TOO_LARGE"


class Room:
    """One room's actor: the only owner of its document, its awareness and its members.

    Everything that changes them runs in `run`'s task, one mailbox message at a time: the
    parts it calls (`Presence`, `PendingBudget`, `Snapshots`, `Fanout`) are helpers of
    this task, not actors, and its timers are tasks in its own nursery.

    It must never wait on a member (a delivery is a push into a bounded queue, and a full
    one closes that member), never be changed from a connection's task (they reach it
    through the mailbox only), and never outlive a failure: an exception ends the room
    and its manager closes its members (4500).
    """

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
        self.room_id = key.partition(":")[2]
        self._mailbox = mailbox
        self._on_empty = on_empty
        self._on_join = on_join
        self.members: dict[int, Member] = {}
        self._fanout = Fanout(self.members, self._stats)
        self._presence = Presence(
            key=key,
            config=config.awareness,
            fanout=self._fanout,
            relay=self._relay,
            stats=self._stats,
        )
        # What each transaction changed, collected by the document's observer.
        self._applied: list[bytes] = []
        self.document = YDocument(label=key, on_change=self._applied.append)
        self._snapshots = Snapshots(
            key=key,
            room_id=self.room_id,
            config=config.snapshots,
            hooks=hooks,
            relay=self._relay,
            room_type=room_type,
            document=self.document,
            stats=self._stats,
            on_written=self._snapshot_written,
        )
        # Updates waiting inside pycrdt for changes never received (rooms/pending.py).
        self._pending = PendingBudget(
            key=key,
            config=config.rooms,
            document=self.document,
            applied=self._applied,
            hooks=hooks,
            snapshots=self._snapshots,
            stats=self._stats,
            size=lambda: self.size_estimate,
        )
        self._grace = GraceTimer(config.rooms.grace_seconds, self._grace_over)
        self._nursery: trio.Nursery | None = None
        self._stop_scope = trio.CancelScope()
        self.stopping_reason: CloseRequestReason | None = None
        self.updates_applied = 0
        # Encoded size, estimated: exact at load, then grown by each applied change.
        self.size_estimate = 0
        self._size_warned = False
        # The "saved" acknowledgement (rooms/saving.py), inert without a durable store.
        self._saving = Saving(
            room=self, hooks=hooks, mailbox_sender=mailbox_sender, stats=self._stats
        )

    @property
    def awareness(self) -> AwarenessStates:
        return self._presence.states

    @property
    def pending(self) -> PendingUpdates:
        return self._pending.pending

    @property
    def snapshots_taken(self) -> int:
        return self._snapshots.taken

    @property
    def doc(self) -> Doc[Any]:
        """The room's pycrdt document: read it when used, a contained split replaces it."""
        return self.document.doc

    @property
    def holds_unwritten_updates(self) -> bool:
        """Updates not yet durable that eviction could lose (the store is failing)."""
        return self._hooks.must_stay(self.key)

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load (or seed), then serve the mailbox until stopped; persist on the way out.

        Errors propagate to the manager's supervisor: a load that fails refuses joiners
        (4500) instead of serving a blank document. A stop request (eviction, shutdown)
        ends the loop; the last snapshot then runs shielded under the shutdown deadline.
        """
        try:
            await self._hydrate()
        except BaseException:
            # A room that failed to load (store down, damaged state) is retried by the next
            # joiner with a new Room: this one must not stay in memory (see the observer
            # below), or a client reconnecting to a damaged room leaks one per attempt.
            self._mailbox.close()
            self.pending.clear()
            self.document.reset()
            raise
        try:
            self._saving.watch()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                # The first joiner holds a pending join; should it never arrive, the room
                # must still go away, so the grace period starts now.
                self._arm_grace()
                if self._config.connection_cleanup.enabled:
                    nursery.start_soon(
                        sweep_stale, self.key, self.members, self._config.connection_cleanup
                    )
                if self._snapshots.enabled:
                    nursery.start_soon(self._snapshots.run)
                nursery.start_soon(self._pending.watch)
                with self._stop_scope:
                    async for message in self._mailbox:
                        self._handle(message)
                        # What is queued already, without a checkpoint per message, but
                        # within a slice of loop time: each message's cost is bounded, a
                        # run of 255 costly ones (awareness echoes) must not add up.
                        slice_end = time.perf_counter() + MAILBOX_SLICE_SECONDS
                        for _ in range(255):
                            if time.perf_counter() > slice_end:
                                break
                            try:
                                queued = self._mailbox.receive_nowait()
                            except (trio.WouldBlock, trio.EndOfChannel):
                                break
                            self._handle(queued)
                nursery.cancel_scope.cancel()
        finally:
            self._saving.unwatch()
            # Senders to a room that is gone get BrokenResourceError instead of waiting.
            self._mailbox.close()
            # pycrdt holds the observer from Rust, a cycle the garbage collector cannot see:
            # without this, every evicted room stayed in memory.
            self.document.close()
            with trio.CancelScope(shield=True), trio.move_on_after(self._config.shutdown_timeout):
                await self._retire()
            with trio.CancelScope(shield=True):
                await self._pending.release()

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
        self._pending.hold_stored(stored)
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
                    self._hooks.received(self.key, update, SEED_ORIGIN)
                self._snapshots.changed(len(self._applied), trigger=False)
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
        await self._snapshots.last()
        self._hooks.forget(self.key)

    def _snapshot_written(self, size: int) -> None:
        self.size_estimate = size  # exact again

    def stop(self, reason: CloseRequestReason) -> None:
        """Stop serving: close members with the reason's code, then leave the loop."""
        if self.stopping_reason is not None:
            return
        self.stopping_reason = reason
        self._fanout.close_all(reason)
        self._stop_scope.cancel()

    def abort_members(self, reason: CloseRequestReason) -> None:
        """After a crash: tell every member and close them; no other state is trusted."""
        self._fanout.close_all(reason)

    # -- the mailbox -------------------------------------------------------------------------

    def _handle(self, message: RoomMessage) -> None:
        match message:
            case FromClient(member=member, event=event):
                if member.conn_id in self.members:
                    self._on_client_event(member, event)
            case FromClientBatch(member=member, events=events):
                for event in events:
                    if member.conn_id in self.members:  # not heard once it left
                        self._on_client_event(member, event)
            case Join(member=member):
                self._join(member)
            case Leave(member=member):
                self._leave(member)
            case FromNode(node=node, update=update, awareness=awareness):
                self._from_node(node, update, awareness)
            case NodeGone(node=node):
                self._presence.node_gone(node)
            case TakeSnapshot(reply=reply):
                if self._nursery is not None:
                    self._nursery.start_soon(self._snapshots.answer, reply)
            case ServerEdit():
                self._server_edit(message)
            case Durable():
                self._saving.durable(message)

    def _join(self, member: Member) -> None:
        self.members[member.conn_id] = member
        self._grace.cancel()
        self._on_join(self)
        out = member.outbound
        if member.control_frames:
            out.push(control_frames.connection_ack(self.key, member.client_id))
        out.push(encode_sync_step1(self.doc.get_state()))
        out.push(encode_sync_step2(self.doc.get_update()))
        everyone = self._presence.everyone()
        if everyone is not None:
            out.push(everyone)

    def _leave(self, member: Member) -> None:
        if self.members.pop(member.conn_id, None) is None:
            return
        self._saving.leave(member.conn_id)
        self._presence.left(member)
        if not self.members:
            self._arm_grace()

    def _on_client_event(self, member: Member, event: object) -> None:
        match event:
            case UpdateReceived(update=update, is_step2=is_step2):
                if member.can_edit:
                    self._saving.apply(member, update, self._apply)
                else:
                    refuse_viewer_update(self.key, member, update, self.doc, is_step2=is_step2)
            case SyncStep1Received(state_vector=sv):
                try:
                    member.outbound.push(encode_sync_step2(diff_update(self.doc, sv)))
                except InvalidUpdate as exc:
                    reject(self.key, member, str(exc))
            case AwarenessReceived(entries=entries, frame=frame):
                if member.may_publish_awareness:
                    self._presence.from_member(member, entries, frame)
            case QueryAwarenessReceived():
                everyone = self._presence.everyone()
                if everyone is not None:
                    member.outbound.push(everyone)

    # -- changes to the document -------------------------------------------------------------

    def _apply(self, member: Member, update: bytes) -> None:
        """A member's update: applied, fanned out to the others, kept, or held if it waits."""
        limit = self._config.rooms.max_document_bytes
        # Pending updates count: yrs holds them in memory though get_state() omits them.
        if self.size_estimate + self.pending.total + len(update) > limit:
            log.warning(
                "document.too_large room=%s size=%d pending=%d limit=%d",
                self.key,
                self.size_estimate,
                self.pending.total,
                limit,
            )
            send_error(
                member, "DOCUMENT_TOO_LARGE", f"the document reached its limit of {limit} bytes"
            )
            return
        try:
            self._apply_to_document(update)
        except InvalidUpdate as exc:
            reject(self.key, member, str(exc))
            return
        changes = self._fan_out_changes(exclude=member, local=True)
        held = self._pending.waiting(update, grown=sum(len(change) for change in changes))
        if held and not self._pending.hold(member, update):
            return  # dropped, and the member closed
        if changes or held:
            # The raw update, as received: one whose dependencies are missing waits inside
            # pycrdt and is absent from get_update(), so only the raw bytes keep it.
            self._keep(update, member.origin)
        if not self._size_warned and self.size_estimate > self._config.rooms.document_warn_bytes:
            self._size_warned = True
            log.warning("document.large room=%s size=%d", self.key, self.size_estimate)

    def _server_edit(self, message: ServerEdit) -> None:
        """An edit made on the server (API, file watcher): kept and fanned out like a client's."""
        limit = self._config.rooms.max_document_bytes
        if self.size_estimate >= limit:
            # As for a client: a document at its limit takes no more changes.
            with message.reply:
                message.reply.send_nowait(
                    EditResult(error=f"{TOO_LARGE}: the document reached {limit} bytes")
                )
            return
        try:
            message.edit(self.document)
        except Exception as exc:
            # The edit validates before it changes anything; should it fail midway, what it
            # changed is still broadcast below, so no member diverges from the document.
            log.exception("edit.failed room=%s actor=%s", self.key, message.actor)
            error: str | None = f"{type(exc).__name__}: {exc}"
        else:
            error = None
        changes = self._fan_out_changes(exclude=None, local=True)
        if changes:
            # A local change bypassed `YDocument.apply`: learn the pairs it wrote.
            self.document.reindex()
        for update in changes:
            self._keep(update, message.origin)
        size = sum(len(update) for update in changes)
        log.info(
            "edit.applied room=%s actor=%s updates=%d bytes=%d",
            self.key,
            message.actor,
            len(changes),
            size,
        )
        with message.reply:
            message.reply.send_nowait(EditResult(updates=len(changes), size=size, error=error))

    def _from_node(self, node: str, update: bytes | None, awareness: bytes | None) -> None:
        """Apply another node's traffic and fan it out locally; never publish it again."""
        if update is not None:
            try:
                self._apply_to_document(update)
            except InvalidUpdate as exc:
                log.warning("node.bad_update room=%s node=%s error=%s", self.key, node, exc)
                return
            self._fan_out_changes(exclude=None, local=False)
            if waits(update, self.doc.get_state()):
                self._pending.hold(None, update)
            # The origin node logs it; this node's snapshots include it through the doc.
            self._snapshots.changed()
        if awareness is not None:
            self._presence.from_node(node, awareness)

    def _apply_to_document(self, update: bytes) -> None:
        """Apply through `YDocument`, which splits characters as Yjs does; count it.

        Raises `InvalidUpdate` (the document is unchanged, nothing is left collected).
        """
        try:
            contained = self.document.apply(update)
        except InvalidUpdate:
            self._applied.clear()
            raise
        if contained:
            self._stats.text_splits += contained
            log.warning("text.split room=%s characters=%d", self.key, contained)

    def _fan_out_changes(self, *, exclude: Member | None, local: bool) -> list[bytes]:
        """What the last transaction changed, encoded once and sent to every member but
        `exclude`; returned. Duplicates and empty step 2 answers change nothing and are not
        sent. `local`: a change made on this node, counted as an update applied here."""
        changes = [update for update in self._applied if update != EMPTY_UPDATE]
        self._applied.clear()
        for update in changes:
            if local:
                self.updates_applied += 1
                self._stats.updates_applied += 1
            self.size_estimate += len(update)
            self._fanout.broadcast(WireFrame(encode_sync_update(update)), exclude)
        return changes

    def _keep(self, update: bytes, origin: Origin) -> None:
        """A change made on this node: stored (attributed to `origin`), published, snapshotted."""
        self._hooks.received(self.key, update, origin)
        self._relay.local_update(self.key, update)
        self._snapshots.changed()

    # -- timers ------------------------------------------------------------------------------

    def _arm_grace(self) -> None:
        if self._nursery is None or self.stopping_reason is not None:
            return
        self._grace.arm(self._nursery)

    def _grace_over(self) -> bool:
        """The grace period passed: an empty room asks to be evicted, then waits again."""
        if self.members:
            return False
        self._on_empty(self)
        return True
