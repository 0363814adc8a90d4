"""Replacing a file so that a reader sees the old content or the new, never a part.

The one place that writes a temporary file beside the target, fsyncs it, renames it over
the target and fsyncs the directory. The store's files, the records' drafts, the watcher's
merge bases and the notes example all write through `write_atomically`.
"""

from __future__ import annotations

import os
import secrets
import sys
from contextlib import suppress
from pathlib import Path

# Every temporary file's name holds this: a store removes such leftovers of a crash at open.
TEMP_MARK = ".tmp-"
DEFAULT_MODE = 0o644


def temp_name_of(path: Path) -> Path:
    """A fresh temporary name beside `path`, hidden, never one a reader looks for."""
    return path.with_name(f".{path.name}{TEMP_MARK}{secrets.token_hex(4)}")


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of `data` to `fd` (`os.write` may write less than asked)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new file in `directory` durable.

    Windows cannot open a directory for this, and renames there are durable once done.
    """
    if sys.platform == "win32":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(
    path: Path | str, data: bytes, *, mode: int | None = None, durable: bool = True
) -> None:
    """Replace `path` by `data`: a reader sees the old file or the new one, never a part.

    The temporary file is written and fsynced in the same directory, then renamed over
    `path` (the rename is atomic), then the directory is fsynced so that the rename survives
    a crash. `mode` sets the new file's permission bits exactly; without it they are
    `DEFAULT_MODE` less the umask. `durable=False` skips both fsyncs: still atomic, but a
    crash may keep the old content.

    Raises `OSError`; on any error or cancellation the temporary file is removed and
    `path` is untouched.
    """
    target = Path(path)
    temp = temp_name_of(target)
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, DEFAULT_MODE)
        try:
            write_all(fd, data)
            if mode is not None:
                os.chmod(temp, mode)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
    except BaseException:
        with suppress(FileNotFoundError):
            temp.unlink()
        raise
    if durable:
        fsync_directory(target.parent)


def remove_temp_files(directory: Path) -> None:
    """Remove the temporary files of writes that a crash interrupted (never renamed, never
    visible). Only for a directory whose writer is not running."""
    for name in os.listdir(directory):
        if name.startswith(".") and TEMP_MARK in name:
            with suppress(FileNotFoundError):
                (directory / name).unlink()
