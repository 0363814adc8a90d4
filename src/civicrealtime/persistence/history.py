"""A room's history: attributed updates, the client-id map, and versions.

Every update a room accepts is kept here a second time, with who sent it (the token's
`sub` and display name, never the token), when (server time), where (connection id and
node) and which Yjs client ids its structs carry. The first time a client id is seen in a
room, it is mapped to that author, so that any item of the document (Yjs items carry
their client id) can be traced to a person.

A version is the document at the end of a burst of activity. The recorder closes one after
`history.version_idle` seconds without an update, when the room leaves memory, at
shutdown, and around a restore; it stores the version's time range, its authors with
their counts of changes, and the blocks it changed (for blame). Some versions are
checkpoints that also keep the document's full state (the first, baselines, restores,
and one every `CHECKPOINT_UPDATES` updates); any version is rebuilt from the checkpoint at
or before it plus the entries in between, so storage stays linear in the updates.

History lives in its own tables (files), apart from the snapshots and the update log that
serve fast loading: compaction and snapshot retention truncate the log, never this. Only
`history.retention_days` removes history (`prune`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Literal, Protocol

import attrs
import pycrdt
import trio

from ..protocol.errors import MalformedMessage
from ..protocol.updates import InvalidUpdate, guarded
from ..rooms.origin import Actor, Origin
from .rebuild import decode_state_vector, merged_state

VersionReason = Literal["idle", "evicted", "shutdown", "restore", "baseline", "cut"]


@attrs.frozen(kw_only=True, slots=True)
class Entry:
    """One attributed update, as stored."""

    room_id: str
    seq: int  # per room, increasing; 0 before it is stored
    at_ms: int
    origin: Origin
    node: str
    client_ids: tuple[int, ...]
    data: bytes


@attrs.frozen(slots=True)
class Author:
    author: str
    name: str | None
    changes: int


@attrs.frozen(kw_only=True, slots=True)
class Version:
    """A closed version: updates `first_seq..last_seq` on top of the previous version."""

    room_id: str
    number: int
    started_ms: int
    ended_ms: int
    first_seq: int
    last_seq: int
    reason: VersionReason
    authors: tuple[Author, ...]

    def by(self, author: str) -> bool:
        return any(a.author == author for a in self.authors)

    def as_json(self) -> dict[str, object]:
        return {
            "version": self.number,
            "started_at": self.started_ms,
            "ended_at": self.ended_ms,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "reason": self.reason,
            "authors": [
                {"user": a.author, "name": a.name, "changes": a.changes} for a in self.authors
            ],
        }


@attrs.frozen(slots=True)
class BlockChange:
    """A block a version left changed: its text's digest and the entry that last changed it."""

    digest: str
    seq: int
    author: str
    name: str | None
    at_ms: int


def block_digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def changes_json(changes: Sequence[BlockChange]) -> str:
    return json.dumps([[c.digest, c.seq, c.author, c.name, c.at_ms] for c in changes])


def changes_from_json(text: str) -> list[BlockChange]:
    return [
        BlockChange(str(d), int(seq), str(a), None if n is None else str(n), int(at))
        for d, seq, a, n, at in json.loads(text)
    ]


@attrs.frozen(kw_only=True, slots=True)
class ClientOwner:
    """Who a Yjs client id belongs to in a room: the author of its first update."""

    client_id: int
    author: str
    name: str | None
    actor: Actor
    first_ms: int


