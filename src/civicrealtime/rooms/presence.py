"""A room's presence (awareness): its states, who owns each client id, and the screening.

Every member may be hostile: a connection changes only the client ids it owns, at most
`awareness.max_client_ids_per_connection` of them, and the room holds at most its bounded
states. A client back after a blip is welcomed back (its own removal, and nudges to the
others) so that nobody stays invisible until the next renewal.

`Presence` is a part of the room, not an actor: the room calls it from its mailbox loop,
and it reaches members only through the room's `Fanout`.
"""

from __future__ import annotations

import logging

from ..config import AwarenessConfig
from ..protocol import AwarenessStates, MalformedMessage
from ..protocol.awareness import AwarenessEntry, decode_awareness_update
from ..protocol.messages import encode_awareness
from ..protocol.wire import WireFrame
from ..stats import Stats
from .fanout import Fanout, send_error
from .member import Member
from .relay import RoomRelay

log = logging.getLogger("civicrealtime.room")


class Presence:
    """The awareness of one room; called only from the room's task."""

    def __init__(
        self,
        *,
        key: str,
        config: AwarenessConfig,
        fanout: Fanout,
        relay: RoomRelay,
        stats: Stats,
    ) -> None:
        self._key = key
        self._config = config
        self._fanout = fanout
        self._relay = relay
        self._stats = stats
        self.states = AwarenessStates(
            max_states=config.max_room_states,
            max_bytes=config.max_room_bytes,
            max_departed=4 * config.max_room_states,
        )
        # The local member that owns each awareness client id (see `_screen`).
        self._owners: dict[int, Member] = {}
        # Awareness client ids other nodes published, by node: removed if the node dies.
        self._remote: dict[str, set[int]] = {}

    def everyone(self) -> bytes | None:
        """Every state the room holds, as a frame (a joiner's, or a query's answer)."""
        states = self.states.encode_all()
        return encode_awareness(states) if states is not None else None

    def left(self, member: Member) -> None:
        """The member's states go, for everyone here and on other nodes."""
        for client_id in member.awareness_ids:
            if self._owners.get(client_id) is member:
                del self._owners[client_id]
        # At most `awareness.max_client_ids_per_connection` ids: a bounded removal.
        removal = self.states.remove(member.awareness_ids)
        if removal is not None:
            frame = encode_awareness(removal)
            self._fanout.broadcast(frame)
            self._relay.local_awareness(self._key, frame)  # other nodes' clients see it too
        if not self._fanout.members:
            self.states.forget_clocks()

    def from_member(
        self, member: Member, entries: tuple[AwarenessEntry, ...], frame: bytes
    ) -> None:
        """Apply what this member may change, relay what changed, refuse the rest.

        The frame was bounded by the session (entries, bytes); the work here is one pass
        over it, and what is relayed is bounded by the ids the member owns.
        """
        accepted, claims, refusal = self._screen(member, entries)
        change = self.states.apply(accepted)
        for client_id in claims:
            if client_id in change.updated or client_id in change.removed:
                self._own(member, client_id)
        if change.refused:
            self._stats.awareness_refused["room_full"] += len(change.refused)
            refusal = refusal or (
                "the room holds all the presence it may "
                f"({self._config.max_room_states} states, "
                f"{self._config.max_room_bytes} bytes)"
            )
        if change.changed:
            changed = change.updated | change.removed
            if len(accepted) == len(entries) == len(changed):
                relayed = frame  # the usual case: the sender's own change, as it sent it
            else:
                # Only what changed, at its final clock: never more than the ids this
                # member owns, however large the frame it came in.
                relayed = encode_awareness(self.states.encode_current(changed))
            # To everyone, the sender included: a lone y-websocket client must hear
            # something within 30 s or it drops the connection and reconnects.
            self._fanout.broadcast(WireFrame(relayed))
            self._relay.local_awareness(self._key, relayed)
        if refusal is not None:
            self._refuse(member, refusal)
        first, member.awareness_seen = not member.awareness_seen, True
        # A returning y-websocket client opens with its own state alone. Anything else
        # outranked is an echo: every client sends back what it applies, and echoes of a
        # state that has just left would otherwise each set off a wave.
        if first and len(entries) == 1 and change.outranked:
            returning = frozenset(
                cid for cid in change.outranked if self._owner(cid) in (None, member)
            )
            if returning:
                self._welcome_back(member, returning)

    def from_node(self, node: str, awareness: bytes) -> None:
        """Another node's clients' presence, bounded like local ones; never published again."""
        try:
            entries = decode_awareness_update(awareness)
        except MalformedMessage as exc:
            log.warning("node.bad_awareness room=%s node=%s error=%s", self._key, node, exc)
            return
        # Bounded like local ones: states past the room's bounds are not held here.
        change = self.states.apply(entries)
        ids = self._remote.setdefault(node, set())
        ids.update(change.updated)
        ids.difference_update(change.removed)
        if change.changed:
            # What this room holds: entries past its bounds are not shown here either.
            shown = (
                awareness
                if not change.refused
                else self.states.encode_current(change.updated | change.removed)
            )
            self._fanout.broadcast(encode_awareness(shown))
        if change.outranked:
            # A client came back on that node with the clock it had before this node
            # removed it (it moved here from a node that died, or that node never had the
            # room open). Send the removal back: that node tells the client, which then
            # raises its clock past it and is shown everywhere again.
            removals = self.states.removals(change.outranked)
            if removals is not None:
                self._relay.local_awareness(self._key, encode_awareness(removals))

    def node_gone(self, node: str) -> None:
        """The node's heartbeat expired: its clients' states go."""
        # At most `awareness.max_room_states` ids: the room holds no more states.
        removal = self.states.remove(self._remote.pop(node, set()))
        if removal is not None:
            self._fanout.broadcast(encode_awareness(removal))

    def _screen(
        self, member: Member, entries: tuple[AwarenessEntry, ...]
    ) -> tuple[list[AwarenessEntry], set[int], str | None]:
        """The entries this member may apply, the ids it claims, and why any was refused.

        A connection changes only the client ids it owns: each id it published a state for
        while nobody else owned it, up to `max_client_ids_per_connection`. Another
        connection of the same user may take an id over (a client back after a blip whose
        old socket the server has not noticed dying yet). Entries for ids someone else owns
        that could change nothing are echoes: y-websocket clients send back every update
        they apply, including their own 30 s timeout of another client (a removal at the
        clock the room holds, which y-protocols would apply). Those are dropped quietly;
        a newer clock for someone else's id is refused and counted.
        """
        limit = self._config.max_client_ids_per_connection
        owned = member.awareness_ids
        accepted: list[AwarenessEntry] = []
        claims: set[int] = set()
        refusal: str | None = None
        for entry in entries:
            client_id = entry.client_id
            if client_id in owned or client_id in claims:
                accepted.append(entry)
                continue
            newer = entry.clock > self.states.clock_of(client_id)
            owner = self._owner(client_id)
            mine = owner is None or (
                isinstance(owner, Member) and owner.identity.user_id == member.identity.user_id
            )
            if not mine:
                if newer:
                    self._stats.awareness_refused["foreign_client"] += 1
                    refusal = refusal or f"client id {client_id} belongs to another connection"
                continue
            if not newer:
                # No change under the clock rule; a state still goes through, so that a
                # returning client's outranked state is noticed (`_welcome_back`). A
                # removal of what it does not own is an echo (or a timeout): dropped.
                if entry.state != "null":
                    accepted.append(entry)
                continue
            if owner is None and entry.state == "null":
                continue  # nobody holds that state: nothing to remove
            if len(owned) + len(claims) >= limit:
                self._stats.awareness_refused["client_id_limit"] += 1
                refusal = refusal or f"a connection may publish at most {limit} client ids"
                continue
            claims.add(client_id)
            accepted.append(entry)
        return accepted, claims, refusal

    def _owner(self, client_id: int) -> Member | str | None:
        """The local member, or the other node, whose client holds this id; None: nobody."""
        owner = self._owners.get(client_id)
        if owner is not None:
            return owner
        for node, ids in self._remote.items():
            if client_id in ids:
                return node
        return None

    def _own(self, member: Member, client_id: int) -> None:
        previous = self._owners.get(client_id)
        if previous is not None and previous is not member:
            previous.awareness_ids.discard(client_id)
        self._owners[client_id] = member
        member.awareness_ids.add(client_id)

    def _refuse(self, member: Member, detail: str) -> None:
        """Tell an opted-in member once; never relayed, never applied."""
        if member.told_awareness_refused:
            return
        member.told_awareness_refused = True
        log.info(
            "awareness.refused room=%s conn=%s user=%s detail=%s",
            self._key,
            member.conn_id,
            member.identity.user_id,
            detail,
        )
        send_error(member, "AWARENESS_REFUSED", "presence change refused: " + detail)

    def _welcome_back(self, member: Member, returning: frozenset[int]) -> None:
        """A client is back (after a blip) with the awareness clock it had before we removed it.

        Without help it stays invisible to the others, and they to it, until the next
        renewal 15 s later (yjs/y-websocket#122). Its own removal makes it raise its clock
        and announce itself again; each client whose state it last saw at the current clock
        is asked to do the same, so the returning client sees it again too.
        """
        removals = self.states.removals(returning)
        if removals is not None:
            member.outbound.push(encode_awareness(removals))
        stale = self.states.unchanged_since_removal(returning)
        if not stale:
            return
        for other in self._fanout.members.values():
            # A y-websocket client publishes its own state only; a member that published
            # several ids is not nudged (its echo of a foreign removal would remove that id).
            if other is member or len(other.awareness_ids) != 1:
                continue
            (own,) = other.awareness_ids
            if own in stale:
                nudge = self.states.nudge(own)
                if nudge is not None:
                    other.outbound.push(encode_awareness(nudge))
