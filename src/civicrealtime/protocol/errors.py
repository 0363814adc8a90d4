"""Protocol errors, split as wsproto does: the peer's fault (remote) or ours (local).

Each carries the close code a transport should use if it decides to end the connection;
most remote errors do not end it (an invalid message is answered and forgotten).
"""

from __future__ import annotations

from .closecodes import CloseCode


class ProtocolError(Exception):
    """Base of every error the sans-IO layer raises."""

    close_code: CloseCode = CloseCode.INTERNAL_ERROR


class RemoteProtocolError(ProtocolError):
    """The peer sent something we cannot accept."""

    close_code = CloseCode.POLICY_VIOLATION


class MalformedMessage(RemoteProtocolError):
    """A frame that does not decode as a y-protocols or control message."""


class LocalProtocolError(ProtocolError):
    """We tried to do something the protocol does not allow (a bug on our side)."""
