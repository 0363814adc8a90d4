"""A small y-websocket client for tests: a pycrdt Doc behind a trio-websocket connection.

It speaks the protocol from the client's side with our own sans-IO encoders (the protocol
tests check those against pycrdt's), and keeps every frame it received for assertions.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable
from typing import Any

import trio
from pycrdt import Doc, Text, TransactionEvent
from trio_websocket import ConnectionClosed, WebSocketConnection, connect_websocket_url

from civicrealtime.protocol import messages
from civicrealtime.protocol.awareness import (
    AwarenessEntry,
    decode_awareness_update,
    encode_awareness_update,
)
from civicrealtime.protocol.control import CONTROL_SUBPROTOCOL
from civicrealtime.protocol.varint import Reader


def state_vector(doc: Doc) -> dict[int, int]:
    """A doc's state vector as {client: clock}: its encoding's order is not stable."""
    reader = Reader(doc.get_state())
    return {reader.read_var_uint(): reader.read_var_uint() for _ in range(reader.read_var_uint())}


def _weakly(method: Callable[[TransactionEvent], None]) -> Callable[[TransactionEvent], None]:
    """A callback that calls `method` while its object lives, without keeping it alive."""
    ref = weakref.WeakMethod(method)

    def call(event: TransactionEvent) -> None:
        bound = ref()
        if bound is not None:
            bound(event)

    return call


class YClient:
    def __init__(self, ws: WebSocketConnection, doc: Doc | None = None) -> None:
        self.ws = ws
        self.doc = doc if doc is not None else Doc()
        self.text_frames: list[dict[str, Any]] = []
        self.binary: list[messages.Message] = []
        self.awareness: dict[int, Any] = {}
        self.awareness_frames = 0
        self.updates_received = 0
        self.closed: tuple[int, str | None] | None = None
        self._local_updates: list[bytes] = []
        # Through a weak reference: pycrdt's Doc holds the callback where Python's cycle
        # collector cannot see it, so a bound method would keep every client alive for good
        # (the protocol fuzzer's process grew by ~3 clients per example, and its GC pauses
        # with it, until they stalled the bystander it measures).
        self._sub = self.doc.observe(_weakly(self._on_local))
        self._remote = False
        self._clock = 0
        self.changed = trio.Event()

    @classmethod
    async def connect(
        cls,
        nursery: trio.Nursery,
        url: str,
        *,
        token: str | None = None,
        doc: Doc | None = None,
        read: bool = True,
        control: bool = True,
    ) -> YClient:
        """Connect to `url`; `control`: ask for the JSON control frames, as the CivicPress
        editor does (tests of what a stock client gets say `control=False`)."""
        subprotocols = [f"auth.{token}"] if token else []
        if control:
            subprotocols.append(CONTROL_SUBPROTOCOL)
        ws = await connect_websocket_url(nursery, url, subprotocols=subprotocols or None)
        client = cls(ws, doc)
        if read:
            nursery.start_soon(client.read_loop)
        return client

    # -- sending -----------------------------------------------------------------------------

    def _on_local(self, event: TransactionEvent) -> None:  # see _weakly
        if not self._remote:
            self._local_updates.append(event.update)

    async def flush(self) -> None:
        """Send every local change as a sync update frame."""
        pending, self._local_updates = self._local_updates, []
        for update in pending:
            await self.ws.send_message(messages.encode_sync_update(update))

    async def edit(self, change: Callable[[Doc], None]) -> None:
        change(self.doc)
        await self.flush()

    async def send_step1(self) -> None:
        await self.ws.send_message(messages.encode_sync_step1(self.doc.get_state()))

    async def send_step2(self, state_vector: bytes = b"\x00") -> None:
        await self.ws.send_message(messages.encode_sync_step2(self.doc.get_update(state_vector)))

    async def set_awareness(self, client_id: int, state: Any) -> None:
        self._clock += 1
        payload = encode_awareness_update(
            [AwarenessEntry(client_id=client_id, clock=self._clock, state=json.dumps(state))]
        )
        await self.ws.send_message(messages.encode_awareness(payload))

    # -- receiving ---------------------------------------------------------------------------

    async def read_loop(self) -> None:
        try:
            while True:
                frame = await self.ws.get_message()
                self.handle(frame)
        except ConnectionClosed as exc:
            reason = exc.reason
            self.closed = (reason.code, reason.reason)
        finally:
            # The document stays readable; only the cycle through pycrdt is broken.
            self.doc.unobserve(self._sub)
            self._wake()

    def handle(self, frame: bytes | str) -> None:
        if isinstance(frame, str):
            self.text_frames.append(json.loads(frame))
            self._wake()
            return
        message = messages.decode(frame)
        self.binary.append(message)
        match message:
            case messages.SyncStep1():
                pass  # tests answer it explicitly when they need to (`send_step2`)
            case messages.SyncStep2(update=update) | messages.SyncUpdate(update=update):
                self._remote = True
                try:
                    self.doc.apply_update(update)
                finally:
                    self._remote = False
                self.updates_received += 1
            case messages.AwarenessMessage(payload=payload):
                self.awareness_frames += 1
                for entry in decode_awareness_update(payload):
                    state = json.loads(entry.state)
                    if state is None:
                        self.awareness.pop(entry.client_id, None)
                    else:
                        self.awareness[entry.client_id] = state
        self._wake()

    def _wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def wait_for(self, predicate: Callable[[], bool], within: float = 5) -> None:
        """Wait until `predicate()` holds, re-checking after every frame received."""
        with trio.fail_after(within):
            while not predicate():
                await self.changed.wait()

    def text(self, name: str) -> str:
        return str(self.doc.get(name, type=Text))

    def events(self, event: str) -> list[dict[str, Any]]:
        return [f for f in self.text_frames if f.get("event") == event]
