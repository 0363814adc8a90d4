"""Awareness updates: wire format, y-protocols clock rules, removal, convergence."""

from __future__ import annotations

import json
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Awareness, Doc

from civicrealtime.protocol.awareness import (
    ENTRY_OVERHEAD,
    AwarenessChange,
    AwarenessEntry,
    AwarenessLimits,
    AwarenessRefused,
    AwarenessStates,
    decode_awareness_update,
    encode_awareness_update,
)
from civicrealtime.protocol.errors import MalformedMessage
from civicrealtime.protocol.varint import MAX_SAFE_INTEGER, encode_var_uint

# y-protocols 1.0.7: `encodeAwarenessUpdate` for client 12345 after
# `setLocalState({user: {name: "Ana", color: "#f00"}})` (clock 1), then after
# `removeAwarenessStates` (clock 2, "null").
JS_STATE = '{"user":{"name":"Ana","color":"#f00"}}'
JS_UPDATE = bytes.fromhex(
    "01b96001267b2275736572223a7b226e616d65223a22416e61222c22636f6c6f72223a2223663030227d7d"
)
JS_REMOVAL = bytes.fromhex("01b96002046e756c6c")

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
states = json_values.filter(lambda v: v is not None).map(
    lambda v: json.dumps(v, separators=(",", ":"), ensure_ascii=False)
)
client_ids = st.integers(min_value=0, max_value=2**32 - 1)
clocks = st.integers(min_value=0, max_value=MAX_SAFE_INTEGER)
entries = st.builds(
    AwarenessEntry,
    client_id=client_ids,
    clock=clocks,
    state=states | st.just("null"),
)


def entry(client_id: int, clock: int, state: str) -> AwarenessEntry:
    return AwarenessEntry(client_id=client_id, clock=clock, state=state)


def change(
    updated: set[int] | None = None,
    removed: set[int] | None = None,
    outranked: set[int] | None = None,
    refused: set[int] | None = None,
) -> AwarenessChange:
    return AwarenessChange(
        updated=frozenset(updated or ()),
        removed=frozenset(removed or ()),
        outranked=frozenset(outranked or ()),
        refused=frozenset(refused or ()),
    )


def raw_update(*items: tuple[int, int, bytes]) -> bytes:
    out = encode_var_uint(len(items))
    for client_id, clock, state in items:
        out += encode_var_uint(client_id) + encode_var_uint(clock)
        out += encode_var_uint(len(state)) + state
    return out


# --- wire format -------------------------------------------------------------------------


def test_decode_y_protocols_update() -> None:
    assert decode_awareness_update(JS_UPDATE) == [entry(12345, 1, JS_STATE)]
    assert decode_awareness_update(JS_REMOVAL) == [entry(12345, 2, "null")]


def test_encode_matches_y_protocols() -> None:
    assert encode_awareness_update([entry(12345, 1, JS_STATE)]) == JS_UPDATE
    assert encode_awareness_update([entry(12345, 2, "null")]) == JS_REMOVAL


def test_empty_update() -> None:
    assert encode_awareness_update([]) == b"\x00"
    assert decode_awareness_update(b"\x00") == []


def test_encode_accepts_any_iterable() -> None:
    generated = (entry(i, i, "{}") for i in range(3))
    assert decode_awareness_update(encode_awareness_update(generated)) == [
        entry(0, 0, "{}"),
        entry(1, 1, "{}"),
        entry(2, 2, "{}"),
    ]


@settings(max_examples=150)
@given(st.lists(entries, max_size=8))
def test_round_trip(items: list[AwarenessEntry]) -> None:
    assert decode_awareness_update(encode_awareness_update(items)) == items


@settings(max_examples=100)
@given(st.lists(entries, min_size=1, max_size=4))
def test_proper_prefixes_are_malformed(items: list[AwarenessEntry]) -> None:
    payload = encode_awareness_update(items)
    for cut in range(len(payload)):
        with pytest.raises(MalformedMessage):
            decode_awareness_update(payload[:cut])


def test_trailing_bytes_are_ignored() -> None:
    assert decode_awareness_update(JS_UPDATE + b"\xff\xff") == [entry(12345, 1, JS_STATE)]


