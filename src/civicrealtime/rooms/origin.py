"""Who made a change to a room's document: a member, or the server acting for someone.

Rooms hand it to their hooks with every update they accept (the history records it);
it holds the token's subject and display name, never the token.
"""

from __future__ import annotations

from typing import Literal

import attrs

# "api": an edit through the operations port (`sub` names the actor the caller gave);
# "filesystem": the published record file changed on disk (records/watcher.py).
Actor = Literal["user", "seed", "restore", "admin", "import", "api", "filesystem"]


@attrs.frozen(kw_only=True, slots=True)
class Origin:
    """Who made an update, as the room knows it: a member, or the server acting for someone.

    `sub` of a server actor (restore, admin) is who asked for it, when known.
    """

    actor: Actor = "user"
    sub: str | None = None
    name: str | None = None
    conn_id: int | None = None

    @property
    def author(self) -> str:
        """The key versions count changes by: the user's `sub`, or the server actor."""
        if self.actor == "user":
            return self.sub or "anonymous"
        return f"{self.actor}:{self.sub}" if self.sub else self.actor


SEED_ORIGIN = Origin(actor="seed")
# What a room held before it had history (see HistoryRecorder).
IMPORT_ORIGIN = Origin(actor="import")
FILESYSTEM_ORIGIN = Origin(actor="filesystem")
