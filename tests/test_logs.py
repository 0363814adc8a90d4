"""The log formatters: fields from the call site's placeholders, typed, escaped, cut."""

from __future__ import annotations

import json
import logging
import re
import sys

from civicrealtime.logs import MAX_VALUE_CHARS, JsonFormatter, TextFormatter, parse_record


def record(msg: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    made = logging.LogRecord("civicrealtime.test", logging.INFO, __file__, 1, msg, args, exc_info)
    made.created = 1_767_225_600.25  # 2026-01-01T00:00:00.250Z
    made.msecs = 250.0
    return made


def text(msg: str, *args: object) -> str:
    return TextFormatter().format(record(msg, *args))


def as_json(msg: str, *args: object) -> dict[str, object]:
    value: dict[str, object] = json.loads(JsonFormatter().format(record(msg, *args)))
    return value


def test_a_room_id_with_fields_inside_stays_one_field() -> None:
    """Issue #18: `x user=mallory peer=6.6.6.6` became three JSON fields."""
    msg = "room.hydrated room=%s source=%s"
    room = "records:x user=mallory peer=6.6.6.6"
    assert as_json(msg, room, "snapshot") == {
        "ts": "2026-01-01T00:00:00.250Z",
        "level": "info",
        "logger": "civicrealtime.test",
        "event": "room.hydrated",
        "room": room,
        "source": "snapshot",
    }
    assert text(msg, room, "snapshot").endswith(
        'room.hydrated room="records:x user=mallory peer=6.6.6.6" source=snapshot'
    )


def test_a_newline_in_a_user_id_cannot_forge_a_line() -> None:
    """Issue #20: a `sub` with a newline forged a CRITICAL admin.granted line."""
    user = "eve\n2026-01-01T00:00:00 CRITICAL civicrealtime admin.granted user=root"
    line = text("connection.opened conn=%s user=%s", 3, user)
    assert "\n" not in line
    assert line.endswith(
        'conn=3 user="eve\\n2026-01-01T00:00:00 CRITICAL civicrealtime admin.granted user=root"'
    )
    assert as_json("connection.opened conn=%s user=%s", 3, user)["user"] == user


def test_quotes_backslashes_ansi_and_bidi_are_escaped() -> None:
    line = text("x a=%s b=%s c=%s d=%s", 'say "hi"', "c:\\dir", "\x1b[31mred", "ab\u202ecd\u2028")
    assert line.endswith('x a="say \\"hi\\"" b="c:\\\\dir" c="\\x1b[31mred" d="ab\\u202ecd\\u2028"')
    raw = JsonFormatter().format(record("x d=%s", "ab\u202ecd\u2028\x85"))
    assert raw.isprintable()
    assert json.loads(raw)["d"] == "ab\u202ecd\u2028\x85"


def test_numbers_and_booleans_keep_their_type() -> None:
    document = as_json(
        "x port=%s count=%d ms=%.1f ratio=%s on=%s off=%s none=%s name=%s",
        6002,
        3,
        1.25,
        0.5,
        True,
        False,
        None,
        "6002",
    )
    assert document["port"] == 6002
    assert document["count"] == 3
    assert document["ms"] == 1.2
    assert document["ratio"] == 0.5
    assert document["on"] is True and document["off"] is False and document["none"] is None
    assert document["name"] == "6002"  # a string stays a string
    assert as_json("x v=%s", float("nan"))["v"] == "nan"  # not a JSON number
    assert text("x on=%s count=%d", True, 3).endswith("x on=true count=3")


def test_long_values_are_cut_with_a_marker() -> None:
    long = "A" * 10240
    cut = "A" * MAX_VALUE_CHARS + f"…(+{10240 - MAX_VALUE_CHARS} chars)"
    assert as_json("x user=%s", long)["user"] == cut
    assert text("x user=%s", long).endswith(f'user="{cut}"')


def test_text_timestamps_are_utc_with_a_zone() -> None:
    assert text("x").startswith("2026-01-01T00:00:00.250Z INFO civicrealtime.test x")


def test_literal_fields_and_prose_of_the_format_string() -> None:
    assert as_json("room.evicting room=%s why=max_rooms", "records:a") == {
        **as_json("room.evicting room=%s why=max_rooms", "records:a"),
        "event": "room.evicting",
        "room": "records:a",
        "why": "max_rooms",
    }
    document = as_json("config.invalid %s", "rt.yml: bad user=root")
    assert document["event"] == "config.invalid"
    assert document["message"] == "rt.yml: bad user=root"
    assert "user" not in document
    assert text("config.invalid %s", "rt.yml: bad user=root").endswith(
        'config.invalid "rt.yml: bad user=root"'
    )
    assert as_json("%s", "store.unavailable cannot open x")["event"] == "store.unavailable"
    assert as_json("a.b: 100%% done")["message"] == "100% done"


def test_structured_extra_fields() -> None:
    made = record("snapshot.written room=%s", "records:a")
    made.fields = {"bytes": 12, "why": "shutdown now"}
    event = parse_record(made)
    assert event.fields == {"room": "records:a", "bytes": 12, "why": "shutdown now"}
    assert event.text == 'snapshot.written room=records:a bytes=12 why="shutdown now"'


def test_mismatched_arguments_are_kept_not_raised() -> None:
    document = as_json("x a=%s b=%s", 1)
    assert document["event"] == "x"
    assert "args=(1,)" in str(document["message"])
    assert "\n" not in text("x a=%s", "1\n2", "extra")


def test_a_traceback_is_indented_so_it_cannot_start_a_record() -> None:
    def fail() -> None:
        raise ValueError("bad\n2026-01-01T00:00:00 CRITICAL civicrealtime admin.granted")

    try:
        fail()
    except ValueError as error:
        caught = error
    lines = TextFormatter().format(record("room.crashed room=%s", "r", exc=caught)).splitlines()
    assert lines[0].endswith("room.crashed room=r")
    assert all(line.startswith("  ") for line in lines[1:])
    assert not any(re.match(r"\d{4}-", line) for line in lines[1:])
    assert sys.exc_info() == (None, None, None)


# A logfmt reader: `key=value` with the value bare or double-quoted, other words skipped.
# Quotes count only at the start of a value or a word, as logfmt readers treat them.
_LOGFMT_TOKEN = re.compile(r'([^\s="]+)=("(?:[^"\\]|\\.)*"|\S*)|"(?:[^"\\]|\\.)*"|\S+')


def logfmt_keys(line: str) -> set[str]:
    return {m.group(1) for m in _LOGFMT_TOKEN.finditer(line) if m.group(1) is not None}


def test_prose_inside_punctuation_cannot_forge_a_field() -> None:
    """A store error naming a client's room, in parentheses inside the message: the quotes
    open mid-word, where a logfmt reader does not honour them, so `user=root` inside was
    read as a field of its own."""
    msg = (
        "persistence.overflow pending_bytes=%d room=%s: the store is failing (%s); the room "
        "keeps these updates"
    )
    error = "snapshot of room 'records:x user=root' failed: disk full"
    line = text(msg, 1, "records:x", error)
    assert logfmt_keys(line) == {"pending_bytes", "room"}, line
    assert as_json(msg, 1, "records:x", error)["message"] == (
        f"the store is failing ({error}); the room keeps these updates"
    )
    # A quoted value that starts a word is one token already: its `=` stays readable.
    assert text("config.invalid %s", "rt.yml: bad user=root").endswith(
        'config.invalid "rt.yml: bad user=root"'
    )
