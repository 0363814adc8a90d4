"""The frame decoder of one connection: feed it a frame, get one event back.

No I/O and no exceptions on the data path: a bad frame becomes `InvalidMessage`. The
decoder keeps no protocol state (each frame decodes alone); it only counts what it saw;
the room decides what an event does to the document.
"""

from __future__ import annotations

from collections import Counter

from . import control, messages
from .awareness import AwarenessLimits, AwarenessRefused, decode_awareness_update
from .errors import MalformedMessage
from .events import (
    AwarenessReceived,
    Event,
    Ignored,
    InvalidMessage,
    PingReceived,
    QueryAwarenessReceived,
    SyncStep1Received,
    UpdateReceived,
)
from .updates import precheck_state_vector, precheck_update


class FrameDecoder:
    """Decodes the frames of one client connection into events, and counts them.

    Keeps no protocol state between frames (so it cannot be put in a wrong state) and
    never raises on a bad frame: that is an `InvalidMessage` event.
    """

    __slots__ = ("_awareness_limits", "counts")

    def __init__(self, *, awareness_limits: AwarenessLimits | None = None) -> None:
        # Frames received by event name; read by metrics and by tests.
        self.counts: Counter[str] = Counter()
        self._awareness_limits = awareness_limits

    def receive(self, frame: bytes | str) -> Event:
        try:
            event = self._decode(frame)
        except AwarenessRefused as exc:
            event = InvalidMessage(reason=str(exc), refused=exc.label)
        except MalformedMessage as exc:
            event = InvalidMessage(reason=str(exc))
        self.counts[type(event).__name__] += 1
        return event

    def _decode(self, frame: bytes | str) -> Event:
        if isinstance(frame, str):
            match control.decode_control(frame):
                case control.ClientPing():
                    return PingReceived()
                case control.OtherControl(type=kind):
                    return Ignored(what=f"control frame of type {kind[:32]!r}")
            raise MalformedMessage("unreachable control frame")  # pragma: no cover
        match messages.decode(frame):
            case messages.SyncStep1(state_vector=sv):
                precheck_state_vector(sv)
                return SyncStep1Received(state_vector=sv)
            case messages.SyncStep2(update=update):
                precheck_update(update)
                return UpdateReceived(update=update, is_step2=True)
            case messages.SyncUpdate(update=update):
                precheck_update(update)
                return UpdateReceived(update=update, is_step2=False)
            case messages.AwarenessMessage(payload=payload):
                entries = tuple(decode_awareness_update(payload, self._awareness_limits))
                return AwarenessReceived(entries=entries, frame=frame)
            case messages.QueryAwareness():
                return QueryAwarenessReceived()
            case messages.PermissionDenied():
                return Ignored(what="auth message from a client")
        raise MalformedMessage("unreachable message")  # pragma: no cover
