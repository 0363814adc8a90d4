"""Room keys as file names that are safe, distinct and stable on every platform.

The rule: keep lowercase ASCII letters, digits, `_`, `-` and `.` (but not a leading or
trailing dot); percent-encode every other byte of the key's UTF-8 as `%XX` with uppercase
hex. That makes names free of path separators, `.`/`..`, control characters, characters
Windows forbids and non-ASCII (so no Unicode normalisation by the file system either).
Uppercase letters are encoded too: on case-insensitive file systems `Abc` and `abc` would
otherwise be one directory. Windows device names (CON, NUL, COM1…, also before an
extension, as in `con.txt`) get their first character encoded. Decoding is plain
percent-decoding, so the mapping is reversible and two keys never share a name.

Names longer than `MAX_NAME` characters (a 255-byte key can encode to 765) are cut to a
prefix plus `~` and 32 hex digits of the key's sha256; `~` is never produced by the
encoding, so such names cannot collide with plain ones. They are not reversible: the
room key is also stored inside the files (the snapshot's `.meta.json`, the log's first
record).
"""

from __future__ import annotations

import hashlib
from urllib.parse import unquote

KEEP = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-.")
WINDOWS_DEVICES = frozenset(
    {"con", "prn", "aux", "nul"} | {f"com{i}" for i in range(10)} | {f"lpt{i}" for i in range(10)}
)
MAX_NAME = 100
PREFIX = 60
EMPTY = "%"  # the empty key; a lone % is never produced otherwise


def safe_name(room_id: str) -> str:
    raw = room_id.encode("utf-8")
    if not raw:
        return EMPTY
    last = len(raw) - 1
    parts: list[str] = []
    for index, byte in enumerate(raw):
        char = chr(byte)
        if char in KEEP and not (char == "." and index in (0, last)):
            parts.append(char)
        else:
            parts.append(f"%{byte:02X}")
    name = "".join(parts)
    if name.split(".", 1)[0] in WINDOWS_DEVICES:
        name = f"%{ord(name[0]):02X}{name[1:]}"
    if len(name) > MAX_NAME:
        cut = PREFIX
        # Never split an escape: back up to before a '%' in the last two characters.
        percent = name.rfind("%", PREFIX - 2, PREFIX)
        if percent != -1:
            cut = percent
        name = f"{name[:cut]}~{hashlib.sha256(raw).hexdigest()[:32]}"
    return name


def room_from_name(name: str) -> str | None:
    """The room key a name encodes, or None for a hashed (shortened) name."""
    if "~" in name:
        return None
    if name == EMPTY:
        return ""
    return unquote(name, errors="strict")