@pytest.mark.parametrize(
    "state",
    [
        b"",
        b"{",
        b"undefined",
        b"{'a': 1}",
        b"NaN",
        b"Infinity",
        b"-Infinity",
        b'{"x":NaN}',
        b"[1,Infinity]",
        b"\xef\xbb\xbfnull",  # BOM
        b"[" * 5000,  # a RecursionError in the parser: refused, not a crash
    ],
    ids=lambda s: repr(s[:20]),
)
def test_state_must_be_json(state: bytes) -> None:
    with pytest.raises(MalformedMessage, match="not JSON"):
        decode_awareness_update(raw_update((1, 1, state)))


@pytest.mark.parametrize(
    "state",
    [b"[" * 5000 + b"]" * 5000, b'{"a":' * 3000 + b"1" + b"}" * 3000],
    ids=["array", "object"],
)
def test_deep_nesting_never_escapes(state: bytes) -> None:
    # Deeper than CPython 3.11's JSON parser recurses: refused as malformed (a Python that
    # parses it accepts a valid state).
    try:
        [decoded] = decode_awareness_update(raw_update((1, 1, state)))
    except MalformedMessage as exc:
        assert "not JSON" in str(exc)
    else:
        assert decoded == entry(1, 1, state.decode())


def test_state_must_be_utf8() -> None:
    with pytest.raises(MalformedMessage, match="UTF-8"):
        decode_awareness_update(raw_update((1, 1, b'"\xff"')))


def test_one_bad_entry_fails_the_whole_update() -> None:
    with pytest.raises(MalformedMessage):
        decode_awareness_update(raw_update((1, 1, b"{}"), (2, 1, b"{"), (3, 1, b"{}")))


@pytest.mark.parametrize("text", [" null", "null ", "\tnull\n", "\r\nnull"])
def test_null_with_whitespace_is_a_removal(text: str) -> None:
    # y-protocols removes when `JSON.parse(state) === null`; so do we.
    [decoded] = decode_awareness_update(encode_awareness_update([entry(1, 2, text)]))
    assert decoded == entry(1, 2, "null")
    aw = AwarenessStates()
    aw.apply([entry(1, 1, "{}")])
    assert aw.apply([decoded]) == change(removed={1})
    assert 1 not in aw


@pytest.mark.parametrize("count", [1, 2, 1000, 2**32, MAX_SAFE_INTEGER])
def test_count_larger_than_payload(count: int) -> None:
    # A lying count fails on the header, before any entry is read.
    payload = encode_var_uint(count) + b"\x01\x01"
    with pytest.raises(MalformedMessage, match="claims"):
        decode_awareness_update(payload)


def test_count_one_too_many() -> None:
    one = encode_awareness_update([entry(1, 1, "{}")])
    with pytest.raises(MalformedMessage):
        decode_awareness_update(b"\x02" + one[1:])


@settings(max_examples=300)
@given(st.binary(max_size=80))
def test_arbitrary_bytes_only_raise_malformed(payload: bytes) -> None:
    try:
        decoded = decode_awareness_update(payload)
    except MalformedMessage:
        return
    for item in decoded:
        json.loads(item.state)


# --- clock rules -------------------------------------------------------------------------


def test_first_state_is_added() -> None:
    aw = AwarenessStates()
    assert aw.apply([entry(7, 3, '{"a":1}')]) == change(updated={7})
    assert aw.states() == {7: '{"a":1}'}
    assert len(aw) == 1
    assert 7 in aw
    assert 8 not in aw


def test_newer_clock_wins() -> None:
    aw = AwarenessStates()
    aw.apply([entry(7, 3, '{"a":1}')])
    assert aw.apply([entry(7, 4, '{"a":2}')]) == change(updated={7})
    assert aw.states() == {7: '{"a":2}'}


def test_same_clock_state_is_ignored() -> None:
    aw = AwarenessStates()
    aw.apply([entry(7, 3, '{"a":1}')])
    result = aw.apply([entry(7, 3, '{"a":2}')])
    assert result == change()
    assert not result.changed
    assert aw.states() == {7: '{"a":1}'}


def test_older_clock_is_ignored() -> None:
    aw = AwarenessStates()
    aw.apply([entry(7, 3, '{"a":1}')])
    assert aw.apply([entry(7, 2, '{"a":2}')]) == change()
    assert aw.apply([entry(7, 2, "null")]) == change()
    assert aw.states() == {7: '{"a":1}'}


