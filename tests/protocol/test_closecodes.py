"""Close codes and the compact JSON close reason that must fit in a close frame."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from civicrealtime.protocol.closecodes import MAX_REASON_BYTES, CloseCode, close_reason

CODES = [
    "INVALID_ROOM",
    "ROOM_TYPE_NOT_REGISTERED",
    "AUTH_FAILED",
    "PERMISSION_DENIED",
    "LIMIT_EXCEEDED",
    "SHUTTING_DOWN",
]


def test_close_code_values() -> None:
    assert {c.name: int(c) for c in CloseCode} == {
        "NORMAL": 1000,
        "GOING_AWAY": 1001,
        "POLICY_VIOLATION": 1008,
        "MESSAGE_TOO_BIG": 1009,
        "INTERNAL_ERROR": 1011,
        "TRY_AGAIN_LATER": 1013,
        "AUTH_FAILED": 4001,
        "PERMISSION_DENIED": 4003,
        "NOT_FOUND": 4004,
        "TOO_MANY_EDITS": 4013,
        "LIMIT_EXCEEDED": 4029,
        "INVALID_ROOM": 4400,
        "ROOM_FAILED": 4500,
        "SHUTTING_DOWN": 4503,
    }


def test_max_reason_bytes_is_rfc6455s() -> None:
    assert MAX_REASON_BYTES == 125 - 2


@pytest.mark.parametrize(
    ("args", "extra", "expected"),
    [
        (("INVALID_ROOM",), {}, '{"code":"INVALID_ROOM"}'),
        (
            ("AUTH_FAILED",),
            {"message": "bad token"},
            '{"code":"AUTH_FAILED","message":"bad token"}',
        ),
        (("X",), {"a": "1", "b": "2"}, '{"code":"X","a":"1","b":"2"}'),
        (("X",), {"room": "été"}, '{"code":"X","room":"été"}'),
    ],
)
def test_short_reasons_are_unchanged(
    args: tuple[str], extra: dict[str, str], expected: str
) -> None:
    assert close_reason(*args, **extra) == expected


def test_long_extra_is_halved_with_ellipsis() -> None:
    reason = close_reason("LIMIT_EXCEEDED", message="x" * 200)
    assert len(reason.encode()) <= MAX_REASON_BYTES
    obj = json.loads(reason)
    assert obj["code"] == "LIMIT_EXCEEDED"
    assert obj["message"].endswith("…")
    assert set(obj["message"][:-1]) == {"x"}


def test_extras_are_dropped_from_the_end() -> None:
    reason = close_reason("X", first="keep me", second="y" * 300, third="z" * 300)
    obj = json.loads(reason)
    assert len(reason.encode()) <= MAX_REASON_BYTES
    assert obj["code"] == "X"
    assert obj["first"] == "keep me"
    assert next(iter(obj)) == "code"


def test_long_key_is_dropped() -> None:
    reason = close_reason("X", **{"k" * 200: "v"})
    assert reason == '{"code":"X"}'


@settings(max_examples=300)
@given(
    st.sampled_from(CODES),
    st.dictionaries(
        st.text(st.characters(codec="utf-8"), min_size=1, max_size=30),
        st.text(st.characters(codec="utf-8"), max_size=300),
        max_size=5,
    ),
)
def test_always_fits_stays_json_keeps_code(code: str, extra: dict[str, str]) -> None:
    extra.pop("code", None)
    reason = close_reason(code, **extra)
    assert len(reason.encode("utf-8")) <= MAX_REASON_BYTES
    obj = json.loads(reason)
    assert obj["code"] == code
    assert next(iter(obj)) == "code"
    # Fields survive in order, as a prefix of the ones given; values only get shorter.
    kept = list(obj)[1:]
    assert kept == list(extra)[: len(kept)]
    for key in kept:
        value = obj[key]
        assert value == extra[key] or (value.endswith("…") and extra[key].startswith(value[:-1]))


@given(st.text(st.sampled_from('é😀\u0000"\\a'), min_size=100, max_size=400))
def test_multibyte_and_escaped_values(value: str) -> None:
    reason = close_reason("ROOM_TYPE_NOT_REGISTERED", message=value)
    assert len(reason.encode("utf-8")) <= MAX_REASON_BYTES
    assert json.loads(reason)["code"] == "ROOM_TYPE_NOT_REGISTERED"
