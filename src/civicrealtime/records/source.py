"""The CivicPress data directory: which file holds which record, and what a record holds.

Layout (paths relative to the data directory):
- active records: `records/<type>/<year>/<id>.md`;
- archived records: `archive/<type>/<year>/<id>.md`, and also `records/archive/<type>/
  <year>/<id>.md` (both spellings exist in CivicPress data directories).
A record's id is its file name without `.md`. Files or directories whose name starts with a
dot, files not ending in `.md`, and files at any other depth are not records. A file whose
real path (symlinks resolved) is outside the data directory is ignored.

Duplicate ids: an active record wins over an archived one (an editor opens the live
record); between two files of the same kind, the first in sorted path order wins. Each
shadowed file is logged as a warning at every scan.

Freshness: `scan()` also records the modification time of every directory it walked.
Adding, removing or renaming a record changes its directory's mtime, so
`refresh_if_changed()` only stats directories (types x years, a few hundred at most) and
rescans when one changed or appeared. A directory modified within `RACY_SECONDS` of the
scan is treated as changed on the next check (a coarse-mtime filesystem could hide a
change made in the same tick). Editing a file needs no rescan: `read` reads it afresh.

Threads: `scan`, `refresh_if_changed` and `read` do blocking file I/O; run them in a worker
thread (`trio.to_thread.run_sync`). `lookup` only reads the current index, which a scan
replaces in one assignment, so it is safe to call from the event loop meanwhile.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import attrs
import yaml

log = logging.getLogger(__name__)

RECORDS_DIR = "records"
ARCHIVE_DIR = "archive"
SUFFIX = ".md"
RACY_SECONDS = 2.0

# What an id may look like: no separators, no leading dot, nothing a path could abuse.
VALID_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+-]{0,199}")
_FRONT_MATTER_OPEN = "---"
_FRONT_MATTER_CLOSE = ("---", "...")


class RecordError(Exception):
    """A record file that cannot be read as front matter plus Markdown."""


@attrs.frozen
class Record:
    id: str
    path: Path
    front_matter: dict[str, Any]
    body: str
    # The front matter block exactly as in the file, `---` lines and line endings included
    # ("" when the file has none): drafts are written with it unchanged.
    raw_front_matter: str
    archived: bool = False
    body_line: int = 1  # the file's line number of the body's first line


@attrs.frozen
class _Root:
    path: Path
    archived: bool


def is_valid_id(record_id: str) -> bool:
    return VALID_ID.fullmatch(record_id) is not None


def split_front_matter(source: str) -> tuple[str, str, int]:
    """(raw front matter block, body, body's first line number) of a record file's text."""
    text = source.removeprefix("\ufeff")
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].rstrip("\r\n").rstrip() != _FRONT_MATTER_OPEN:
        return "", text, 1
    for index in range(1, len(lines)):
        if lines[index].rstrip("\r\n").rstrip() in _FRONT_MATTER_CLOSE:
            raw = "".join(lines[: index + 1])
            return raw, "".join(lines[index + 1 :]), index + 2
    raise RecordError("front matter is not closed by a '---' line")


def parse_front_matter(raw: str) -> dict[str, Any]:
    if not raw:
        return {}
    lines = raw.splitlines(keepends=True)
    try:
        loaded = yaml.safe_load("".join(lines[1:-1]))
    except yaml.YAMLError as exc:
        raise RecordError(f"front matter is not valid YAML: {exc}") from exc
    except RecursionError:
        # PyYAML nests a frame per bracket: `a: [[[[...` a few thousand deep escaped as
        # RecursionError, out of the file watcher's task (the daemon's root nursery).
        raise RecordError("front matter is not valid YAML: nested too deeply") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise RecordError("front matter is not a mapping")
    return {str(key): value for key, value in loaded.items()}


def _visible(entry: os.DirEntry[str]) -> bool:
    return not entry.name.startswith(".")


def _subdirs(path: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as entries:
            return sorted(
                (e for e in entries if _visible(e) and e.is_dir(follow_symlinks=True)),
                key=lambda e: e.name,
            )
    except (FileNotFoundError, NotADirectoryError):
        return []


class RecordIndex:
    """id -> file for one data directory; see the module docstring for the rules."""

    def __init__(self, data_dir: Path | str) -> None:
        self.data_dir = Path(data_dir)
        self._real_root = self.data_dir.resolve()
        self._index: dict[str, tuple[Path, bool]] = {}
        self._dir_mtimes: dict[Path, int] = {}
        self._scanned_at = 0.0

    def __len__(self) -> int:
        return len(self._index)

    def ids(self) -> list[str]:
        return sorted(self._index)

    def _roots(self) -> list[_Root]:
        records = self.data_dir / RECORDS_DIR
        return [
            _Root(records, archived=False),
            _Root(self.data_dir / ARCHIVE_DIR, archived=True),
            _Root(records / ARCHIVE_DIR, archived=True),
        ]

    def inside(self, path: Path) -> bool:
        """Whether `path`, symlinks resolved now, is in the data directory."""
        return self._inside(path)

    def _inside(self, path: Path) -> bool:
        try:
            return path.resolve().is_relative_to(self._real_root)
        except OSError:
            return False

    def _walk(self) -> tuple[list[tuple[str, Path, bool]], dict[Path, int]]:
        found: list[tuple[str, Path, bool]] = []
        mtimes: dict[Path, int] = {}
        for root in self._roots():
            try:
                mtimes[root.path] = root.path.stat().st_mtime_ns
            except OSError:
                continue
            for type_dir in _subdirs(root.path):
                if not root.archived and type_dir.name == ARCHIVE_DIR:
                    continue  # records/archive is its own root
                mtimes[Path(type_dir.path)] = type_dir.stat().st_mtime_ns
                for year_dir in _subdirs(Path(type_dir.path)):
                    mtimes[Path(year_dir.path)] = year_dir.stat().st_mtime_ns
                    with os.scandir(year_dir.path) as entries:
                        for entry in sorted(entries, key=lambda e: e.name):
                            if _visible(entry) and entry.name.endswith(SUFFIX):
                                path = Path(entry.path)
                                if entry.is_file() and self._inside(path):
                                    found.append((entry.name[: -len(SUFFIX)], path, root.archived))
        return found, mtimes

    def scan(self) -> int:
        """Rebuild the index from the disk (blocking); returns the number of records."""
        started = time.time()
        found, mtimes = self._walk()
        index: dict[str, tuple[Path, bool]] = {}
        # Active records first, then archived ones; each group in sorted path order.
        for record_id, path, archived in sorted(found, key=lambda f: (f[2], str(f[1]))):
            if not is_valid_id(record_id):
                log.warning("record file with an unusable id ignored: %s", path)
                continue
            if record_id in index:
                log.warning(
                    "duplicate record id %r: %s is shadowed by %s",
                    record_id,
                    path,
                    index[record_id][0],
                )
                continue
            index[record_id] = (path, archived)
        self._index = index
        self._dir_mtimes = mtimes
        self._scanned_at = started
        return len(index)

    def _changed(self) -> bool:
        racy_after = (self._scanned_at - RACY_SECONDS) * 1e9
        if not self._dir_mtimes:
            return True
        for path, mtime in self._dir_mtimes.items():
            if mtime >= racy_after:
                return True
            try:
                if path.stat().st_mtime_ns != mtime:
                    return True
            except OSError:
                return True
        # A new type or year directory shows in its parent's mtime, already checked; a new
        # root (records/ or archive/ created after the scan) shows here.
        return any(r.path.is_dir() and r.path not in self._dir_mtimes for r in self._roots())

    def refresh_if_changed(self) -> bool:
        """Rescan when a directory changed since the last scan (blocking, cheap otherwise)."""
        if not self._changed():
            return False
        self.scan()
        return True

    def paths(self) -> list[tuple[str, Path]]:
        """Every (id, file) of the current index (a snapshot; safe from any thread)."""
        return [(record_id, entry[0]) for record_id, entry in self._index.items()]

    def lookup(self, record_id: str) -> Path | None:
        if not is_valid_id(record_id):
            return None
        entry = self._index.get(record_id)
        return entry[0] if entry is not None else None

    def read(self, record_id: str) -> Record:
        """Read a record (blocking). Raises KeyError when the id is unknown, `RecordError`
        when the file cannot be parsed, OSError when it cannot be read."""
        entry = self._index.get(record_id) if is_valid_id(record_id) else None
        if entry is None:
            raise KeyError(record_id)
        path, archived = entry
        if not self._inside(path):  # the file was replaced by a symlink since the scan
            raise KeyError(record_id)
        source = path.read_text(encoding="utf-8")
        raw, body, body_line = split_front_matter(source)
        return Record(
            id=record_id,
            path=path,
            front_matter=parse_front_matter(raw),
            body=body,
            raw_front_matter=raw,
            archived=archived,
            body_line=body_line,
        )
