"""Hypothesis strategies for document edits: Y.Text, Y.Map, Y.Array and Y.XmlFragment.

An edit is a plain tuple (so hypothesis prints, shrinks and replays it); `harness.apply_op`
performs it, taking positions modulo the document's current lengths, so every edit applies
to whatever state the client's replica is in.
"""

from __future__ import annotations

from hypothesis import strategies as st

positions = st.integers(0, 64)
# ASCII only where positions count: pycrdt's text offsets are UTF-8 bytes, and an offset
# inside a character panics in yrs (a client-side quirk, not what this fuzzer is about).
words = st.text(alphabet="abcxyz ", min_size=1, max_size=6)
keys = st.sampled_from(["a", "b", "c", "d"])
values = st.one_of(
    st.integers(-5, 5),
    st.text(alphabet="abcé✓ ", max_size=6),
    st.booleans(),
    st.lists(st.integers(0, 3), max_size=3),
)

edit_ops = st.one_of(
    st.tuples(st.just("text_insert"), positions, words),
    st.tuples(st.just("text_delete"), positions, st.integers(1, 4)),
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
    st.tuples(st.just("xml_attribute"), positions, st.sampled_from(["class", "id"]), words),
    st.tuples(st.just("xml_delete"), positions),
)


def big_value(index: int) -> tuple[str, str, str]:
    """A 4 KiB map value: a few of these back up a client that stopped reading."""
    return ("map_set", "blob", f"{index:04d}" + "x" * 4092)
