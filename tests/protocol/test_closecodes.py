"""Close codes and the compact JSON close reason that must fit in a close frame."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from civicrealtime.protocol import BadRoom, closecodes, parse_target
from civicrealtime.protocol.closecodes import MAX_REASON_BYTES, CloseCode, close_reason
from civicrealtime.stats import Stats

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
        "PROTOCOL_ERROR": 1002,
        "ABNORMAL": 1006,
        "INVALID_PAYLOAD": 1007,
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


# -- the close table against its documentation and the demo ---------------------------------

ROOT = Path(__file__).resolve().parents[2]


def _documented_closes() -> list[tuple[int, tuple[str, ...], str]]:
    """Rows of docs/protocol.md's "Close codes" table: (code, reason codes, editor label)."""
    text = (ROOT / "docs" / "protocol.md").read_text()
    section = text.split("## Close codes", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|") or not cells[0].isdigit():
            continue
        rows.append((int(cells[0]), tuple(re.findall(r'"code":"([A-Z_]+)"', cells[1])), cells[-1]))
    return rows


def test_every_row_of_the_table_is_documented_with_its_code() -> None:
    documented = {
        (code, reason) for code, reasons, _ in _documented_closes() for reason in reasons or ("",)
    }
    table = {(int(close.code), close.reason_code) for close in closecodes.CLOSES}
    assert documented - table == set()
    assert table - documented == set()


def test_the_documented_editor_labels_are_the_tables() -> None:
    for code, _, label in _documented_closes():
        assert label == closecodes.editor_label(code), code


def test_the_demo_shows_the_tables_labels() -> None:
    source = (ROOT / "web" / "demo" / "src" / "status.js").read_text()
    block = source.split("CLOSE_MESSAGES = {", 1)[1].split("}", 1)[0]
    demo = {int(code): label for code, label in re.findall(r"(\d{4}): '([^']*)'", block)}
    assert demo == {int(code): label for code, label in closecodes.EDITOR_LABELS.items()}
    lost = re.search(r"CONNECTION_LOST = '([^']*)'", source)
    assert lost is not None and lost.group(1) == closecodes.CONNECTION_LOST


def test_reason_codes_are_unique_and_found() -> None:
    reasons = [close.reason_code for close in closecodes.CLOSES]
    assert len(reasons) == len(set(reasons))
    for close in closecodes.CLOSES:
        assert closecodes.by_reason(close.reason_code) is close
    with pytest.raises(KeyError):
        closecodes.by_reason("NOT_A_ROW")


def test_a_rows_reason_carries_its_code_and_extras() -> None:
    assert closecodes.NORMAL.reason() == ""
    request = closecodes.SESSION_REVOKED.request(reason="gone")
    assert request.code == 4001
    assert json.loads(request.reason) == {"code": "SESSION_REVOKED", "reason": "gone"}


@pytest.mark.parametrize(
    "target", ["/realtime/records/a%2Fb", "/realtime/records", "/realtime/devices/a"]
)
def test_routing_refusals_are_rows_with_the_same_code(target: str) -> None:
    route = parse_target(target, "/realtime", ("records",))
    assert isinstance(route, BadRoom)
    assert closecodes.by_reason(route.code).code == route.close_code


def test_room_refusals_are_rows_with_the_same_code() -> None:
    """The manager's refusals (RoomUnavailable) close with the table's row of their code."""
    source = (ROOT / "src" / "civicrealtime" / "rooms" / "manager.py").read_text()
    refusals = re.findall(r'RoomUnavailable\(\s*"([A-Z_]+)",.*?CloseCode\.([A-Z_]+)', source, re.S)
    assert len(refusals) >= 4
    for reason_code, code_name in refusals:
        assert closecodes.by_reason(reason_code).code == CloseCode[code_name]


def test_closes_are_counted_by_row() -> None:
    stats = Stats()
    stats.count_close(closecodes.SLOW_CONSUMER)
    stats.count_close(closecodes.SEND_TIMEOUT)
    stats.count_close(closecodes.ROOM_EVICTED)  # 1013 as well, but not a slow consumer
    assert stats.closes[1013] == 3
    assert stats.slow_consumer_closes == 2
    assert stats.close_reasons == {"SLOW_CONSUMER": 1, "SEND_TIMEOUT": 1, "ROOM_EVICTED": 1}