class HistoryStore(Protocol):
    """What a backend implements to keep history. Raises `StoreError` when it fails."""

    async def append_entries(self, entries: Sequence[Entry]) -> list[int]:
        """Store entries (any rooms) in one transaction and map their new client ids.

        Returns their seqs, in order. Each room's seqs continue from its last one.
        """
        ...

    async def add_version(
        self, version: Version, state: bytes, changes: Sequence[BlockChange] = ()
    ) -> bool:
        """Store a closed version, the blocks it changed, and (a checkpoint) the full state
        at its end; `state` is empty for a version that is not a checkpoint.

        False when the room already has a version of that number (another node sharing
        the store closed it first): nothing is written. A backend that subclasses this
        protocol inherits it, as one item of `add_versions`.
        """
        (stored,) = await self.add_versions([(version, state, changes)])
        return stored

    async def add_versions(
        self, items: Sequence[tuple[Version, bytes, Sequence[BlockChange]]]
    ) -> list[bool]:
        """`add_version` for several versions (any rooms) in one transaction."""
        ...

    async def block_changes(self, room_id: str) -> dict[int, list[BlockChange]]:
        """The blocks each version changed, by version number."""
        ...

    async def versions(self, room_id: str) -> list[Version]:
        """The room's versions, oldest first."""
        ...

    async def version_state(self, room_id: str, number: int) -> bytes | None:
        """The stored state of a version: empty when it is not a checkpoint, None when
        there is no such version."""
        ...

    async def entries(self, room_id: str, *, after_seq: int = 0) -> list[Entry]:
        """The room's entries with seq > `after_seq`, in seq order."""
        ...

    async def last_seq(self, room_id: str) -> int: ...

    async def clients(self, room_id: str) -> dict[int, ClientOwner]: ...

    async def prune(self, before_ms: int) -> int:
        """Drop versions that ended before the cutoff and the entries they hold; count."""
        ...

    async def restore_history(
        self,
        room_id: str,
        entries: Sequence[Entry],
        versions: Sequence[tuple[Version, bytes, Sequence[BlockChange]]],
        clients: Sequence[ClientOwner],
    ) -> bool:
        """Store a room's whole history as exported, keeping its seqs and version numbers,
        in one transaction (`snapshots import`).

        False, writing nothing, when the room already has history here: two histories
        cannot be interleaved without renumbering what readers may have cited.
        """
        ...


def client_ids(update: bytes) -> tuple[int, ...]:
    """The Yjs client ids whose structs the update carries (a delete-only update: none)."""
    try:
        # The room applied it already: this only guards a pycrdt that cannot read it back;
        # the update is then kept, unmapped.
        return tuple(
            sorted(decode_state_vector(guarded(lambda: pycrdt.get_state(update), "update")))
        )
    except MalformedMessage:
        return ()


def authors_json(authors: Sequence[Author]) -> str:
    return json.dumps([[a.author, a.name, a.changes] for a in authors])


def authors_from_json(text: str) -> tuple[Author, ...]:
    return tuple(
        Author(author=str(author), name=None if name is None else str(name), changes=int(count))
        for author, name, count in json.loads(text)
    )


def count_authors(entries: Sequence[Entry]) -> tuple[Author, ...]:
    """Authors of the entries with their counts of changes, most changes first."""
    counts: dict[str, int] = {}
    names: dict[str, str | None] = {}
    for entry in entries:
        key = entry.origin.author
        counts[key] = counts.get(key, 0) + 1
        if entry.origin.name is not None or key not in names:
            names[key] = entry.origin.name
    order = sorted(counts, key=lambda key: (-counts[key], key))
    return tuple(Author(author=key, name=names[key], changes=counts[key]) for key in order)


# A version is a checkpoint (keeps the full state) when this many updates or more were
# recorded since the previous checkpoint: rebuilding any version applies fewer.
CHECKPOINT_UPDATES = 5000


async def rebuild_version(
    store: HistoryStore, versions: Sequence[Version], number: int
) -> tuple[bytes, Version]:
    """The full state at the end of version `number`, and the checkpoint it was rebuilt from.

    Raises `KeyError` when `versions` has no such version, `StoreError`, `InvalidUpdate`.
    """
    index = next(i for i, v in enumerate(versions) if v.number == number)
    target = versions[index]
    for checkpoint in reversed(versions[: index + 1]):
        state = await store.version_state(target.room_id, checkpoint.number)
        if state:
            break
    else:
        raise InvalidUpdate(f"no checkpoint at or before version {number}")
    if checkpoint is target:
        return state, checkpoint
    entries = await store.entries(target.room_id, after_seq=checkpoint.last_seq)
    updates = [state, *(e.data for e in entries if e.seq <= target.last_seq)]
    return await trio.to_thread.run_sync(merged_state, updates), checkpoint