def test_same_clock_removal_of_held_state() -> None:
    aw = AwarenessStates()
    aw.apply([entry(7, 3, '{"a":1}')])
    result = aw.apply([entry(7, 3, "null")])
    assert result == change(removed={7})
    assert result.changed
    assert 7 not in aw
    assert len(aw) == 0


def test_newer_removal_of_held_state() -> None:
    aw = AwarenessStates()
    aw.apply([entry(7, 3, '{"a":1}')])
    assert aw.apply([entry(7, 9, "null")]) == change(removed={7})
    assert aw.states() == {}


def test_removal_of_unknown_client_changes_nothing_but_the_clock() -> None:
    aw = AwarenessStates()
    assert aw.apply([entry(7, 5, "null")]) == change()
    assert aw.states() == {}
    # The clock was recorded: older and same-clock states stay ignored (and are outranked).
    assert aw.apply([entry(7, 4, "{}")]) == change(outranked={7})
    assert aw.apply([entry(7, 5, "{}")]) == change(outranked={7})
    assert aw.apply([entry(7, 6, "{}")]) == change(updated={7})


def test_same_clock_removal_when_not_held_is_ignored() -> None:
    aw = AwarenessStates()
    aw.apply([entry(7, 5, "{}")])
    aw.apply([entry(7, 5, "null")])
    assert aw.apply([entry(7, 5, "null")]) == change()


def test_clocks_outlive_states() -> None:
    aw = AwarenessStates()
    aw.apply([entry(7, 5, '{"a":1}')])
    aw.apply([entry(7, 6, "null")])
    # A late duplicate of the old update stays ignored.
    assert aw.apply([entry(7, 5, '{"a":1}')]) == change(outranked={7})
    assert 7 not in aw


def test_forget_clocks() -> None:
    aw = AwarenessStates()
    aw.apply([entry(1, 5, "{}"), entry(2, 5, "{}"), entry(3, 5, "{}")])
    aw.apply([entry(2, 6, "null"), entry(3, 6, "null")])
    aw.forget_clocks(keep=[3])
    # Client 2's clock is gone: an old state is accepted again (bounded memory's price).
    assert aw.apply([entry(2, 5, "{}")]) == change(updated={2})
    # Client 3's clock was kept; client 1 holds a state, so its clock always stays.
    assert aw.apply([entry(3, 5, "{}")]) == change(outranked={3})
    assert aw.apply([entry(1, 4, '{"old":1}')]) == change()
    assert aw.states() == {1: "{}", 2: "{}"}


def test_set_then_remove_in_one_update() -> None:
    aw = AwarenessStates()
    assert aw.apply([entry(7, 1, "{}"), entry(7, 2, "null")]) == change(removed={7})
    assert aw.states() == {}


def test_remove_then_set_in_one_update() -> None:
    aw = AwarenessStates()
    aw.apply([entry(7, 1, "{}")])
    assert aw.apply([entry(7, 2, "null"), entry(7, 3, '{"b":2}')]) == change(updated={7})
    assert aw.states() == {7: '{"b":2}'}


def test_many_clients_in_one_update() -> None:
    aw = AwarenessStates()
    aw.apply([entry(1, 1, "{}"), entry(2, 1, "{}")])
    result = aw.apply([entry(1, 2, "null"), entry(2, 1, "[]"), entry(3, 1, "{}")])
    assert result == change(updated={3}, removed={1})
    assert aw.states() == {2: "{}", 3: "{}"}


def test_states_returns_a_copy() -> None:
    aw = AwarenessStates()
    aw.apply([entry(1, 1, "{}")])
    snapshot = aw.states()
    snapshot[2] = "{}"
    del snapshot[1]
    assert aw.states() == {1: "{}"}


def test_clock_zero_from_unknown_client_is_ignored_like_y_protocols() -> None:
    aw = AwarenessStates()
    # Ignored, but not outranked: there is no removal to tell the client about.
    assert aw.apply([entry(7, 0, "{}")]) == change()
    assert 7 not in aw
    assert aw.removals([7]) is None


# --- a client back with the clock it had before its removal -------------------------------


