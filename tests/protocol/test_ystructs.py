"""The Yjs v1 struct reader, against updates real Yjs encoded and read.

`data/yjs_structs.json` comes from `node tests/js/ystructs_golden.mjs` (yjs 13.6): each
case holds the bytes and what Yjs's own `decodeUpdate` finds in them. Regenerate it after
upgrading yjs; `test_golden_file_is_current` says when it is stale.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from civicrealtime.protocol.errors import MalformedMessage
from civicrealtime.protocol.varint import encode_var_string, encode_var_uint
from civicrealtime.protocol.ystructs import StringItem, read_layout, utf16_length

GOLDEN_PATH = Path(__file__).parent / "data" / "yjs_structs.json"
GOLDEN: dict[str, Any] = json.loads(GOLDEN_PATH.read_text(encoding="utf-8"))
CASES: dict[str, dict[str, Any]] = GOLDEN["cases"]
JS_DIR = Path(__file__).resolve().parents[1] / "js"


@pytest.mark.parametrize("name", sorted(CASES))
def test_reads_what_yjs_reads(name: str) -> None:
    case = CASES[name]
    update = bytes.fromhex(case["update"])
    layout = read_layout(update)
    assert [[s.client, s.clock, s.text] for s in layout.strings] == case["strings"]
    assert sorted(map(list, layout.split_points)) == case["split_points"]
    assert {str(client): clock for client, clock in layout.reach.items()} == case["reach"]
    assert {str(c): list(span) for c, span in layout.structs.items()} == case["structs"]
    assert {str(client): clock for client, clock in layout.needs.items()} == case["needs"]
    assert layout.has_skip == case["has_skip"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_string_spans_hold_the_encoded_text(name: str) -> None:
    update = bytes.fromhex(CASES[name]["update"])
    for item in read_layout(update).strings:
        assert update[item.start : item.end] == encode_var_string(item.text)


def test_the_golden_cases_cover_every_struct_kind() -> None:
    """Guards the golden file itself: every content type, GC and Skip appear in some case."""
    kinds = {kind for case in CASES.values() for kind in case["kinds"]}
    # ContentJSON is legacy (Yjs 13 never writes it): `test_legacy_json_content` covers it.
    assert kinds >= {
        "GC",
        "Skip",
        "ContentDeleted",
        "ContentBinary",
        "ContentString",
        "ContentEmbed",
        "ContentFormat",
        "ContentType",
        "ContentAny",
        "ContentDoc",
    }


def test_legacy_json_content() -> None:
    # One client, one struct: info 0x02 (ContentJSON) under root "a", two JSON strings.
    body = (
        encode_var_uint(1)
        + encode_var_uint(1)
        + encode_var_uint(9)
        + encode_var_uint(0)
        + bytes([0x02])
        + encode_var_uint(1)
        + encode_var_string("a")
        + encode_var_uint(2)
        + encode_var_string("1")
        + encode_var_string('"x"')
        + encode_var_uint(0)
    )
    layout = read_layout(body)
    assert layout.strings == ()
    assert layout.reach == {9: 2}


def test_the_issue_update_points_inside_the_emoji() -> None:
    """B's insert at UTF-16 offset 6 splits A's item at clock 6: the emoji's low half."""
    typed = read_layout(bytes.fromhex(CASES["typed_emoji"]["update"]))
    (item,) = typed.strings
    assert item.pair_clocks() == [6]
    inserted = read_layout(bytes.fromhex(CASES["insert_inside_pair"]["update"]))
    assert (1, 6) in inserted.split_points


@pytest.mark.parametrize("name", sorted(CASES))
def test_truncated_updates_raise_malformed(name: str) -> None:
    update = bytes.fromhex(CASES[name]["update"])
    for cut in range(len(update) - 1):
        with pytest.raises(MalformedMessage):
            read_layout(update[:cut])


@given(st.binary(max_size=64))
def test_random_bytes_raise_only_malformed(data: bytes) -> None:
    with contextlib.suppress(MalformedMessage):
        read_layout(data)


@given(st.text(max_size=40))
def test_pair_clocks_and_utf16_length(text: str) -> None:
    encoded = text.encode("utf-16-le", "surrogatepass")
    assert utf16_length(text) == len(encoded) // 2
    item = StringItem(client=1, clock=10, text=text, start=0, end=0)
    units = [encoded[i : i + 2] for i in range(0, len(encoded), 2)]
    lows = [
        10 + i for i, unit in enumerate(units) if 0xDC00 <= int.from_bytes(unit, "little") <= 0xDFFF
    ]
    assert item.pair_clocks() == lows


@pytest.mark.skipif(shutil.which("node") is None, reason="node not found")
@pytest.mark.skipif(not (JS_DIR / "node_modules").is_dir(), reason="npm ci --prefix tests/js")
def test_golden_file_is_current() -> None:
    """The committed file is what the installed yjs produces (upgrade yjs: regenerate)."""
    out = subprocess.run(
        ["node", str(JS_DIR / "ystructs_golden.mjs")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=JS_DIR,
    ).stdout
    assert json.loads(out) == GOLDEN
