"""Upgrade targets to rooms: prefix, normalisation, percent-decoding, limits."""

from __future__ import annotations

import unicodedata
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from civicrealtime.protocol.closecodes import CloseCode
from civicrealtime.protocol.routing import (
    MAX_ROOM_ID_BYTES,
    BadRoom,
    OutsidePrefix,
    RoomRoute,
    normalise_prefix,
    parse_target,
)

TYPES = frozenset({"records", "drafts"})
PREFIX = "/realtime"


def parse(target: str, prefix: str = PREFIX) -> RoomRoute | OutsidePrefix | BadRoom:
    return parse_target(target, prefix, TYPES)


def route(room_type: str, room_id: str, **query: list[str]) -> RoomRoute:
    return RoomRoute(room_type=room_type, room_id=room_id, query=query)


def invalid_room(result: object) -> None:
    assert isinstance(result, BadRoom)
    assert result.code == "INVALID_ROOM"
    assert result.close_code == CloseCode.INVALID_ROOM == 4400


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/realtime/records/abc", route("records", "abc")),
        ("/realtime/record/abc", route("records", "abc")),
        ("/realtime/drafts/abc", route("drafts", "abc")),
        ("/realtime/records/%C3%A9t%C3%A9", route("records", "été")),
        ("/realtime/records/%c3%a9t%c3%a9", route("records", "été")),
        ("/realtime/records/été", route("records", "été")),
        ("/realtime/records/a%20b", route("records", "a b")),
        ("/realtime/records/a+b", route("records", "a+b")),  # + is not a space in paths
        ("/realtime/records/%252F", route("records", "%2F")),  # decoded exactly once
        ("/realtime/records/abc/extra/segments", route("records", "abc")),
        ("/realtime/records/abc/", route("records", "abc")),
        ("/realtime/records/abc?token=t1", route("records", "abc", token=["t1"])),
        (
            "/realtime/records/abc?token=t1&x=1&x=2",
            route("records", "abc", token=["t1"], x=["1", "2"]),
        ),
        ("/realtime/records/abc?", route("records", "abc")),
        ("/realtime/records/abc?a=%2F&b=", route("records", "abc", a=["/"])),
        ("/realtime/records/abc?x=1?y=2", route("records", "abc", x=["1?y=2"])),
        ("/realtime/records/..", route("records", "..")),
        ("/realtime/records/a:b", route("records", "a:b")),
    ],
)
def test_routes(target: str, expected: RoomRoute) -> None:
    assert parse(target) == expected


def test_route_key() -> None:
    result = parse("/realtime/record/%C3%A9t%C3%A9")
    assert isinstance(result, RoomRoute)
    assert result.key == "records:été"


@pytest.mark.parametrize(
    "target",
    [
        "/other/records/x",
        "/realtimeX/records/a",
        "/realtim/records/a",
        "/REALTIME/records/a",
        "/",
        "",
        "realtime/records/a",
        "//realtime/records/a",
        "/other?/realtime/records/a",
        "*",
    ],
)
def test_outside_prefix(target: str) -> None:
    assert parse(target) == OutsidePrefix()


@pytest.mark.parametrize(
    "target",
    [
        "/realtime",
        "/realtime/",
        "/realtime?x=1",
        "/realtime//abc",
    ],
)
def test_missing_room_type(target: str) -> None:
    result = parse(target)
    invalid_room(result)
    assert isinstance(result, BadRoom)
    assert "<prefix>/<roomType>/<roomId>" in result.message


@pytest.mark.parametrize(
    "target",
    ["/realtime/records", "/realtime/records/", "/realtime/records//abc", "/realtime/records?x"],
)
def test_empty_room_id(target: str) -> None:
    result = parse(target)
    invalid_room(result)
    assert isinstance(result, BadRoom)
    assert "got 0" in result.message


@pytest.mark.parametrize(
    "raw_id",
    [
        "%2F",
        "%2f",
        "a%2Fb",
        "%00",
        "a%0Ab",
        "%0D",
        "%09",
        "%1B",
        "%7F",  # DEL
        "%C2%85",  # NEL (C1 control)
        "%E2%80%8B",  # zero-width space (format)
        "%E2%80%AE",  # right-to-left override (format)
        "%EF%BB%BF",  # BOM (format)
    ],
)
def test_forbidden_characters(raw_id: str) -> None:
    result = parse(f"/realtime/records/{raw_id}")
    invalid_room(result)
    assert isinstance(result, BadRoom)
    assert "control characters" in result.message


@pytest.mark.parametrize("raw_id", ["%ff", "%FF", "%C3", "%C3%28", "%ED%A0%80", "%C0%AF", "abc%80"])
def test_invalid_utf8_after_decoding(raw_id: str) -> None:
    result = parse(f"/realtime/records/{raw_id}")
    invalid_room(result)
    assert isinstance(result, BadRoom)
    assert "UTF-8" in result.message


def test_room_id_length_limit() -> None:
    assert MAX_ROOM_ID_BYTES == 255
    assert parse("/realtime/records/" + "a" * 255) == route("records", "a" * 255)
    too_long = parse("/realtime/records/" + "a" * 256)
    invalid_room(too_long)
    assert isinstance(too_long, BadRoom)
    assert "got 256" in too_long.message