def test_state_older_than_its_removal_is_outranked() -> None:
    aw = AwarenessStates()
    aw.apply([entry(7, 3, '{"a":1}')])
    removal = aw.remove([7])  # the server dropped the connection: clock 4, null
    assert removal is not None
    # The client reconnects with the clock it had: ignored, as y-protocols does, but flagged.
    assert aw.apply([entry(7, 3, '{"a":1}')]) == change(outranked={7})
    assert aw.removals([7]) == removal
    assert 7 not in aw


def test_held_or_newer_states_are_not_outranked() -> None:
    aw = AwarenessStates()
    aw.apply([entry(7, 3, '{"a":1}'), entry(8, 3, "{}")])
    # A stale duplicate while the state is held: nothing to tell.
    assert aw.apply([entry(7, 2, "{}")]) == change()
    assert aw.removals([7]) is None
    aw.remove([8])
    # A removal at an old clock is not a state coming back.
    assert aw.apply([entry(8, 2, "null")]) == change()
    # Outranked, then newer in the same update: the newer one wins and nothing is flagged.
    assert aw.apply([entry(8, 3, "{}"), entry(8, 5, '{"b":1}')]) == change(updated={8})


def test_y_protocols_client_answers_the_removal_by_outranking_it() -> None:
    """pycrdt's port of y-protocols raises its clock past a removal of itself."""
    client = Awareness(Doc(client_id=7))
    client.set_local_state({"user": "ana"})
    room = AwarenessStates()
    room.apply(decode_awareness_update(client.encode_awareness_update([7])))
    room.remove([7])  # its connection died
    result = room.apply(decode_awareness_update(client.encode_awareness_update([7])))
    assert result == change(outranked={7})
    removals = room.removals(result.outranked)
    assert removals is not None
    client.apply_awareness_update(removals, "server")
    assert client.get_local_state() == {"user": "ana"}
    # Its next update beats the removal, so the room shows it again.
    assert room.apply(decode_awareness_update(client.encode_awareness_update([7]))) == change(
        updated={7}
    )


def test_clock_zero_parity_reference_pycrdt() -> None:
    # The reference behaviour the xfail above describes, from pycrdt's port of y-protocols.
    ref = Awareness(Doc(client_id=1))
    ref.apply_awareness_update(encode_awareness_update([entry(7, 0, "{}")]), "test")
    assert 7 not in ref.states
    ref.apply_awareness_update(encode_awareness_update([entry(7, 1, "{}")]), "test")
    assert ref.states[7] == {}


# --- remove() and encode_all() -----------------------------------------------------------


def test_remove_matches_y_protocols_bytes() -> None:
    aw = AwarenessStates()
    aw.apply(decode_awareness_update(JS_UPDATE))
    assert aw.remove([12345]) == JS_REMOVAL
    assert 12345 not in aw


def test_remove_produces_clock_plus_one_nulls() -> None:
    aw = AwarenessStates()
    aw.apply([entry(1, 4, "{}"), entry(2, 1, "{}"), entry(3, 9, "{}")])
    update = aw.remove([1, 2, 99])
    assert update is not None
    assert decode_awareness_update(update) == [entry(1, 5, "null"), entry(2, 2, "null")]
    assert aw.states() == {3: "{}"}
    # The new clocks hold: an update at the removed clock does not resurrect the state.
    assert aw.apply([entry(1, 5, "{}")]) == change(outranked={1})
    assert aw.apply([entry(1, 6, "{}")]) == change(updated={1})


def test_remove_unknown_or_already_removed_returns_none() -> None:
    aw = AwarenessStates()
    assert aw.remove([1, 2]) is None
    assert aw.remove([]) is None
    aw.apply([entry(1, 1, "{}")])
    aw.apply([entry(1, 2, "null")])
    assert aw.remove([1]) is None


def test_remove_same_id_twice() -> None:
    aw = AwarenessStates()
    aw.apply([entry(1, 1, "{}")])
    update = aw.remove([1, 1])
    assert update is not None
    assert decode_awareness_update(update) == [entry(1, 2, "null")]


