"""Making a record's live document read like an earlier version, as one new change.

Nothing earlier is rewritten: the version's blocks become the target of the same minimal
change a server-side edit makes (`records.edit.replace_with`: blocks that read the same are
left alone, changed blocks are edited in place), in one transaction, so that it reaches
every editor as an ordinary update (offline editors merge it on return like any edit).
Untouched blocks keep their authorship (blame) and any concurrent edit inside them.
"""

from __future__ import annotations

from collections.abc import Callable

from pycrdt import XmlFragment

from ..protocol.document import YDocument
from .edit import replace_with
from .yjs_form import read_fragment

FRAGMENT = "default"  # as records/handler.py


def restore_edit(state: bytes) -> Callable[[YDocument], None]:
    """The room edit that makes the live record read as the one in `state`.

    The version is decoded here, before the room sees anything: a state that does not
    decode raises `InvalidUpdate` and nothing is sent.
    """
    version = YDocument(label="restore")
    version.apply(state)
    target = read_fragment(version.doc.get(FRAGMENT, type=XmlFragment))
    version.close()
    return replace_with(target, "restore")
