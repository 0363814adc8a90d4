"""Making a record's live document read like an earlier version, as one new change.

Nothing earlier is rewritten: the change deletes the blocks that differ and inserts the
version's blocks in their place, in one transaction, so that it reaches every editor as
an ordinary update (offline editors merge it on return like any edit). Blocks that read
the same in both are left alone, which keeps their authorship (blame) and any concurrent
edit inside them.
"""

from __future__ import annotations

import difflib
from typing import Any

from pycrdt import Doc, XmlElement, XmlFragment

from ..protocol.updates import apply_update
from .model import Node
from .yjs_form import _write_children, read_fragment

FRAGMENT = "default"  # as records/handler.py


def restore_record(doc: Doc[Any], state: bytes) -> None:
    """Change `doc` so that its record reads as the one in `state`; raises `InvalidUpdate`."""
    old: Doc[Any] = Doc()
    apply_update(old, state)
    target = read_fragment(old.get(FRAGMENT, type=XmlFragment))
    live = doc.get(FRAGMENT, type=XmlFragment)
    current = read_fragment(live)
    opcodes = difflib.SequenceMatcher(a=current, b=target, autojunk=False).get_opcodes()
    with doc.transaction(origin="restore"):
        # From the end, so that earlier indexes stay valid.
        for tag, i1, i2, j1, j2 in reversed(opcodes):
            if tag == "equal":
                continue
            for _ in range(i2 - i1):
                del live.children[i1]
            for offset, block in enumerate(target[j1:j2]):
                _insert_block(live, i1 + offset, block)


def _insert_block(fragment: XmlFragment, index: int, block: Node) -> None:
    element = fragment.children.insert(index, XmlElement(block.name))
    for key, value in block.attrs:
        if value is not None:
            element.attributes[key] = value
    _write_children(element, block.content)