def test_removal_is_accepted_by_other_peers() -> None:
    # The server's removal reaches a peer that holds the same state.
    server = AwarenessStates()
    peer = AwarenessStates()
    state_update = encode_awareness_update([entry(5, 3, '{"user":"x"}')])
    server.apply(decode_awareness_update(state_update))
    peer.apply(decode_awareness_update(state_update))
    removal = server.remove([5])
    assert removal is not None
    assert peer.apply(decode_awareness_update(removal)) == change(removed={5})
    assert peer.states() == {}


def test_removal_is_accepted_by_pycrdt_awareness() -> None:
    server = AwarenessStates()
    ref = Awareness(Doc(client_id=1))
    state_update = encode_awareness_update([entry(5, 3, '{"user":"x"}')])
    server.apply(decode_awareness_update(state_update))
    ref.apply_awareness_update(state_update, "test")
    assert ref.states[5] == {"user": "x"}
    removal = server.remove([5])
    assert removal is not None
    ref.apply_awareness_update(removal, "test")
    assert 5 not in ref.states
    assert ref.meta[5]["clock"] == 4


def test_encode_all() -> None:
    aw = AwarenessStates()
    assert aw.encode_all() is None
    aw.apply([entry(1, 4, '{"a":1}'), entry(2, 7, "[]"), entry(3, 1, "{}")])
    aw.apply([entry(3, 2, "null")])
    everything = aw.encode_all()
    assert everything is not None
    assert sorted(decode_awareness_update(everything), key=lambda e: e.client_id) == [
        entry(1, 4, '{"a":1}'),
        entry(2, 7, "[]"),
    ]
    aw.remove([1, 2])
    assert aw.encode_all() is None


@settings(max_examples=100)
@given(st.lists(entries, max_size=12))
def test_encode_all_reproduces_states(items: list[AwarenessEntry]) -> None:
    aw = AwarenessStates()
    aw.apply(items)
    everything = aw.encode_all()
    copy = AwarenessStates()
    if everything is not None:
        copy.apply(decode_awareness_update(everything))
    assert copy.states() == aw.states()


# --- convergence -------------------------------------------------------------------------


@st.composite
def client_histories(draw: st.DrawFn) -> list[AwarenessEntry]:
    """Entries as honest peers produce them: per client, one state per clock.

    A removal ("null") may share its clock with a state (two peers timing the same client
    out both use clock + 1). Two different states at one clock never happen, and the clock
    rule does not make them converge, so they are not generated.
    """
    items: list[AwarenessEntry] = []
    for client_id in draw(st.sets(st.integers(0, 5), max_size=4)):
        for clock in draw(st.sets(st.integers(0, 12), min_size=1, max_size=5)):
            kind = draw(st.sampled_from(["state", "null", "both"]))
            if kind in ("state", "both"):
                items.append(entry(client_id, clock, json.dumps({"c": client_id, "k": clock})))
            if kind in ("null", "both"):
                items.append(entry(client_id, clock, "null"))
    # Duplicated deliveries are part of life.
    duplicates = draw(st.lists(st.sampled_from(items), max_size=3)) if items else []
    return items + duplicates


def expected_states(items: list[AwarenessEntry]) -> dict[int, str]:
    """Per client, the entry with the highest clock decides; a removal there wins a tie.

    As in y-protocols, an unknown client starts at clock 0, so entries at clock 0 never count.
    """
    result: dict[int, str] = {}
    for client_id in {e.client_id for e in items}:
        mine = [e for e in items if e.client_id == client_id and e.clock > 0]
        if not mine:
            continue
        top = max(e.clock for e in mine)
        at_top = {e.state for e in mine if e.clock == top}
        if "null" not in at_top:
            [state] = at_top
            result[client_id] = state
    return result


def apply_in_batches(items: list[AwarenessEntry], cuts: list[int]) -> AwarenessStates:
    aw = AwarenessStates()
    bounds = [0, *sorted(c % (len(items) + 1) for c in cuts), len(items)]
    for start, stop in pairwise(bounds):
        aw.apply(items[start:stop])
    return aw


