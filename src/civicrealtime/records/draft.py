"""A record draft: the record's own front matter with an edited body, written atomically.

The front matter block is copied byte for byte (its `---` lines, key order, comments and
line endings included), and so is the whitespace that separated it from the body: only the
Markdown body changes. Which path a draft is written to is the caller's decision; the
published record file is never a draft's target in CivicPress.
"""

from __future__ import annotations

from pathlib import Path

from ..atomicfile import DEFAULT_MODE, write_atomically
from .source import Record


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
    never a part (`atomicfile.write_atomically`). The draft keeps the file's permissions."""
    target = Path(path)
    try:
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = DEFAULT_MODE
    write_atomically(target, text.encode("utf-8"), mode=mode)
