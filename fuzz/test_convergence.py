"""Convergence fuzzing: a hypothesis state machine against the real daemon, as a subprocess.

Clients (Yjs documents speaking y-websocket, `harness.FuzzClient` over `fuzz/oracle.py`)
join two records rooms, edit Y.Text, Y.Map, Y.Array, Y.XmlFragment and the editor's
y-prosemirror fragment with text over all of Unicode (offsets in UTF-16 code units, also
inside surrogate pairs), go offline and keep editing, reconnect and leave, read slowly;
the daemon is restarted (SIGTERM) or killed (SIGKILL); the SQLite store is locked by
another process for a while, so that its writes fail (SQLITE_BUSY). Yjs is the oracle.

Invariants:
- after every quiescence (`settle`: every connected client makes a marker edit and waits
  for everybody's markers, bounded), all connected clients of a room and a fresh Yjs
  joiner (what the daemon serves) have identical state: state vectors and every shared
  type, read by Yjs;
- every frame the daemon sends a client is read and applied by Yjs without error;
- after a restart or a kill, the room's stored rows, applied by Yjs, give the document the
  restarted daemon serves;
- after SIGTERM and restart, every edit the daemon acknowledged is there;
- after SIGKILL and restart, every edit the daemon acknowledged more than
  `flush_ms + COMMIT_SLACK` before the kill is there, unless the store was failing then
  (an edit acknowledged during a store outage must be there once the outage is over and
  the daemon reports nothing left to write);
- no traceback, room crash or connection failure in the daemon's log.

Budget: `CIVICREALTIME_FUZZ_EXAMPLES` (see budget.py) times `EXAMPLE_SCALE` examples of up
to `CIVICREALTIME_FUZZ_STEPS` steps. Replay: see docs/fuzzing.md.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import tempfile
import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import trio
from hypothesis import event, reproduce_failure, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from civicrealtime.persistence import SqliteStore

from .budget import examples, fuzz_settings, steps
from .edits import big_value, edit_ops
from .harness import (
    DaemonProcess,
    EditRecord,
    ExclusiveLock,
    FuzzClient,
    TrioLoop,
    fetch_state,
)
from .oracle import OracleError, YjsOracle, frame_report

ROOMS = ("alpha", "beta")
MAX_CLIENTS = 5
FLUSH_MS = 50
# A flush starts at most flush_ms after an update is received; its commit (one fsync) and
# the scheduling of two busy processes on a small machine take the rest of this margin.
COMMIT_SLACK = 0.15
WINDOW = FLUSH_MS / 1000 + COMMIT_SLACK
# CI: budget.examples() * EXAMPLE_SCALE machines (each starts a daemon: ~0.4 s).
EXAMPLE_SCALE = 0.4
SETTLE_WITHIN = 10.0

# Daemon stops (SIGTERM or SIGKILL) per machine: each restart costs a daemon start.
MAX_STOPS = 2
MAX_OUTAGES = 2

measured: dict[str, list[float]] = {"example_seconds": [], "startup_seconds": []}
slow_readers: Counter[str] = Counter()
lone_halves = [0]  # quiescences at which a Yjs client held a lone half only in memory
self_diverged = [0]  # clients Yjs made diverge by themselves (no update carried it)
torn_frames = [0]  # frames cut short by the daemon, seen by clients (each one a failure)
_spare: list[DaemonProcess] = []
_oracles: list[YjsOracle] = []


def _oracle() -> YjsOracle:
    """The Yjs process, shared by the machines one after the other (each resets it)."""
    if _oracles and not _oracles[0].alive:
        _oracles.pop().close()
    if not _oracles:
        _oracles.append(YjsOracle())
    return _oracles[0]


def _new_daemon() -> DaemonProcess:
    """A daemon in a fresh directory, already started: the next machine's, spawned while
    the current one runs, so that its start-up (~0.5 s, mostly imports) costs nothing."""
    if not _spare:
        _spawn_spare()
    daemon = _spare.pop()
    _spawn_spare()
    daemon.wait_listening()
    return daemon


def _spawn_spare() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="civicrealtime-fuzz-"))
    daemon = DaemonProcess(workdir, flush_ms=FLUSH_MS)
    daemon.spawn()
    _spare.append(daemon)


def _discard_spares() -> None:
    while _spare:
        daemon = _spare.pop()
        daemon.kill()
        shutil.rmtree(daemon.workdir, ignore_errors=True)


class ConvergenceMachine(RuleBasedStateMachine):
    clients = Bundle("clients")

    def __init__(self) -> None:
        super().__init__()
        self.started = time.monotonic()
        self.loop = TrioLoop()
        self.oracle = _oracle()
        self.oracle.reset()
        self.daemon = _new_daemon()
        self.workdir = self.daemon.workdir
        self.stops = 0
        self.dirty = False  # edits since the daemon started: a stop is worth testing
        self.live: list[FuzzClient] = []
        self.everyone: list[FuzzClient] = []
        self.records: list[EditRecord] = []
        self.outages: list[list[float]] = []  # [start, end]; end is inf while open
        self.lock: ExclusiveLock | None = None
        self.counter = 0
        self.violations: list[str] = []

    # -- clients -----------------------------------------------------------------------------

    def _new_client(self, room: str) -> FuzzClient:
        self.counter += 1
        client = FuzzClient(self.loop, self.oracle, f"c{self.counter}", room, 1000 + self.counter)
        self.everyone.append(client)
        self.loop.run(client.connect, self.daemon.url(room))
        self.live.append(client)
        return client

    @initialize(target=clients, rooms=st.lists(st.sampled_from(ROOMS), min_size=1, max_size=3))
    def first_clients(self, rooms: list[str]) -> Any:
        return multiple(*[self._new_client(room) for room in rooms])

    @precondition(lambda self: len(self.live) < MAX_CLIENTS)
    @rule(target=clients, room=st.sampled_from(ROOMS))
    def join(self, room: str) -> FuzzClient:
        return self._new_client(room)

    @rule(client=clients, ops=st.lists(edit_ops, min_size=1, max_size=4))
    def edit(self, client: FuzzClient, ops: list[tuple[Any, ...]]) -> None:
        self._edit([(client, op) for op in ops])

    @rule(
        edits=st.lists(st.tuples(clients, edit_ops), min_size=2, max_size=6),
    )
    def edit_concurrently(self, edits: list[tuple[FuzzClient, tuple[Any, ...]]]) -> None:
        """Several clients edit at once: nobody waits for anybody's edits to arrive."""
        self._edit(edits)

    def _edit(self, edits: list[tuple[FuzzClient, tuple[Any, ...]]]) -> None:
        async def edit() -> None:
            for client, op in edits:
                self.records += await client.edit(op)

        self.loop.run(edit)
        self.dirty = True

    @rule(client=clients, abrupt=st.booleans(), ops=st.lists(edit_ops, max_size=4))
    def go_offline(self, client: FuzzClient, abrupt: bool, ops: list[tuple[Any, ...]]) -> None:
        """Disconnect (a closing handshake, or a reset) and keep editing offline."""
        self.loop.run(partial(client.disconnect, abrupt=abrupt))
        self._edit([(client, op) for op in ops])

    @rule(client=clients)
    def reconnect(self, client: FuzzClient) -> None:
        if not client.online:
            self.loop.run(self._connect, client)

    @rule(client=consumes(clients))
    def leave(self, client: FuzzClient) -> None:
        self.loop.run(client.disconnect)
        self.live.remove(client)

    @rule(
        client=clients,
        burst=st.lists(edit_ops, max_size=10),
        big=st.sampled_from([0, 3, 16]),
        pause=st.sampled_from([0.05, 0.3, 0.8]),
    )
    def slow_reader(
        self, client: FuzzClient, burst: list[tuple[Any, ...]], big: int, pause: float
    ) -> None:
        """The client stops reading while others edit; the daemon may close it with 1013."""
        # Decided from the drawn program only: preconditions must not depend on timing.
        self.dirty = self.dirty or bool(burst or big)
        if not client.wants_online:
            return
        writers = [
            c for c in self.live if c.room == client.room and c.wants_online and c is not client
        ]
        closes_before = len(client.close_codes)

        async def slow() -> None:
            for c in [client, *writers]:
                if not (c.online and c.synced):
                    await self._connect(c)
            client.pause_reading()
            try:
                if writers:
                    ops = burst + [big_value(i) for i in range(big)]
                    for i, op in enumerate(ops):
                        self.records += await writers[i % len(writers)].edit(op)
                await trio.sleep(pause)
            finally:
                client.resume_reading()
            # It reads what was queued, or finds itself closed (1013): then it reconnects
            # and resyncs, like y-websocket.
            sent = {w.client_id: w.state_vector().get(w.client_id, 0) for w in writers}
            await client.wait_for(
                lambda: (
                    not client.online
                    or all(client.state_vector().get(k, 0) >= v for k, v in sent.items())
                ),
                within=SETTLE_WITHIN,
            )
            if not client.online:
                await self._connect(client)

        self.loop.run(slow)
        codes = client.close_codes[closes_before:]
        outcome = f"closed {codes[0]}" if codes else "not closed"
        event(f"slow reader {outcome}")
        slow_readers[outcome] += 1

    # -- the daemon --------------------------------------------------------------------------

    def _may_stop(self) -> bool:
        return self.dirty and self.stops < MAX_STOPS

    def _stopped(self) -> None:
        self.stops += 1
        self.dirty = False

    @precondition(_may_stop)
    @rule()
    def restart(self) -> None:
        """SIGTERM, restart: every acknowledged edit is still there."""
        self._heal_store()
        assert self.daemon.terminate() == 0, "the daemon did not exit cleanly on SIGTERM"
        self._stopped()
        stored = self.loop.run(self._stored)
        self.daemon.start()
        self.loop.run(self._check_durable, None, stored)
        self.loop.run(self._reconnect_all)

    @precondition(_may_stop)
    @rule()
    def kill(self) -> None:
        """SIGKILL, restart: acknowledged edits older than the flush window are there."""
        killed_at = self.daemon.kill()
        self._stopped()
        if self.lock is not None:
            # The outage ends with the process: what it held back is allowed to be lost.
            self.lock.release()
            self.lock = None
        stored = self.loop.run(self._stored)
        self.daemon.start()
        self.loop.run(self._check_durable, killed_at, stored)
        self.loop.run(self._reconnect_all)

    @precondition(lambda self: self.lock is None and len(self.outages) < MAX_OUTAGES)
    @rule()
    def lock_store(self) -> None:
        """Another process holds the database's write lock: every write fails, busy."""
        self.outages.append([time.monotonic(), math.inf])
        self.lock = ExclusiveLock(self.daemon.db_path)

    @precondition(lambda self: self.lock is not None)
    @rule()
    def unlock_store(self) -> None:
        self._heal_store()

    def _heal_store(self) -> None:
        if self.lock is None:
            return
        self.lock.release()
        self.lock = None
        self.daemon.wait_durable()
        self.outages[-1][1] = time.monotonic()

    # -- quiescence --------------------------------------------------------------------------

    @precondition(lambda self: any(c.wants_online for c in self.live))
    @rule()
    def settle(self) -> None:
        self.loop.run(self._settle)

    async def _connect(self, client: FuzzClient) -> None:
        if client.ws is not None:
            await client.wait_for(lambda: client.ws is None, within=5)
            if client.ws is not None:
                return
        await client.connect(self.daemon.url(client.room))

    async def _reconnect_all(self) -> None:
        for client in self.live:
            if client.wants_online and not (client.online and client.synced):
                await self._connect(client)

    async def _settle(self) -> None:
        """Quiesce, then compare: every connected replica of a room and the daemon's own."""
        problems: list[str] = []
        for _ in range(5):
            await self._reconnect_all()
            problems = []
            for room in ROOMS:
                problems += await self._settle_room(room)
            dropped = [c for c in self.live if c.wants_online and not c.online]
            if not dropped:
                break
            # A connection closed meanwhile (1013 after a burst): reconnect and start over.
        for client in self.everyone:
            problems += client.errors
            client.errors = []
        self._violated(problems, "settle")

    async def _settle_room(self, room: str) -> list[str]:
        members = [c for c in self.live if c.room == room and c.online]
        if not members:
            return []
        markers: dict[int, int] = {}
        for client in members:
            self.counter += 1
            self.records += await client.edit(("mark", client.name, self.counter))
            markers[client.client_id] = client.state_vector()[client.client_id]

        def has_markers(c: FuzzClient) -> bool:
            have = c.state_vector()
            return all(have.get(k, 0) >= clock for k, clock in markers.items())

        for client in members:
            await client.wait_for(lambda c=client: has_markers(c) or not c.online, SETTLE_WITHIN)
        members = [c for c in members if c.online]
        deadline = trio.current_time() + SETTLE_WITHIN
        while True:
            served = await fetch_state(self.daemon.url(room))
            states, local_only = {}, False
            for c in members:
                # A client Yjs made diverge by itself (a no-op format inside a surrogate
                # pair: no update carries it) can no longer be compared; it is counted.
                if c.online and c.peer.self_diverged is None:
                    states[c.name], differs = c.peer.state()
                    local_only = local_only or differs
            try:
                states["daemon"] = self.oracle.view(served)
            except OracleError as exc:
                return [
                    f"room {room}: the state the daemon serves a late joiner does not apply "
                    f"in Yjs ({exc}): {frame_report(served)}"
                ]
            distinct = set(states.values())
            if len(distinct) == 1 or trio.current_time() > deadline:
                break
            await trio.sleep(0.05)
        if local_only:
            # Yjs's own quirk, which no server can see: see `state` in yjs_peer.mjs.
            lone_halves[0] += 1
        diverged = [c for c in members if c.peer.self_diverged is not None]
        if len(distinct) == 1:
            return []
        lines = [f"room {room}: replicas differ after quiescence (Yjs documents)"]
        lines += [f"  {name}: {state}" for name, state in states.items()]
        lines.append(f"  served state: {frame_report(served)}")
        lines += [
            f"  ({c.name} left out: Yjs diverged it by itself at {c.peer.self_diverged})"
            for c in diverged
        ]
        return lines

    # -- durability --------------------------------------------------------------------------

    def _durable_by(self, record: EditRecord) -> float:
        """When the daemon must have written the record (`acked_at` is when it had it)."""
        assert record.acked_at is not None
        due = record.acked_at + WINDOW
        for start, end in self.outages:
            # An outage that began before the record was due holds it back until its end.
            if start <= due and end > record.acked_at:
                due = max(due, end)
        return due

    async def _stored(self) -> dict[str, list[bytes]]:
        """The rows of each room in the stopped daemon's store (snapshot, then log)."""
        async with SqliteStore(self.daemon.db_path) as store:
            return {room: (await store.load(f"records:{room}")).updates() for room in ROOMS}

    async def _check_durable(self, killed_at: float | None, stored: dict[str, list[bytes]]) -> None:
        states = {room: await fetch_state(self.daemon.url(room)) for room in ROOMS}
        missing = []
        for room in ROOMS:
            # What the restarted daemon serves is what its store holds, as Yjs reads both.
            try:
                from_rows = self.oracle.view(*stored[room])
            except OracleError as exc:
                missing.append(f"room {room}: a stored row does not apply in Yjs ({exc})")
                continue
            try:
                served = self.oracle.view(states[room])
            except OracleError as exc:
                missing.append(
                    f"room {room}: the state served after the restart does not apply in Yjs "
                    f"({exc}): {frame_report(states[room])}"
                )
                continue
            if from_rows != served:
                missing.append(
                    f"room {room}: the restarted daemon serves another document than its "
                    f"store's rows give in Yjs\n  rows:   {from_rows}\n  served: {served}"
                )
        for record in self.records:
            if record.acked_at is None:
                continue
            if self.oracle.contains(states[record.room], record.update):
                continue
            due = self._durable_by(record)
            if killed_at is None or due < killed_at:
                when = "SIGTERM" if killed_at is None else f"{killed_at - record.acked_at:.3f} s"
                missing.append(
                    f"edit lost: {record.client} in {record.room}: {record.description} "
                    f"acknowledged {when} before the stop "
                    f"(due {due - record.acked_at:.3f} s after it)"
                )
            # Lost within the window (allowed), or reported: either way its client sends
            # it again when it reconnects, and that new acknowledgement is the one that
            # counts from now on.
            record.acked_at = None
            owner = next((c for c in self.live if c.name == record.client), None)
            if owner is not None:
                owner.unacked.append(record)
        self._violated(missing, "kill" if killed_at is not None else "restart")

    def _violated(self, problems: list[str], during: str) -> None:
        """Record broken invariants; teardown raises them.

        Raising later rather than in the rule keeps the program drawn the same when a
        timing-dependent failure happens at another step on replay (hypothesis would
        otherwise stop with "inconsistent data generation" instead of shrinking).
        """
        if problems:
            self.violations.append(f"{during}:\n" + "\n".join(problems))

    # -- the end -----------------------------------------------------------------------------

    def teardown(self) -> None:
        try:
            if self.daemon.running:
                self._heal_store()
                self.loop.run(self._settle)
                self._violated(self.daemon.problems(), "daemon log")
            assert not self.violations, "\n\n".join(self.violations)
        finally:
            if self.lock is not None:
                self.lock.release()
            if self.daemon.proc is not None:
                self.daemon.kill()
            self.loop.close()
            measured["startup_seconds"] += self.daemon.startup_seconds
            torn_frames[0] += sum(c.torn_frames for c in self.everyone)
            self_diverged[0] += sum(c.peer.self_diverged is not None for c in self.everyone)
            measured["example_seconds"].append(time.monotonic() - self.started)
            shutil.rmtree(self.workdir, ignore_errors=True)


