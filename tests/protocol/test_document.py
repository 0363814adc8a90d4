"""`YDocument`: a character split inside its surrogate pair ends as Yjs has it.

The updates are real Yjs output (`data/yjs_structs.json`, see test_ystructs.py); the texts
they must produce are what the Yjs editors held. The random stories at the end use Yjs as
the oracle through `tests/js/split_sim.mjs`.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pycrdt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Text

from civicrealtime.persistence.rebuild import rebuild
from civicrealtime.protocol.document import YDocument
from civicrealtime.protocol.updates import InvalidUpdate, decode_state_vector
from civicrealtime.protocol.varint import encode_var_string, encode_var_uint
from civicrealtime.protocol.ystructs import read_layout

GOLDEN: dict[str, Any] = json.loads(
    (Path(__file__).parent / "data" / "yjs_structs.json").read_text(encoding="utf-8")
)
JS_DIR = Path(__file__).resolve().parents[1] / "js"
needs_node = pytest.mark.skipif(
    shutil.which("node") is None or not (JS_DIR / "node_modules").is_dir(),
    reason="needs node and `npm ci --prefix tests/js`",
)


def update(name: str) -> bytes:
    return bytes.fromhex(GOLDEN["cases"][name]["update"])


def text_of(doc: Doc[Any]) -> str:
    return str(doc.get("text", type=Text))


def test_the_issue_six_steps_end_as_the_editors_text() -> None:
    document = YDocument()
    assert document.apply(update("typed_emoji")) == 0
    assert document.apply(update("insert_inside_pair")) == 1
    assert text_of(document.doc) == GOLDEN["editors_text"] == "Avis \ufffdé\ufffd public"
    assert document.splits_contained == 1


def test_plain_pycrdt_still_splits_inside_the_pair() -> None:
    """The upstream defect this module works around (docs/upstream/yrs-surrogate-split.md).

    When this fails, yrs splits like Yjs: check the reproduction there and drop
    `YDocument`'s containment.
    """
    doc: Doc[Any] = Doc()
    doc.apply_update(update("typed_emoji"))
    doc.apply_update(update("insert_inside_pair"))
    assert text_of(doc) == "Avis 😀é public"


def test_a_split_inside_the_same_update_is_rewritten_there() -> None:
    merged = pycrdt.merge_updates(update("typed_emoji"), update("insert_inside_pair"))
    document = YDocument()
    assert document.apply(merged) == 1
    assert text_of(document.doc) == GOLDEN["editors_text"]


def test_a_split_waiting_for_its_character_is_contained_when_it_arrives() -> None:
    document = YDocument()
    assert document.apply(update("insert_inside_pair")) == 0  # pending: A's item is missing
    assert text_of(document.doc) == ""
    assert document.apply(update("typed_emoji")) == 1
    assert text_of(document.doc) == GOLDEN["editors_text"]


def test_a_deleted_range_ending_inside_a_pair() -> None:
    document = YDocument()
    document.apply(update("two_emoji"))
    assert document.apply(update("delete_inside_pairs")) == 1
    assert text_of(document.doc) == GOLDEN["delete_text"] == "x\ufffd🏽z"


def test_no_split_no_rewrite_and_the_doc_stays() -> None:
    document = YDocument()
    document.apply(update("two_emoji"))
    before = document.doc
    for name in ("map_any", "array_any", "nested_types", "subdoc", "deleted_and_gc", "skip"):
        assert document.apply(update(name)) == 0
    assert document.doc is before
    assert document.splits_contained == 0
    assert text_of(document.doc).startswith("x😀y👍🏽z")


def test_observer_follows_a_rebuilt_doc() -> None:
    """`on_change` sees the incoming change (not the rebuild) and keeps working after it."""
    seen: list[bytes] = []
    document = YDocument(on_change=seen.append)
    document.apply(update("typed_emoji"))
    first = document.doc
    document.apply(update("insert_inside_pair"))
    assert document.doc is not first  # rebuilt from the rewritten state
    assert len(seen) == 2
    # A peer applying what the observer reported ends with the same text.
    peer: Doc[Any] = Doc()
    for change in seen:
        peer.apply_update(change)
    document.apply(update("two_emoji"))  # a different root client; still observed
    assert len(seen) == 3
    document.close()
    document.apply(pycrdt.merge_updates(update("map_any")))
    assert len(seen) == 3


def test_a_refused_update_leaves_the_document_unchanged() -> None:
    document = YDocument()
    document.apply(update("typed_emoji"))
    before, state = document.doc, document.doc.get_update()
    with pytest.raises(InvalidUpdate):
        document.apply(b"\x01\x01\x02\x00\xc4\x01\x05\x01\x06\x04\xff\xff\xff\xff\x00")
    assert document.doc is before
    assert document.doc.get_update() == state


def test_reindex_learns_pairs_written_around_apply() -> None:
    """A seed writes into the Doc directly; `reindex` makes its pairs known."""
    document = YDocument()
    text = document.doc.get("text", type=Text)
    text += "Avis 😀 public"
    document.reindex()
    own = document.doc.client_id
    # Another client inserts "é" right after the emoji's high half (clock 5).
    split = (
        encode_var_uint(1)
        + encode_var_uint(1)
        + encode_var_uint(77)
        + encode_var_uint(0)
        + bytes([0x84])
        + encode_var_uint(own)
        + encode_var_uint(5)
        + encode_var_string("é")
        + encode_var_uint(0)
    )
    assert document.apply(split) == 1
    assert text_of(document.doc) == "Avis \ufffdé\ufffd public"


def test_compaction_contains_like_a_room() -> None:
    rebuilt = rebuild([update("typed_emoji"), update("insert_inside_pair")])
    doc: Doc[Any] = Doc()
    doc.apply_update(rebuilt.state)
    assert text_of(doc) == GOLDEN["editors_text"]


def _node(*args: str, stdin: str | None = None) -> dict[str, Any]:
    out = subprocess.run(
        ["node", str(JS_DIR / "split_sim.mjs"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=JS_DIR,
    ).stdout
    result: dict[str, Any] = json.loads(out)
    return result


@needs_node
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_random_editing_matches_yjs(seed: int) -> None:
    """Three Yjs editors type and delete at any UTF-16 offset, inside pairs too."""
    story = _node("gen", "--seed", str(seed), "--ops", "300")
    assert story["editors_agree"]
    _assert_serves_the_story(story)


@needs_node
@pytest.mark.parametrize("seed", [1, 2])
def test_random_formatting_matches_a_yjs_joiner(seed: int) -> None:
    """With format() over ranges ending inside pairs too; the reference is a Yjs joiner
    applying the updates in the server's order (the editors may disagree, see
    split_sim.mjs)."""
    _assert_serves_the_story(_node("gen", "--seed", str(seed), "--ops", "300", "--format"))


@needs_node
@pytest.mark.parametrize("seed", [1, 4])
def test_updates_out_of_order_end_as_yjs(seed: int) -> None:
    """Updates shuffled within windows of six: many wait for their dependencies, a rebuild
    re-applies them, and the end state is still the one Yjs editors converge on."""
    story = _node("gen", "--seed", str(seed), "--ops", "200")
    updates = [bytes.fromhex(raw) for raw in story["updates"]]
    rnd = random.Random(seed)
    order = list(range(len(updates)))
    for start in range(0, len(order) - 5, 3):
        window = order[start : start + 6]
        rnd.shuffle(window)
        order[start : start + 6] = window
    document = YDocument()
    waited = 0
    reaches: list[dict[int, int]] = []
    for index in order:
        document.apply(updates[index])
        waited = max(waited, document.waiting)
        # Every update yrs has not fully integrated is among those the document keeps.
        reaches.append(read_layout(updates[index]).reach)
        state = decode_state_vector(document.doc.get_state())
        uncovered = [r for r in reaches if any(state.get(c, 0) < k for c, k in r.items())]
        assert document.waiting >= len(uncovered)
    assert waited > 3  # the shuffle did make updates wait
    assert document.waiting == 0
    served = _node("decode", stdin=document.doc.get_update().hex())
    assert served == {"text": story["text"], "delta": story["delta"]}


def _assert_serves_the_story(story: dict[str, Any]) -> None:
    document = YDocument()
    for raw in story["updates"]:
        document.apply(bytes.fromhex(raw))
    assert document.splits_contained > 0  # the story did split characters
    assert text_of(document.doc) == story["text"]
    served = _node("decode", stdin=document.doc.get_update().hex())
    assert served == {"text": story["text"], "delta": story["delta"]}


def test_an_update_whose_split_points_cannot_be_read_is_refused() -> None:
    """A var-uint padded to 10 bytes: yrs and lib0 read it, our reader does not. Applied
    as is, the split inside the emoji went in the yrs way, and the server's text differed
    from the editors'."""
    document = YDocument()
    text = document.doc.get("text", type=Text)
    text += "Avis 😀 public"
    document.reindex()
    before = document.doc.get_update()
    padded_five = bytes([0x85] + [0x80] * 8 + [0x00])
    split = (
        encode_var_uint(1)
        + encode_var_uint(1)
        + encode_var_uint(77)
        + encode_var_uint(0)
        + bytes([0x84])
        + encode_var_uint(document.doc.client_id)
        + padded_five
        + encode_var_string("é")
        + encode_var_uint(0)
    )
    with pytest.raises(InvalidUpdate):
        document.apply(split)
    assert text_of(document.doc) == "Avis 😀 public"
    assert document.doc.get_update() == before


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(sorted(GOLDEN["cases"])),
    edits=st.lists(
        st.tuples(st.integers(0, 10_000), st.integers(0, 255), st.integers(0, 2)),
        min_size=1,
        max_size=4,
    ),
)
def test_a_mutated_update_is_contained_or_refused(
    name: str, edits: list[tuple[int, int, int]]
) -> None:
    """Real Yjs updates with bytes replaced, inserted or removed: `apply` raises nothing
    but `InvalidUpdate`, and takes no update whose split points it could not read."""
    data = bytearray(update(name))
    for position, byte, kind in edits:
        at = position % (len(data) + 1)
        if kind == 0 and at < len(data):
            data[at] = byte
        elif kind == 1:
            data.insert(at, byte)
        elif at < len(data):
            del data[at]
    mutated = bytes(data)
    document = YDocument()
    document.apply(update("typed_emoji"))
    try:
        document.apply(mutated)
    except InvalidUpdate:
        return
    read_layout(mutated)  # raises MalformedMessage if an unreadable update went in


