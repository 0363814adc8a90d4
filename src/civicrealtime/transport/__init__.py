"""Everything between the TCP socket and a room's mailbox.

- `server`: accept, upgrade, route, authenticate, limit; closes each connection with a row
  of the close table.
- `connection`: a joined connection's reader, writer and keepalive.
- `outbound`: the member's outbox the room pushes into (rooms.Outbox), bounded, coalescing
  the frames of one mailbox drain into one write.
- `websocket`: one server-side WebSocket, wsproto over a trio stream: the upgrade, reads
  of whole frames for the reader task, direct writes, the closing handshake.
"""

from .connection import Connection
from .outbound import Outbound
from .server import RealtimeServer, Revoked

__all__ = ["Connection", "Outbound", "RealtimeServer", "Revoked"]