@settings(max_examples=150)
@given(
    client_histories().flatmap(lambda items: st.tuples(st.just(items), st.permutations(items))),
    st.lists(st.integers(min_value=0), max_size=4),
)
def test_any_delivery_order_converges(
    histories: tuple[list[AwarenessEntry], list[AwarenessEntry]], cuts: list[int]
) -> None:
    items, shuffled = histories
    by_clock = AwarenessStates()
    by_clock.apply(sorted(items, key=lambda e: (e.clock, e.state == "null")))
    shuffled_states = apply_in_batches(shuffled, cuts)
    assert shuffled_states.states() == by_clock.states() == expected_states(items)
    # The clocks agree too: encode_all carries them.
    assert sorted(
        decode_awareness_update(shuffled_states.encode_all() or b"\x00"),
        key=lambda e: e.client_id,
    ) == sorted(
        decode_awareness_update(by_clock.encode_all() or b"\x00"), key=lambda e: e.client_id
    )


def test_same_clock_different_states_do_not_converge() -> None:
    # Documents the limit of the property above: the first delivery wins a tie.
    first, second = entry(1, 3, '{"v":1}'), entry(1, 3, '{"v":2}')
    a, b = AwarenessStates(), AwarenessStates()
    a.apply([first, second])
    b.apply([second, first])
    assert a.states() == {1: '{"v":1}'}
    assert b.states() == {1: '{"v":2}'}


def test_a_client_is_nudged_once_per_clock() -> None:
    aw = AwarenessStates()
    aw.apply([entry(7, 3, "{}")])
    assert aw.nudge(7) == encode_awareness_update([entry(7, 3, "null")])
    assert aw.nudge(7) is None  # a second returning client must not set off a second wave
    aw.apply([entry(7, 4, "{}")])  # it answered: a new clock may be nudged again
    assert aw.nudge(7) == encode_awareness_update([entry(7, 4, "null")])
    assert aw.nudge(8) is None  # no state, nothing to nudge


# --- the top of the clock range (issue #20) ------------------------------------------------


def test_removal_at_the_top_of_the_range_keeps_the_clock() -> None:
    """y-protocols' clocks cannot pass 2**53 (JavaScript's 2**53 + 1 == 2**53); lib0's
    reference server removes a foreign client at the clock it holds. The room's removal
    at the top does the same, instead of encoding an integer lib0 cannot read back."""
    aw = AwarenessStates()
    aw.apply(decode_awareness_update(raw_update((4242, MAX_SAFE_INTEGER, b"{}"))))
    removal = aw.remove([4242])
    assert removal is not None
    assert decode_awareness_update(removal) == [entry(4242, MAX_SAFE_INTEGER, "null")]
    # Peers holding the state accept a same-clock removal; a state at that clock stays out.
    peer = AwarenessStates()
    peer.apply([entry(4242, MAX_SAFE_INTEGER, "{}")])
    assert peer.apply(decode_awareness_update(removal)) == change(removed={4242})
    assert aw.apply([entry(4242, MAX_SAFE_INTEGER, "{}")]) == change(outranked={4242})
    assert aw.removals([4242]) == removal
    assert aw.remove([4242]) is None


def test_pycrdt_accepts_the_same_clock_removal_at_the_top() -> None:
    ref = Awareness(Doc(client_id=1))
    ref.apply_awareness_update(encode_awareness_update([entry(9, MAX_SAFE_INTEGER, "{}")]), "t")
    aw = AwarenessStates()
    aw.apply([entry(9, MAX_SAFE_INTEGER, "{}")])
    removal = aw.remove([9])
    assert removal is not None
    ref.apply_awareness_update(removal, "t")
    assert 9 not in ref.states


@settings(max_examples=100)
@given(st.lists(st.tuples(client_ids, st.integers(MAX_SAFE_INTEGER - 3, MAX_SAFE_INTEGER))))
def test_clocks_near_the_top_never_raise(items: list[tuple[int, int]]) -> None:
    aw = AwarenessStates()
    for client_id, clock in items:
        aw.apply([entry(client_id, clock, "{}")])
        for update in (aw.remove([client_id]), aw.nudge(client_id), aw.encode_all()):
            if update is not None:
                decode_awareness_update(update)
        aw.removals([client_id])


# --- limits (issue #20) ---------------------------------------------------------------------

LIMITS = AwarenessLimits(max_entries=3, max_state_bytes=10, max_update_bytes=100)