def _machine() -> type[ConvergenceMachine]:
    """The machine, seeded (the seed is printed), or with a failure blob to replay."""
    machine = type("ConvergenceMachine", (ConvergenceMachine,), {})
    blob = os.environ.get("CIVICREALTIME_FUZZ_BLOB")
    if blob:
        print(f"convergence fuzz: replaying blob {blob}")
        return reproduce_failure(hypothesis.__version__, blob.encode())(machine)
    chosen = int(os.environ.get("CIVICREALTIME_FUZZ_SEED") or random.getrandbits(64))
    print(
        f"convergence fuzz seed: {chosen} (replay: CIVICREALTIME_FUZZ_SEED={chosen} "
        "pytest fuzz/test_convergence.py; see docs/fuzzing.md)"
    )
    return seed(chosen)(machine)


def test_clients_converge_and_acknowledged_edits_survive() -> None:
    base = fuzz_settings(EXAMPLE_SCALE)
    run_state_machine_as_test(_machine(), settings=settings(base, stateful_step_count=steps()))


@pytest.fixture(scope="module", autouse=True)
def report_timing() -> Any:
    yield
    _discard_spares()
    while _oracles:
        _oracles.pop().close()
    runs, starts = measured["example_seconds"], measured["startup_seconds"]
    if runs:
        print(
            f"\nconvergence: {len(runs)} machines, {sum(runs):.1f} s, "
            f"{sum(runs) / len(runs):.2f} s each; daemon start "
            f"{sum(starts) / max(1, len(starts)):.2f} s x {len(starts)} (requested "
            f"{examples()} x {EXAMPLE_SCALE}); slow readers: {dict(slow_readers)}; "
            f"torn frames: {torn_frames[0]}; lone surrogate halves held by a client only: "
            f"{lone_halves[0]}; clients Yjs diverged by itself: {self_diverged[0]}"
        )


