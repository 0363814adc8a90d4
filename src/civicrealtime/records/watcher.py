"""Watching the published records: a change on disk is merged into its room.

A record's published Markdown changes without us: a `git pull` of the data directory, an
import script, the CivicPress API writing the file. Every `records.watch_seconds` the
watcher stats every record file (a worker thread; no inotify dependency, and it works on
network filesystems). Changed files are collected until a poll finds nothing new (a burst
such as a `git pull` of many files is then handled once, as a whole; a file that never stops
changing is merged anyway after `MAX_BUSY_POLLS` polls), and each is merged once:

- the change is what turned the file's previous text (the base) into its new text; it is
  merged into the live document three-way (`records/diff.py`), as the "filesystem" actor:
  blocks the editors changed as well keep the editors' version (a conflict, logged);
- a live room gets it at once; a room that is stored but not live is loaded, changed and
  stored (then evicted after its grace period); a room never opened needs nothing (it is
  seeded from the file when it opens);
- a file that cannot be read (front matter that is not YAML, text that is not UTF-8) is
  reported in `/health` and the log, and no room is touched; its base stays, so fixing the
  file merges everything since;
- a room that cannot take its edit (it cannot load) is reported the same way; the base is
  put back and the file retried with the next batch;
- nothing we write is a published record (drafts go to `records.drafts_dir`, which the
  watcher ignores), and a file whose text equals its base is not a change: our own writes
  never come back as merges, and a merge never writes a file.

The bases are kept in `<data_dir>/published/<id>.md` (the daemon's data directory), so a
change made while the daemon was stopped is merged when it starts again. A record without
a base there (the first start with this feature) takes the file as it is as its base.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import trio

from ..atomicfile import write_atomically
from ..protocol.document import YDocument
from .edit import ContentError, decode, merge_from_file, parse_content
from .source import RecordIndex

log = logging.getLogger("civicrealtime.records.watcher")

ACTOR = "filesystem"

Edit = Callable[[YDocument], None]
# Delivers a batch of (record id, edit); returns the ids whose rooms took their edit, and
# why the others that needed it could not (a room that cannot load): those are retried.
Deliver = Callable[[Sequence[tuple[str, Edit]]], Awaitable[tuple[set[str], dict[str, str]]]]


# Polls in a row that may find changes before the pending ones are merged anyway: one file
# written more often than the watcher polls (an autosave, a loop in a script) must not hold
# back every other record's merge forever.
MAX_BUSY_POLLS = 10

Signature = tuple[int, int, int]  # mtime_ns, size, inode


def _signature(path: Path) -> Signature | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _read(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8", errors="surrogateescape")
    except OSError:
        return None


class PublishedWatcher:
    def __init__(
        self,
        index: RecordIndex,
        deliver: Deliver,
        *,
        interval: float,
        ignore_under: Path | None = None,
        bases_dir: Path | None = None,
    ) -> None:
        self._index = index
        self._deliver = deliver
        self._interval = interval
        self._ignore = ignore_under.resolve() if ignore_under is not None else None
        self._bases_dir = bases_dir
        self._ignored_paths: dict[Path, bool] = {}  # resolved once per path: a poll only stats
        self._signatures: dict[str, Signature] = {}  # as of the last poll
        # The base of each record: its text as last merged (None: it could not be read).
        self._bases: dict[str, str | None] = {}
        self._previous: dict[str, str | None] = {}  # the bases before the batch in progress
        self.merges = 0  # edits that reached a room
        self.changes = 0  # changed files read and parsed (merged or not needed)
        self.failures: dict[str, str] = {}  # record id -> why its file cannot be merged
        self.on_merge: Callable[[], None] | None = None
        self.on_failure: Callable[[], None] | None = None

    def health(self) -> str | None:
        if not self.failures:
            return None
        first = sorted(self.failures.items())[0]
        return (
            f"{len(self.failures)} published record(s) cannot be merged "
            f"(first: {first[0]}: {first[1]})"
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # The bases; files that changed while the daemon was stopped are pending already.
        pending = await trio.to_thread.run_sync(self._poll)
        task_status.started()
        busy = 0  # polls in a row that found changes
        while True:
            await trio.sleep(self._interval)
            try:
                changed = await trio.to_thread.run_sync(self._poll)
            except OSError as exc:
                # A directory removed or made unreadable mid-scan (a `git pull` of the data
                # directory): this task runs in the daemon's root nursery, so raising would
                # stop the server. The next poll scans again.
                log.warning("records.poll_failed error=%s", exc)
                continue
            if changed:
                pending |= changed
                busy += 1
                if busy < MAX_BUSY_POLLS:
                    continue  # still changing: wait for a quiet poll
            busy = 0
            if pending:
                batch, pending = pending, set()
                pending = await self._merge(sorted(batch))

    def _poll(self) -> set[str]:
        """Ids whose file changed since the last poll (blocking: a worker thread)."""
        if self._index.refresh_if_changed():
            log.info("records.reindexed records=%d", len(self._index))
        changed: set[str] = set()
        signatures: dict[str, Signature] = {}
        bases: dict[str, str | None] = {}
        for record_id, path in self._index.paths():
            if self._ignored(path):
                continue
            signature = _signature(path)
            if signature is None:
                continue
            signatures[record_id] = signature
            if record_id not in self._bases:
                # A record we did not know: its base is the one kept from before, else what
                # it says now (its room, if it ever opens, is seeded from it).
                now = _read(path)
                kept = self._kept_base(record_id)
                if kept is None:
                    self._keep_base(record_id, now)
                    bases[record_id] = now
                else:
                    bases[record_id] = kept
                    if kept != now:
                        changed.add(record_id)
                continue
            bases[record_id] = self._bases[record_id]
            if self._signatures.get(record_id) != signature:
                changed.add(record_id)
        self._signatures, self._bases = signatures, bases
        return changed

    def _base_path(self, record_id: str) -> Path | None:
        return self._bases_dir / f"{record_id}.md" if self._bases_dir is not None else None

    def _kept_base(self, record_id: str) -> str | None:
        path = self._base_path(record_id)
        return _read(path) if path is not None and path.exists() else None

    def _keep_base(self, record_id: str, text: str | None) -> None:
        path = self._base_path(record_id)
        if path is None or text is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Atomic but not synced: a base lost in a crash costs at most the merge of a
            # change made while the daemon was down, and thousands of fsyncs at the first
            # start would delay it by minutes on a slow disk.
            write_atomically(path, text.encode("utf-8"), durable=False)
        except (OSError, UnicodeError) as exc:
            # Only the merge of a change made while the daemon is stopped depends on it.
            log.warning("records.base_not_kept record=%s error=%s", record_id, exc)

    def _ignored(self, path: Path) -> bool:
        if self._ignore is None:
            return False
        known = self._ignored_paths.get(path)
        if known is None:
            try:
                known = Path(os.path.realpath(path)).is_relative_to(self._ignore)
            except OSError:
                known = True
            if len(self._ignored_paths) > 4 * len(self._index) + 1000:
                self._ignored_paths.clear()  # paths of records long gone
            self._ignored_paths[path] = known
        return known

    def _prepare(self, record_id: str) -> tuple[Edit | None, str | None]:
        """(the merge edit or None, the failure) for one changed file (blocking).

        The file's text becomes its base; `_restore` puts the previous one back when the
        edit cannot be delivered.
        """
        path = self._index.lookup(record_id)
        if record_id not in self._bases or path is None:
            return None, None
        if not self._index.inside(path):
            # Replaced by a symlink out of the data directory since the scan: never read.
            return None, "is a link out of the data directory"
        previous = self._bases[record_id]
        try:
            data = path.read_bytes()
        except OSError as exc:
            return None, f"cannot be read: {exc.strerror}"
        try:
            text = decode(data)
            theirs = parse_content(text)
        except ContentError as exc:
            # No retry until the file changes again; the base stays.
            return None, str(exc)
        self._bases[record_id] = text
        self._previous[record_id] = previous
        if text != previous:
            self._keep_base(record_id, text)
        if text == previous:
            return None, None  # touched, or written back identical: not a change
        self.changes += 1
        try:
            base = parse_content(previous).blocks if previous is not None else ()
        except ContentError:
            base = ()  # the previous text was broken: the new one is merged as a whole
        if base == theirs.blocks:
            return None, None  # only the front matter changed: the document did not
        return merge_from_file(record_id, base, theirs.blocks, ACTOR), None

    def _restore(self, record_id: str) -> None:
        if record_id in self._previous and record_id in self._bases:
            self._bases[record_id] = self._previous[record_id]
            self._keep_base(record_id, self._previous[record_id])

    async def _merge(self, ids: Sequence[str]) -> set[str]:
        """Merge a batch; returns the ids to try again with the next one."""
        self._previous.clear()
        edits: list[tuple[str, Edit]] = []
        for record_id in ids:
            try:
                edit, failure = await trio.to_thread.run_sync(self._prepare, record_id)
            except Exception as exc:
                # The isolation boundary of one file: a parser bug on hostile content must
                # not end this task, which runs in the daemon's root nursery.
                log.exception("records.file_failed record=%s", record_id)
                edit, failure = None, f"could not be parsed: {type(exc).__name__}"
            if failure is not None:
                self._fail(record_id, failure)
                continue
            self.failures.pop(record_id, None)
            if edit is not None:
                edits.append((record_id, edit))
        if not edits:
            return set()
        merged, failed = await self._deliver(edits)
        for record_id, why in failed.items():
            await trio.to_thread.run_sync(self._restore, record_id)
            self._fail(record_id, f"not merged, will retry: {why}")
        self.merges += len(merged)
        if self.on_merge is not None:
            for _ in merged:
                self.on_merge()
        log.info(
            "records.file_changes files=%d merged_into_rooms=%d failed=%d",
            len(edits),
            len(merged),
            len(failed),
        )
        return set(failed)

    def _fail(self, record_id: str, why: str) -> None:
        self.failures[record_id] = why
        log.warning("records.file_not_merged record=%s error=%s", record_id, why)
        if self.on_failure is not None:
            self.on_failure()