def test_a_count_over_the_limit_is_refused_before_any_entry_is_read() -> None:
    # Four entries whose states are not even JSON: the count alone refuses the update.
    payload = raw_update(*((i, 1, b"{") for i in range(4)))
    with pytest.raises(AwarenessRefused, match="4 entries") as info:
        decode_awareness_update(payload, LIMITS)
    assert info.value.label == "too_many_entries"
    assert len(decode_awareness_update(raw_update(*((i, 1, b"{}") for i in range(3))), LIMITS))


def test_an_update_over_the_byte_limit_is_refused_unread() -> None:
    with pytest.raises(AwarenessRefused) as info:
        decode_awareness_update(b"\x01" + b"\x00" * 100, LIMITS)
    assert info.value.label == "update_too_large"


def test_a_state_over_its_limit_is_refused_before_parsing() -> None:
    with pytest.raises(AwarenessRefused) as info:
        decode_awareness_update(raw_update((1, 1, b"[" * 11)), LIMITS)
    assert info.value.label == "state_too_large"
    assert decode_awareness_update(raw_update((1, 1, b"[" * 5 + b"]" * 5)), LIMITS)


def test_limits_for_a_room_admit_an_echo_of_the_whole_room() -> None:
    limits = AwarenessLimits.for_room(max_states=50, max_state_bytes=200, max_bytes=5000)
    aw = AwarenessStates(max_states=50, max_bytes=5000)
    change_ = aw.apply(
        [entry(2**32 - 1 - i, MAX_SAFE_INTEGER, '"' + "x" * 78 + '"') for i in range(60)]
    )
    assert len(change_.updated) == 50 and len(change_.refused) == 10
    everything = aw.encode_all()
    assert everything is not None
    assert len(decode_awareness_update(everything, limits)) == 50


def test_a_room_refuses_states_past_its_bounds() -> None:
    aw = AwarenessStates(max_states=2, max_bytes=2 * (ENTRY_OVERHEAD + 10))
    assert aw.apply([entry(1, 1, '"' + "a" * 8 + '"'), entry(2, 1, "{}")]) == change(updated={1, 2})
    assert aw.apply([entry(3, 1, "{}")]) == change(refused={3})
    # Refused without its clock: once there is room, the same update goes through.
    assert aw.apply([entry(2, 2, '"' + "b" * 9 + '"')]) == change(refused={2})
    assert aw.apply([entry(2, 2, "null")]) == change(removed={2})
    assert aw.nbytes == ENTRY_OVERHEAD + 10
    assert aw.apply([entry(3, 1, "{}")]) == change(updated={3})


def test_clocks_of_departed_clients_are_bounded() -> None:
    aw = AwarenessStates(max_departed=10)
    for client_id in range(100):
        aw.apply([entry(client_id, 1, "{}")])
        aw.remove([client_id])
    aw.apply([entry(1000, 1, "{}")])
    assert aw.clock_of(99) == 2  # the newest departed are remembered
    assert aw.clock_of(0) == 0  # the oldest forgotten
    assert len([c for c in range(100) if aw.clock_of(c)]) <= 20


def test_encode_current() -> None:
    aw = AwarenessStates()
    aw.apply([entry(1, 3, "{}"), entry(2, 1, "[]")])
    aw.remove([2])
    assert decode_awareness_update(aw.encode_current([1, 2])) == [
        entry(1, 3, "{}"),
        entry(2, 2, "null"),
    ]


def test_encode_all_follows_every_change() -> None:
    """It is kept between changes (joins and queries ask for it); never stale."""
    aw = AwarenessStates()
    aw.apply([entry(1, 1, "{}")])
    first = aw.encode_all()
    assert aw.encode_all() is first
    aw.apply([entry(1, 1, "[]")])  # ignored: nothing changed
    assert aw.encode_all() is first
    aw.apply([entry(2, 1, "[]")])
    assert decode_awareness_update(aw.encode_all() or b"") == [entry(1, 1, "{}"), entry(2, 1, "[]")]
    aw.apply([entry(1, 2, '{"a":1}')])
    assert entry(1, 2, '{"a":1}') in decode_awareness_update(aw.encode_all() or b"")
    aw.remove([2])
    assert decode_awareness_update(aw.encode_all() or b"") == [entry(1, 2, '{"a":1}')]
    aw.apply([entry(1, 2, "null")])
    assert aw.encode_all() is None
