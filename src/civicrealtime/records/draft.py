"""A record draft: the record's own front matter with an edited body, written atomically.

The front matter block is copied byte for byte (its `---` lines, key order, comments and
line endings included), and so is the whitespace that separated it from the body: only the
Markdown body changes. Which path a draft is written to is the caller's decision; the
published record file is never a draft's target in CivicPress.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from .source import Record

DEFAULT_MODE = 0o644


def _leading_blank_lines(body: str) -> str:
    stripped = body.lstrip("\r\n")
    return body[: len(body) - len(stripped)]


def render_draft(record: Record, body_markdown: str) -> str:
    """The text of a draft: `record`'s front matter verbatim, then `body_markdown`."""
    if not record.raw_front_matter:
        return body_markdown
    gap = _leading_blank_lines(record.body)
    if not record.raw_front_matter.endswith("\n"):
        gap = "\n" + gap  # a front matter block ending the file had no final newline
    return record.raw_front_matter + gap + body_markdown


def write_draft_atomically(path: Path | str, text: str) -> None:
    """Replace `path` with `text` (UTF-8) so that a reader sees the old or the new file,
    never a part: temporary file in the same directory, fsync, rename, fsync the directory."""
    target = Path(path)
    directory = target.parent
    try:
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = DEFAULT_MODE
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    # The rename is durable only once the directory entry is on disk.
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
