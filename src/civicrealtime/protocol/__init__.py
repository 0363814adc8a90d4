"""The sans-IO y-websocket protocol: bytes in, events out. Imports no trio, opens no socket."""

from .awareness import AwarenessChange, AwarenessEntry, AwarenessStates
from .closecodes import CloseCode, close_reason
from .decoder import FrameDecoder
from .errors import MalformedMessage, ProtocolError, RemoteProtocolError
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
from .routing import BadRoom, OutsidePrefix, RoomRoute, parse_target
from .updates import InvalidUpdate, apply_update, diff_update

__all__ = [
    "AwarenessChange",
    "AwarenessEntry",
    "AwarenessReceived",
    "AwarenessStates",
    "BadRoom",
    "CloseCode",
    "Event",
    "FrameDecoder",
    "Ignored",
    "InvalidMessage",
    "InvalidUpdate",
    "MalformedMessage",
    "OutsidePrefix",
    "PingReceived",
    "ProtocolError",
    "QueryAwarenessReceived",
    "RemoteProtocolError",
    "RoomRoute",
    "SyncStep1Received",
    "UpdateReceived",
    "apply_update",
    "close_reason",
    "diff_update",
    "parse_target",
]
