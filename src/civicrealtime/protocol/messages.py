"""The y-protocols binary messages, as frozen classes, with their encoding and decoding.

Frame layout (lib0 framing): a var-uint message type, then its body.
- ``0`` SYNC: a var-uint sub-type (0 step 1, 1 step 2, 2 update) and a var-bytes payload.
- ``1`` AWARENESS: a var-bytes awareness update.
- ``2`` AUTH: a var-uint sub-type (0 permission denied) and a var-string reason.
- ``3`` QUERY_AWARENESS: no body.

Like y-protocols, bytes after a complete message are ignored.
"""

from __future__ import annotations

import enum

import attrs

from .errors import MalformedMessage
from .varint import Reader, encode_var_bytes, encode_var_string


class MessageType(enum.IntEnum):
    SYNC = 0
    AWARENESS = 1
    AUTH = 2
    QUERY_AWARENESS = 3


class SyncType(enum.IntEnum):
    STEP1 = 0
    STEP2 = 1
    UPDATE = 2


@attrs.frozen(kw_only=True, slots=True)
class Message:
    """Base of every binary message."""


@attrs.frozen(kw_only=True, slots=True)
class SyncStep1(Message):
    state_vector: bytes


@attrs.frozen(kw_only=True, slots=True)
class SyncStep2(Message):
    update: bytes


@attrs.frozen(kw_only=True, slots=True)
class SyncUpdate(Message):
    update: bytes


@attrs.frozen(kw_only=True, slots=True)
class AwarenessMessage(Message):
    payload: bytes


@attrs.frozen(kw_only=True, slots=True)
class PermissionDenied(Message):
    """y-protocols auth message: the server refuses a change (read-only peers)."""

    reason: str


@attrs.frozen(kw_only=True, slots=True)
class QueryAwareness(Message):
    pass


_SYNC_PREFIX = {
    SyncType.STEP1: bytes([MessageType.SYNC, SyncType.STEP1]),
    SyncType.STEP2: bytes([MessageType.SYNC, SyncType.STEP2]),
    SyncType.UPDATE: bytes([MessageType.SYNC, SyncType.UPDATE]),
}


def encode_sync_step1(state_vector: bytes) -> bytes:
    return _SYNC_PREFIX[SyncType.STEP1] + encode_var_bytes(state_vector)


def encode_sync_step2(update: bytes) -> bytes:
    return _SYNC_PREFIX[SyncType.STEP2] + encode_var_bytes(update)


def encode_sync_update(update: bytes) -> bytes:
    return _SYNC_PREFIX[SyncType.UPDATE] + encode_var_bytes(update)


def encode_awareness(payload: bytes) -> bytes:
    return bytes([MessageType.AWARENESS]) + encode_var_bytes(payload)


def encode_permission_denied(reason: str) -> bytes:
    return bytes([MessageType.AUTH, 0]) + encode_var_string(reason)


def encode(message: Message) -> bytes:
    """Encode one message as a complete binary frame."""
    match message:
        case SyncStep1(state_vector=sv):
            return encode_sync_step1(sv)
        case SyncStep2(update=update):
            return encode_sync_step2(update)
        case SyncUpdate(update=update):
            return encode_sync_update(update)
        case AwarenessMessage(payload=payload):
            return encode_awareness(payload)
        case PermissionDenied(reason=reason):
            return encode_permission_denied(reason)
        case QueryAwareness():
            return bytes([MessageType.QUERY_AWARENESS])
    raise TypeError(f"not a protocol message: {message!r}")


def decode(frame: bytes) -> Message:
    """Decode one binary frame; raise `MalformedMessage` if it is not a valid message."""
    reader = Reader(frame)
    kind = reader.read_var_uint()
    if kind == MessageType.SYNC:
        sub = reader.read_var_uint()
        payload = reader.read_var_bytes()
        if sub == SyncType.STEP1:
            return SyncStep1(state_vector=payload)
        if sub == SyncType.STEP2:
            return SyncStep2(update=payload)
        if sub == SyncType.UPDATE:
            return SyncUpdate(update=payload)
        raise MalformedMessage(f"unknown sync message type {sub}")
    if kind == MessageType.AWARENESS:
        return AwarenessMessage(payload=reader.read_var_bytes())
    if kind == MessageType.AUTH:
        sub = reader.read_var_uint()
        if sub != 0:
            raise MalformedMessage(f"unknown auth message type {sub}")
        return PermissionDenied(reason=reader.read_var_string())
    if kind == MessageType.QUERY_AWARENESS:
        return QueryAwareness()
    raise MalformedMessage(f"unknown message type {kind}")
