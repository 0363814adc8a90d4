from __future__ import annotations

import pytest

from civicrealtime.persistence.rebuild import Coverage, merged_state, rebuild
from civicrealtime.protocol import InvalidUpdate

from .helpers import Editor, text_of


def test_rebuild_equals_applying_one_by_one() -> None:
    editor = Editor()
    updates = [editor.type(f"{i} ") for i in range(300)]
    updates += [editor.delete(0, 10), editor.type("end")]
    rebuilt = rebuild(updates)
    assert text_of([rebuilt.state]) == str(editor) and rebuilt.pending == ()


def test_rebuild_names_no_pending_for_deletions_it_applied() -> None:
    editor = Editor()
    updates = [editor.type("hello world"), editor.delete(0, 6)]
    assert rebuild(updates).pending == ()
    assert Coverage(editor.state()).contains(updates[1])


def test_updates_missing_a_dependency_are_pending() -> None:
    editor = Editor()
    first, second, third = editor.type("a"), editor.type("b"), editor.delete(1, 2)
    rebuilt = rebuild([second, third])
    assert set(rebuilt.pending) == {second, third}
    assert text_of([merged_state([second, third]), first]) == str(editor)


def test_an_invalid_update_is_reported() -> None:
    editor = Editor()
    updates = [editor.type("ok") for _ in range(100)]
    updates[70] = b"\xff\xff\xff\xff\x0f"
    with pytest.raises(InvalidUpdate):
        rebuild(updates)
    assert not Coverage(editor.state()).contains(b"\xff\xff")
