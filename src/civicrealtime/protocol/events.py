"""What a client's frame means, as the connection's session reports it."""

from __future__ import annotations

import attrs

from .awareness import AwarenessEntry


@attrs.frozen(kw_only=True, slots=True)
class Event:
    """Base of every event a `FrameDecoder` produces."""


@attrs.frozen(kw_only=True, slots=True)
class SyncStep1Received(Event):
    state_vector: bytes


@attrs.frozen(kw_only=True, slots=True)
class UpdateReceived(Event):
    update: bytes
    is_step2: bool  # a step 2 answers our step 1; an update is a live change


@attrs.frozen(kw_only=True, slots=True)
class AwarenessReceived(Event):
    entries: tuple[AwarenessEntry, ...]
    frame: bytes  # the frame as received, relayed unchanged


@attrs.frozen(kw_only=True, slots=True)
class QueryAwarenessReceived(Event):
    pass


@attrs.frozen(kw_only=True, slots=True)
class PingReceived(Event):
    pass


@attrs.frozen(kw_only=True, slots=True)
class Ignored(Event):
    """Well-formed, but nothing for the server to do (y-protocols auth, unknown control)."""

    what: str


@attrs.frozen(kw_only=True, slots=True)
class InvalidMessage(Event):
    """A frame that must not be applied or relayed; the connection carries on."""

    reason: str
    # Set when the frame is well-formed but over a configured limit: the limit's name.
    refused: str | None = None
