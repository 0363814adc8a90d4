"""Protocol errors: every error the sans-IO layer raises is a `ProtocolError`.

The only kind raised today is the peer's fault (`RemoteProtocolError`): a frame we cannot
accept. It never ends a connection by itself: the room answers an invalid message and
forgets it, and the transport picks its own close code when it does close.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base of every error the sans-IO layer raises."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something we cannot accept."""


class MalformedMessage(RemoteProtocolError):
    """A frame that does not decode as a y-protocols or control message."""
