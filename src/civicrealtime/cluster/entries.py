"""What travels through Redis: key names, stream ids, and the fields of a stream entry.

Every room has one stream, `<prefix>:room:<key>:stream`. An entry has three fields: `n`
the publishing node's identity, `k` its kind, `d` its data:

- `u` an update a local client made (the raw update, as the room logged it);
- `a` an awareness update payload (not a frame): local clients' presence, or its removal;
- `q` "I just opened this room": nodes holding it answer with their clients' presence;
- `r` "I could not publish some updates of this room": nodes reload it from the store.

Revocations travel on one more stream, `<prefix>:revocations`, with the fields `n`, `u`
(user id), `t` (token id) and `r` (reason).
"""

from __future__ import annotations

from typing import Final

from ..protocol.errors import MalformedMessage
from ..protocol.messages import MessageType
from ..protocol.varint import Reader

NODE: Final = b"n"
KIND: Final = b"k"
DATA: Final = b"d"

UPDATE: Final = b"u"
AWARENESS: Final = b"a"
QUERY: Final = b"q"
RELOAD: Final = b"r"

USER: Final = b"u"
TOKEN: Final = b"t"
REASON: Final = b"r"
REVOKED_AT: Final = b"at"  # the origin's unix time, so every node refuses the same tokens

# A stream id: (milliseconds, sequence), ordered like Redis orders them.
StreamId = tuple[int, int]
START: Final[StreamId] = (0, 0)


class Keys:
    """Redis key names under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.revocations = f"{prefix}:revocations".encode()
        self._node = f"{prefix}:node:"

    def stream(self, room: str) -> bytes:
        return f"{self.prefix}:room:{room}:stream".encode()

    def lease(self, room: str) -> bytes:
        return f"{self.prefix}:room:{room}:lease".encode()

    def node(self, identity: str) -> bytes:
        return (self._node + identity).encode()

    def wake(self, identity: str) -> bytes:
        return f"{self._node}{identity}:wake".encode()

    @property
    def node_prefix(self) -> bytes:
        return self._node.encode()

    def user(self, user_id: str) -> bytes:
        return f"{self.prefix}:user:{user_id}".encode()


def parse_id(raw: bytes | str) -> StreamId:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def format_id(sid: StreamId) -> bytes:
    return f"{sid[0]}-{sid[1]}".encode()


def successor(sid: StreamId) -> StreamId:
    return sid[0], sid[1] + 1


def awareness_payload(frame: bytes) -> bytes | None:
    """The awareness update inside a y-websocket awareness frame; None if it is not one."""
    reader = Reader(frame)
    try:
        if reader.read_var_uint() != MessageType.AWARENESS:
            return None
        return reader.read_var_bytes()
    except MalformedMessage:
        return None