def _string_item_at(client: int, clock: int, text: str) -> bytes:
    """A v1 update of one string item under the root text `t`, by hand."""
    return (
        encode_var_uint(1)  # one client
        + encode_var_uint(1)  # one struct
        + encode_var_uint(client)
        + encode_var_uint(clock)
        + bytes([0x04])  # Item: ContentString, no origins, parent named next
        + encode_var_uint(1)  # the parent is a root, by name
        + encode_var_string("t")
        + encode_var_string(text)
        + encode_var_uint(0)  # empty delete set
    )


def test_a_clock_past_32_bits_is_refused_not_wrapped() -> None:
    # Control: the same item at clock 0 is an ordinary update that yrs integrates.
    plain = YDocument()
    plain.apply(_string_item_at(7, 0, "x"))
    assert str(plain.doc.get("t", type=Text)) == "x"
    # yrs keeps clocks in 32 bits: clock 2^32 would wrap to 0 there, while Yjs keeps it
    # pending at 2^32. Refused, the document is left as it was.
    document = YDocument()
    with pytest.raises(InvalidUpdate, match="past what yrs can hold"):
        document.apply(_string_item_at(7, 2**32, "x"))
    assert str(document.doc.get("t", type=Text)) == ""
    assert decode_state_vector(document.doc.get_state()) == {}
