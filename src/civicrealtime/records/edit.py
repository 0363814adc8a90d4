"""Edits of a record's document from its Markdown: parsing them, and the room-side change.

`parse_content` (pure, run it in a worker thread) turns a whole record file or a bare body
into the document tree, or raises `ContentError` with the line at fault: text that is not
UTF-8, a front matter block that is not closed or not YAML. Markdown itself always parses
(CommonMark has no syntax errors); what the editor's schema cannot hold is mapped as at
seeding and reported as notes.

`replace_with` and `merge_from_file` build the function a `ServerEdit` runs in the room:
they compute the change against the live document at that moment (not when the request
arrived) and make it in one transaction whose origin is the actor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import yaml
from pycrdt import Doc, XmlFragment

from ..protocol.document import YDocument
from .diff import apply_blocks, merge_blocks
from .markdown_reader import Unsupported, parse_markdown
from .model import Node
from .source import RecordError, parse_front_matter, split_front_matter
from .yjs_form import read_fragment

log = logging.getLogger("civicrealtime.records")

FRAGMENT = "default"


class ContentError(ValueError):
    """Content that cannot be read as a record; `line` is 1-based in the text given."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


@attrs.frozen
class Parsed:
    blocks: tuple[Node, ...]
    unsupported: tuple[Unsupported, ...]
    body_line: int  # the text's line number of the body's first line


def decode(data: bytes) -> str:
    """UTF-8 text, or `ContentError` at the line of the first byte that is not."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ContentError(line, "the text is not UTF-8") from None


def parse_content(text: str) -> Parsed:
    """A record's file (front matter and body) or a bare body, as a document tree."""
    try:
        raw, body, body_line = split_front_matter(text)
    except RecordError as exc:
        raise ContentError(1, str(exc)) from None
    try:
        parse_front_matter(raw)
    except RecordError as exc:
        line = 1
        cause = exc.__cause__
        mark = getattr(cause, "problem_mark", None) if isinstance(cause, yaml.YAMLError) else None
        if mark is not None:
            line = int(mark.line) + 2  # the YAML starts on the line after `---`
        raise ContentError(line, str(exc).split("\n", 1)[0]) from None
    blocks, unsupported = parse_markdown(body)
    return Parsed(tuple(blocks), tuple(unsupported), body_line)


def markdown_of(doc: Doc[Any]) -> tuple[Node, ...]:
    """The document tree of a record room (cheap; serialise it with `write_markdown`)."""
    return read_fragment(doc.get(FRAGMENT, type=XmlFragment))


def replace_with(blocks: Sequence[Node], actor: str) -> Callable[[YDocument], None]:
    """The edit that makes the live document equal to `blocks`, by a minimal change."""

    def edit(document: YDocument) -> None:
        doc = document.doc
        fragment = doc.get(FRAGMENT, type=XmlFragment)
        with doc.transaction(origin=actor):
            stats = apply_blocks(fragment, blocks)
        log.info("records.edit actor=%s change=%s", actor, stats)

    return edit


@attrs.define
class MergeReport:
    """Filled in by a merge edit when the room runs it."""

    conflicts: int = 0
    ran: bool = False


def merge_from_file(
    record_id: str,
    base: Sequence[Node],
    theirs: Sequence[Node],
    actor: str,
    report: MergeReport | None = None,
) -> Callable[[YDocument], None]:
    """The edit that brings a change (`base` -> `theirs`) into the live document, three-way.

    The published file's change (the watcher), or a PUT whose `If-Match` names the version
    it was made from: what the editors typed meanwhile is kept.
    """

    def edit(document: YDocument) -> None:
        doc = document.doc
        fragment = doc.get(FRAGMENT, type=XmlFragment)
        with doc.transaction(origin=actor):
            merged = merge_blocks(base, read_fragment(fragment), theirs)
            stats = apply_blocks(fragment, merged.blocks)
        if report is not None:
            report.conflicts, report.ran = merged.conflicts, True
        if merged.conflicts:
            log.warning(
                "records.merge_conflict record=%s actor=%s regions=%d: what the editors "
                "changed there keeps their version",
                record_id,
                actor,
                merged.conflicts,
            )
        log.info("records.merged record=%s actor=%s change=%s", record_id, actor, stats)

    return edit
