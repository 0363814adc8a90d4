"""Hypothesis strategies for document edits: Y.Text, Y.Map, Y.Array, Y.XmlFragment and the
editor's y-prosemirror fragment, with text over all of Unicode.

An edit is a plain tuple (so hypothesis prints, shrinks and replays it); the Yjs oracle
(`tests/js/yjs_peer.mjs`, `applyOp`) performs it, taking positions modulo the document's
current lengths, so every edit applies to whatever state the client's replica is in.
Text offsets count UTF-16 code units, as in Yjs and in a browser: an offset may fall
between the two halves of a surrogate pair (Yjs allows it, and y-prosemirror's diff can
produce it), and the positions drawn reach every offset of short texts.
"""

from __future__ import annotations

from hypothesis import strategies as st

positions = st.integers(0, 64)

# Characters that an editor meets and that stress offsets: precomposed and combining
# accents, CJK, characters outside the BMP (surrogate pairs in UTF-16), emoji with skin
# tones, ZWJ sequences, flags (pairs of regional indicators), keycaps, variation selectors.
SAMPLES = (
    "é",
    "e\u0301",  # e + combining acute
    "n\u0303\u0323",  # two combining marks
    "ß",
    "Ω",
    "\u0627",  # right-to-left (alef)
    "中文",
    "日本語",
    "한",
    "😀",
    "\U0001d518",  # mathematical fraktur U, outside the BMP
    "𠜎",  # CJK extension B, outside the BMP
    "👍🏽",  # skin tone modifier
    "👩\u200d👩\u200d👧\u200d👦",  # ZWJ family
    "🧑🏿\u200d🚀",  # ZWJ with a skin tone
    "🇫🇷",
    "🇨🇭",
    "🏳️\u200d🌈",
    "1️⃣",  # keycap
    "\u2764\ufe0f",  # variation selector
    "\ufeff",  # zero-width no-break space
)
pieces = st.one_of(
    st.text(alphabet="abcxyz ", min_size=1, max_size=3),
    st.sampled_from(SAMPLES),
    # Any code point a JavaScript string can carry in UTF-8 (lone surrogates aside: no
    # editor produces them, and Yjs replaces a split pair's halves itself).
    st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=3),
)
words = st.lists(pieces, min_size=1, max_size=4).map("".join)
keys = st.sampled_from(["a", "b", "c", "d", "é", "🔑"])
values = st.one_of(
    st.integers(-5, 5),
    words,
    st.booleans(),
    st.lists(st.integers(0, 3), max_size=3),
)
lengths = st.integers(1, 4)

edit_ops = st.one_of(
    st.tuples(st.just("text_insert"), positions, words),
    st.tuples(st.just("text_delete"), positions, lengths),
    st.tuples(
        st.just("text_format"),
        positions,
        lengths,
        st.sampled_from(["bold", "italic"]),
        st.sampled_from([True, None]),
    ),
    st.tuples(st.just("map_set"), keys, values),
    st.tuples(st.just("map_delete"), keys),
    st.tuples(
        st.just("array_insert"),
        positions,
        st.one_of(values, st.fixed_dictionaries({"k": st.integers(0, 9)})),
    ),
    st.tuples(st.just("array_delete"), positions, st.integers(1, 3)),
    st.tuples(st.just("xml_element"), positions, st.sampled_from(["p", "h1", "li"]), words),
    st.tuples(st.just("xml_text"), positions, positions, words),
    st.tuples(st.just("xml_text_delete"), positions, positions, lengths),
    st.tuples(st.just("xml_attribute"), positions, st.sampled_from(["class", "id"]), words),
    st.tuples(st.just("xml_delete"), positions),
    # The editor: a ProseMirror transaction on the records room's fragment ('default'),
    # written into Yjs by y-prosemirror's diff (`updateYFragment`).
    st.tuples(st.just("pm_insert"), positions, words),
    st.tuples(st.just("pm_delete"), positions, lengths),
    st.tuples(st.just("pm_replace"), positions, lengths, words),
    st.tuples(st.just("pm_mark"), positions, lengths, st.sampled_from(["strong", "em"])),
    st.tuples(st.just("pm_split"), positions),
)


def big_value(index: int) -> tuple[str, str, str]:
    """A 4 KiB map value: a few of these back up a client that stopped reading."""
    return ("map_set", "blob", f"{index:04d}" + "x" * 4092)
