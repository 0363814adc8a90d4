"""records/diff.py: a live fragment brought to a target by a minimal change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from pycrdt import Doc, XmlFragment, XmlText

from civicrealtime.records import parse_markdown, read_fragment, write_fragment
from civicrealtime.records.diff import apply_blocks, merge_blocks
from civicrealtime.records.model import Node, Text
from civicrealtime.records.source import split_front_matter

from .strategies import documents

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "data").rglob("*.md"))


def doc_with(blocks: tuple[Node, ...]) -> tuple[Doc[Any], XmlFragment]:
    doc: Doc[Any] = Doc()
    fragment = doc.get("default", type=XmlFragment)
    write_fragment(fragment, blocks)
    return doc, fragment


def body(path: Path) -> tuple[Node, ...]:
    return tuple(parse_markdown(split_front_matter(path.read_text())[1])[0])


def change(doc: Doc[Any], fragment: XmlFragment, target: tuple[Node, ...]) -> list[bytes]:
    updates: list[bytes] = []
    subscription = doc.observe(lambda event: updates.append(event.update))
    with doc.transaction(origin="test"):
        apply_blocks(fragment, target)
    doc.unobserve(subscription)
    return updates


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents(), documents())
def test_any_document_becomes_any_other_in_one_update(
    first: tuple[Node, ...], second: tuple[Node, ...]
) -> None:
    doc, fragment = doc_with(first)
    peer: Doc[Any] = Doc()
    peer.apply_update(doc.get_update())
    updates = change(doc, fragment, second)
    assert len(updates) <= 1
    assert read_fragment(fragment) == second
    for update in updates:
        peer.apply_update(update)
    assert read_fragment(peer.get("default", type=XmlFragment)) == second


def test_every_fixture_into_every_other() -> None:
    for source in FIXTURES:
        for target in FIXTURES:
            doc, fragment = doc_with(body(source))
            change(doc, fragment, body(target))
            assert read_fragment(fragment) == body(target), (source.name, target.name)


def test_a_one_word_change_keeps_every_other_item_and_concurrent_typing() -> None:
    blocks = body(FIXTURES[0])
    doc, fragment = doc_with(blocks)
    peer: Doc[Any] = Doc()
    peer.apply_update(doc.get_update())
    peer_fragment = peer.get("default", type=XmlFragment)
    # The peer types at the end of the paragraph the server changes, concurrently.
    index = next(i for i, b in enumerate(blocks) if b.name == "paragraph" and b.content)
    target_text = next(c for c in peer_fragment.children[index].children if isinstance(c, XmlText))
    target_text.insert(len(target_text), " (peer)")
    paragraph = blocks[index]
    first = paragraph.content[0]
    assert isinstance(first, Text)
    replaced = Text(first.text.replace(first.text[:3], "XYZ", 1), first.marks)
    edited = paragraph.with_content((replaced, *paragraph.content[1:]))
    target = (*blocks[:index], edited, *blocks[index + 1 :])
    children_before = list(fragment.children)
    (update,) = change(doc, fragment, target)
    assert list(fragment.children) == children_before  # no block replaced
    assert len(update) < 100
    peer.apply_update(update)
    doc.apply_update(peer.get_update())
    assert read_fragment(fragment) == read_fragment(peer_fragment)
    merged = read_fragment(fragment)[index]
    assert "XYZ" in str(merged) and "(peer)" in str(merged)


def test_three_way_merge_takes_the_files_changes_and_keeps_the_editors() -> None:
    def para(text: str) -> Node:
        return parse_markdown(text + "\n")[0][0]

    a, b, c, d = para("a"), para("b"), para("c"), para("d")
    base = (a, b, c)
    ours = (a, para("b typed"), c)  # the editors changed b
    theirs = (para("a file"), para("b file"), c, d)  # the file changed a and b, added d
    merged = merge_blocks(base, ours, theirs)
    # Both inserted at the end of b: both kept, the editors' first.
    assert merged.blocks == (para("a file"), para("b typed file"), c, d)
    assert merged.conflicts == 0
    # The file deletes c; the editors inserted a block before it: both happen.
    merged = merge_blocks(base, (a, b, para("new"), c), (a, b))
    assert merged.blocks == (a, b, para("new"))
    # The file holds what the editors have already (a publish of their draft): no conflict.
    assert merge_blocks(base, ours, ours).blocks == ours
    assert merge_blocks(base, ours, ours).conflicts == 0


def test_three_way_merge_in_one_paragraph() -> None:
    def para(text: str) -> Node:
        return parse_markdown(text + "\n")[0][0]

    base = (para("The meeting opens at 19 h 02 in the hall."),)
    ours = (para("The *regular* meeting opens at 19 h 02 in the hall."),)
    theirs = (para("The meeting opens at 19 h 05 in the main hall."),)
    merged = merge_blocks(base, ours, theirs)
    assert merged.blocks == (para("The *regular* meeting opens at 19 h 05 in the main hall."),)
    assert merged.conflicts == 0
    # The same characters changed on both sides: the editors' version stays.
    overlapping = (para("The meeting opens at 19 h 07 in the hall."),)
    merged = merge_blocks(base, overlapping, theirs)
    assert merged.blocks == overlapping
    assert merged.conflicts == 1
    # A changed mark is a change too: a word bolded by the file, a word typed by the editors.
    bolded = (para("The meeting opens at **19 h 02** in the hall."),)
    typed = (para("The meeting opens at 19 h 02 in the hall. Public."),)
    merged = merge_blocks(base, typed, bolded)
    assert merged.blocks == (para("The meeting opens at **19 h 02** in the hall. Public."),)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents(), documents())
def test_a_change_on_one_side_only_is_taken_whole(
    base: tuple[Node, ...], changed: tuple[Node, ...]
) -> None:
    assert merge_blocks(base, base, changed).blocks == changed
    assert merge_blocks(base, changed, base).blocks == changed


def test_a_paragraph_added_before_an_edited_one_leaves_the_edited_one_in_place() -> None:
    def blocks(markdown: str) -> tuple[Node, ...]:
        return tuple(parse_markdown(markdown)[0])

    doc, fragment = doc_with(blocks("# Minutes\n\nThe meeting opens at 19 h 02 in the hall.\n"))
    edited = fragment.children[1]
    target = blocks(
        "# Minutes\n\nA new first paragraph.\n\nThe meeting opens at 19 h 05 in the hall.\n"
    )
    change(doc, fragment, target)
    assert read_fragment(fragment) == target
    assert fragment.children[2] == edited  # the same element, its text edited in place
