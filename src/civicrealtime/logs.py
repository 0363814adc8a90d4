"""Logging: one line per event, `event key=value ...`, as text or as JSON lines.

Call sites log `log.info("room.hydrated room=%s source=%s", key, source)`. The fields are
carried as data, never recovered from the rendered text: each `key=%s` placeholder of the
format string is paired with its argument from `record.args`. A room id such as
`x user=mallory` therefore stays one `room` field, and a user id with a newline cannot
forge a second log line.

- JSON: every field keeps its type (numbers and booleans stay numbers and booleans).
- Text: a value holding whitespace, `=`, quotes, a backslash, control or formatting
  characters (ANSI escapes, bidi overrides) is double-quoted with backslash escapes, as
  logfmt does; timestamps are UTC and end in `Z`. Quoted prose that does not start a word
  (`(%s)`) has its `=` escaped too: a logfmt reader honours quotes only at a word's start.
- In both, a value longer than `MAX_VALUE_CHARS` is cut, with a marker saying how much.

Literal `key=value` text in a format string (`why=max_rooms`) is written by us, so it is
still read as a field. `extra={"fields": {...}}` adds fields without a placeholder.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
import time
import unicodedata
from collections.abc import Mapping
from typing import Any

import attrs

ENV_LOG_LEVEL = "CIVICREALTIME_LOG_LEVEL"
# Longer values are cut: a 10 KB user name must not turn one line into a page.
MAX_VALUE_CHARS = 512
_FIELD = re.compile(r" ([a-z_][a-z0-9_]*)=")
# A printf conversion as the logging module applies it (`%s`, `%d`, `%.1f`, `%r`, `%%`).
_CONVERSION = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[hlL]?(.)")
_KEY_BEFORE = re.compile(r"(?:^|(?<=\s))([A-Za-z_][A-Za-z0-9_]*)=$")
_SENTINEL = "\x00{}\x00"
_SENTINEL_RE = re.compile("\x00(\\d+)\x00")
_SIMPLE_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def split_event(message: str) -> tuple[str, dict[str, str]]:
    """`"room.created room=records:a size=3"` -> `("room.created", {"room": ..., "size": "3"})`.

    Only for text we wrote ourselves (the literal part of a format string): a value runs
    until the next ` key=`, which client input must never be allowed to decide.
    """
    parts = _FIELD.split(" " + message if "=" in message.split(" ", 1)[0] else message)
    head = parts[0].strip()
    fields = {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}
    event, _, rest = head.partition(" ")
    event = event.rstrip(":")
    if rest:
        fields.setdefault("message", rest.lstrip(":").strip())
    return event, fields


def _is_unsafe(ch: str) -> bool:
    # Cc: control characters, ESC included (ANSI); Cf: bidi overrides, zero-width marks;
    # Zl/Zp: line and paragraph separators, which some viewers break lines on.
    return unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")


def _escape_char(ch: str) -> str:
    simple = _SIMPLE_ESCAPES.get(ch)
    if simple is not None:
        return simple
    if _is_unsafe(ch):
        code = ord(ch)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return ch


def truncate(value: str, limit: int = MAX_VALUE_CHARS) -> str:
    if len(value) <= limit:
        return value
    return f"{value[:limit]}…(+{len(value) - limit} chars)"


def quote_value(value: str) -> str:
    """A field value for the text form: bare when plain, else `"..."` with escapes."""
    value = truncate(value)
    if value and value.isprintable() and not any(ch in " =\"'\\" for ch in value):
        return value
    return '"' + "".join(_escape_char(ch) for ch in value) + '"'


def _free_text(value: str, *, word_start: bool = True) -> str:
    """Prose inside the message: spaces are fine; anything that could fake a field or a
    line is quoted as a field value is.

    Quotes hold a value together only where a word starts: after `(` or `:` a logfmt
    reader splits the quoted text at its spaces, and a `key=value` inside becomes a field.
    There `=` is escaped too (`\\x3d`), so that no word of it reads as a field.
    """
    value = truncate(value)
    if not value.isprintable() or any(ch in '="\\' for ch in value):
        quoted = quote_value(value)
        return quoted if word_start else quoted.replace("=", "\\x3d")
    return value


def _typed(arg: object, conversion: str, rendered: str) -> object:
    """The JSON form of one argument: numbers and booleans keep their type."""
    if isinstance(arg, bool) or arg is None:
        return arg
    if isinstance(arg, int) and conversion in "sdiu":
        return arg
    if isinstance(arg, int | float) and conversion in "dieEfFgGs":
        try:
            number = float(rendered)
        except ValueError:
            return truncate(rendered)
        if conversion in "diu":
            return int(number)
        # NaN and infinities are not JSON numbers.
        return number if math.isfinite(number) else rendered
    return truncate(rendered)


@attrs.frozen(kw_only=True, slots=True)
class Event:
    """One log record, parsed: its name, its fields (typed) and its text form."""

    name: str
    fields: dict[str, object]
    text: str


def parse_record(record: logging.LogRecord) -> Event:
    """Pair the format string's `key=%s` placeholders with `record.args`."""
    msg, args = record.msg, record.args
    if not isinstance(msg, str) or isinstance(args, Mapping):
        return _unstructured(record)
    values = args if isinstance(args, tuple) else (() if args is None else (args,))
    fields: dict[str, object] = {}
    text: list[str] = []
    skeleton: list[str] = []  # the literal text, a sentinel for each free-text argument
    free: list[str] = []
    position = 0
    index = 0
    for match in _CONVERSION.finditer(msg):
        literal = msg[position : match.start()]
        position = match.end()
        conversion = match.group(1)
        if conversion == "%":
            text.append(literal + "%")
            skeleton.append(literal + "%")
            continue
        if index >= len(values) or "*" in match.group(0) or match.group(0).startswith("%("):
            return _unstructured(record)
        arg = values[index]
        index += 1
        try:
            if isinstance(arg, bool) and conversion == "s":
                rendered = "true" if arg else "false"
            else:
                rendered = match.group(0) % (arg,)
        except (TypeError, ValueError):
            return _unstructured(record)
        key = _KEY_BEFORE.search(literal)
        if key is not None:
            name = key.group(1)
            before = literal[: key.start()]
            fields[name] = _typed(arg, conversion, rendered)
            text.append(f"{before}{name}={quote_value(rendered)}")
            # A trailing space would run into the next literal field: drop it.
            skeleton.append(before.rstrip(" ") + (" " if before.endswith(" ") else ""))
        else:
            before_value = "".join(text) + literal
            word_start = not before_value or before_value[-1].isspace()
            text.append(literal + _free_text(rendered, word_start=word_start))
            skeleton.append(literal + _SENTINEL.format(len(free)))
            free.append(truncate(rendered))
    if index != len(values):
        return _unstructured(record)
    text.append(msg[position:])
    skeleton.append(msg[position:])
    name, literal_fields = _split_skeleton("".join(skeleton), free)
    merged = {**literal_fields, **fields}
    extra = getattr(record, "fields", None)
    rendered_text = "".join(text)
    if isinstance(extra, Mapping):
        for key, value in extra.items():
            merged[str(key)] = (
                value
                if isinstance(value, bool | int | float) or value is None
                else truncate(str(value))
            )
            rendered_text += f" {key}={quote_value(str(value))}"
    return Event(name=name, fields=merged, text=rendered_text)