def test_room_id_length_counts_utf8_bytes_after_decoding() -> None:
    fits = "é" * 127 + "a"  # 255 bytes
    assert parse("/realtime/records/" + "%C3%A9" * 127 + "a") == route("records", fits)
    over = parse("/realtime/records/" + "%C3%A9" * 128)  # 256 bytes, 768 characters encoded
    invalid_room(over)
    # Percent-encoding does not count: 255 encoded bytes is 765 characters of target.
    assert parse("/realtime/records/" + "%61" * 255) == route("records", "a" * 255)


@pytest.mark.parametrize("room_type", ["unknown", "Records", "recordss", "rec%6Frds", "record s"])
def test_unknown_room_type(room_type: str) -> None:
    result = parse(f"/realtime/{room_type}/abc")
    assert isinstance(result, BadRoom)
    assert result.code == "ROOM_TYPE_NOT_REGISTERED"
    assert result.close_code == CloseCode.NOT_FOUND == 4004
    assert repr(room_type) in result.message


def test_unknown_room_type_message_is_bounded() -> None:
    result = parse("/realtime/" + "t" * 5000 + "/abc")
    assert isinstance(result, BadRoom)
    assert result.code == "ROOM_TYPE_NOT_REGISTERED"
    assert len(result.message) < 100


def test_alias_only_applies_when_registered() -> None:
    # "record" becomes "records"; if "records" is not registered, the room type is unknown.
    result = parse_target("/realtime/record/abc", PREFIX, frozenset({"record"}))
    assert isinstance(result, BadRoom)
    assert result.code == "ROOM_TYPE_NOT_REGISTERED"
    assert "'records'" in result.message


def test_invalid_id_is_reported_before_unknown_type() -> None:
    invalid_room(parse("/realtime/unknown/%2F"))


@pytest.mark.parametrize(
    ("prefix", "normalised"),
    [
        ("/realtime", "/realtime"),
        ("realtime", "/realtime"),
        ("/realtime/", "/realtime"),
        ("/rt", "/rt"),
        ("rt/", "/rt"),
        ("/a/b/", "/a/b"),
        ("/", ""),
        ("", ""),
        ("//", ""),
    ],
)
def test_normalise_prefix(prefix: str, normalised: str) -> None:
    assert normalise_prefix(prefix) == normalised


@pytest.mark.parametrize("prefix", ["/rt", "rt", "/rt/"])
def test_custom_prefix(prefix: str) -> None:
    assert parse("/rt/records/abc", prefix) == route("records", "abc")
    assert parse("/rt/record/x?y=1", prefix) == route("records", "x", y=["1"])
    assert parse("/realtime/records/abc", prefix) == OutsidePrefix()
    assert parse("/rtx/records/abc", prefix) == OutsidePrefix()
    invalid_room(parse("/rt", prefix))


def test_nested_prefix() -> None:
    assert parse("/api/rt/records/abc", "/api/rt") == route("records", "abc")
    assert parse("/api/records/abc", "/api/rt") == OutsidePrefix()


@pytest.mark.parametrize("prefix", ["/", ""])
def test_root_prefix(prefix: str) -> None:
    assert parse("/records/abc", prefix) == route("records", "abc")
    assert parse("/record/abc?t=1", prefix) == route("records", "abc", t=["1"])
    # With no prefix nothing is outside it: a wrong path is a bad room instead.
    other = parse("/realtime/records/abc", prefix)
    assert isinstance(other, BadRoom)
    assert other.code == "ROOM_TYPE_NOT_REGISTERED"
    invalid_room(parse("/", prefix))


def test_room_ids_are_normalised_to_nfc() -> None:
    """Issue #20: `café` composed and decomposed were two rooms."""
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    routes = [parse("/realtime/records/" + quote(i, safe="")) for i in (composed, decomposed)]
    assert routes == [route("records", composed), route("records", composed)]
    # Normalisation runs before the length check: the limit is on the id actually used.
    longest = "e\u0301" * (MAX_ROOM_ID_BYTES // 2)  # 3 bytes each, 2 once composed
    assert len(longest.encode()) > MAX_ROOM_ID_BYTES
    normalised = parse("/realtime/records/" + quote(longest, safe=""))
    assert isinstance(normalised, RoomRoute)
    assert normalised.room_id == "\u00e9" * (MAX_ROOM_ID_BYTES // 2)


@settings(max_examples=200)
@given(st.text(min_size=1, max_size=60))
def test_any_safe_id_round_trips_through_percent_encoding(room_id: str) -> None:
    result = parse("/realtime/records/" + quote(room_id, safe=""))
    if isinstance(result, RoomRoute):
        assert result.room_id == unicodedata.normalize("NFC", room_id)
        assert result.room_type == "records"
    else:
        invalid_room(result)
        assert isinstance(result, BadRoom)
        assert "/" in room_id or "control" in result.message or "bytes" in result.message


@settings(max_examples=300)
@given(st.text(max_size=80))
def test_arbitrary_targets_never_raise(target: str) -> None:
    result = parse(target)
    assert isinstance(result, RoomRoute | OutsidePrefix | BadRoom)
    if isinstance(result, RoomRoute):
        assert result.room_type in TYPES
        assert 1 <= len(result.room_id.encode()) <= MAX_ROOM_ID_BYTES
        assert "/" not in result.room_id
        assert unicodedata.is_normalized("NFC", result.room_id)