# -- programs the fuzzer found, kept as plain tests ------------------------------------------


def _run_program(program: Any) -> None:
    state = ConvergenceMachine()
    try:
        program(state)
    finally:
        state.teardown()


def test_issue_14_an_accent_typed_inside_an_emoji() -> None:
    """Issue #14's six steps: B types between the two halves of A's emoji's surrogate pair;
    Yjs turns each half into U+FFFD, and the daemon must serve and store just that."""

    def program(state: ConvergenceMachine) -> None:
        a, b = state.first_clients(rooms=["alpha", "alpha"]).values
        state.edit(a, [("text_insert", 0, "Avis 😀 public")])
        state.settle()
        state.edit(b, [("text_insert", 6, "é")])
        state.settle()
        state.restart()
        state.settle()

    _run_program(program)


def test_one_client_deletes_half_an_emoji() -> None:
    """Shrunk by the fuzzer (seed 4242, 2026-12-06): one client alone, deleting the second
    half of an emoji's surrogate pair, and the daemon's document already differs (its
    state vector is one ahead of the client's)."""

    def program(state: ConvergenceMachine) -> None:
        (c0,) = state.first_clients(rooms=["alpha"]).values
        state.edit_concurrently(
            edits=[(c0, ("xml_element", 0, "p", "a")), (c0, ("text_insert", 0, "a"))]
        )
        state.edit_concurrently(
            edits=[(c0, ("text_insert", 0, "a😀")), (c0, ("text_delete", 62, 1))]
        )

    _run_program(program)


def test_a_delete_from_inside_an_emoji_then_sigkill() -> None:
    """Shrunk by the fuzzer (seed 18162959805891844280, 2026-12-06): a delete that starts
    between the halves of an emoji. Before the fix, the daemon's document kept the whole
    emoji: its state vector and text differed from the Yjs clients', a client reading the
    daemon's state changed its client id ("another client seems to be using it"), and the
    rows stored before the SIGKILL gave another document than the restarted daemon served."""

    def program(state: ConvergenceMachine) -> None:
        (c0,) = state.first_clients(rooms=["alpha"]).values
        c1 = state.join(room="alpha")
        state.edit_concurrently(
            edits=[(c1, ("xml_element", 0, "p", "azab")), (c1, ("text_delete", 0, 1))]
        )
        state.edit_concurrently(
            edits=[
                (c0, ("text_insert", 43, "x😀")),
                (c0, ("text_delete", 62, 4)),
                (c1, ("text_insert", 0, "a")),
            ]
        )
        state.kill()

    _run_program(program)