def _split_skeleton(skeleton: str, free: list[str]) -> tuple[str, dict[str, object]]:
    def restore(text: str) -> str:
        return _SENTINEL_RE.sub(lambda m: free[int(m.group(1))], text)

    skeleton = re.sub(r"  +", " ", skeleton).strip()
    event, literal = split_event(skeleton)
    fields: dict[str, object] = {k: restore(v).strip() for k, v in literal.items()}
    name = restore(event)
    if name != event:
        # The event itself came from an argument (`log.error("%s", text)`): its first
        # word names it, the rest is prose.
        name, _, rest = name.strip().partition(" ")
        if rest:
            message = fields.get("message")
            fields["message"] = f"{rest} {message}" if message else rest
    return truncate(name, 100), {k: v for k, v in fields.items() if v != ""}


def _unstructured(record: logging.LogRecord) -> Event:
    """A record whose arguments do not match its format string: keep it, escaped."""
    try:
        message = record.getMessage()
    except (TypeError, ValueError):
        message = f"{record.msg} args={record.args!r}"
    name, _, rest = message.partition(" ")
    fields: dict[str, object] = {"message": truncate(rest)} if rest else {}
    text = quote_value(name) + (" " + _free_text(rest) if rest else "")
    return Event(name=truncate(name, 100), fields=fields, text=text)


def _traceback_lines(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    """Indented, so an exception message can never start a line that looks like a record."""
    if not record.exc_info:
        return ""
    trace = formatter.formatException(record.exc_info)
    return "".join(
        "\n  " + "".join(_escape_char(c) if _is_unsafe(c) else c for c in line)
        for line in trace.splitlines()
    )


def _utc(record: logging.LogRecord) -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        + f".{int(record.msecs):03d}Z"
    )


class TextFormatter(logging.Formatter):
    """`2026-01-31T12:00:00.123Z INFO civicrealtime.server event key=value ...`"""

    def format(self, record: logging.LogRecord) -> str:
        event = parse_record(record)
        line = f"{_utc(record)} {record.levelname} {record.name} {event.text}"
        return line + _traceback_lines(self, record)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event = parse_record(record)
        document: dict[str, Any] = {
            "ts": _utc(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": event.name,
            **event.fields,
        }
        if record.exc_info:
            document["traceback"] = self.formatException(record.exc_info)
        line = json.dumps(document, ensure_ascii=False)
        if line.isprintable():
            return line
        # json leaves DEL, C1 controls, bidi overrides and U+2028 raw, and some readers
        # split lines on the latter: escape them (only ever inside strings).
        return "".join(json.dumps(ch)[1:-1] if _is_unsafe(ch) else ch for ch in line)


def configure(level: str, fmt: str = "text") -> None:
    chosen = (os.environ.get(ENV_LOG_LEVEL) or level).upper()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, chosen, logging.INFO))
    # hypercorn logs every request, httpx every call: keep them to warnings so that our own
    # debug output stays readable and never holds request URLs.
    for noisy in ("hypercorn.access", "hypercorn.error", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
