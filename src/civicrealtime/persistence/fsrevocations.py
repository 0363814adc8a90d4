"""The filesystem layout's revocations file: `realtime/revocations.json`, rewritten whole.

Read and written in the filesystem store's worker thread (`FilesystemStore`), which owns
the directory and its lock; nothing here opens the store.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import attrs

from ..atomicfile import write_atomically
from ..auth.revocation import Revocation
from .errors import StoreError

REVOCATIONS_FILE = "revocations.json"


def read_revocations(root: Path, description: str) -> list[Revocation]:
    """Every revocation in the file, expired or not. Raises `StoreError` for a bad file."""
    path = root / REVOCATIONS_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    try:
        fields = json.loads(data)
        return [_revocation(item) for item in fields["revocations"]]
    except (ValueError, TypeError, KeyError) as exc:
        # Never guess: starting without the revocations would let revoked sessions in.
        raise StoreError(
            f"{description}: {path} is not a revocations file ({exc!r}); fix or remove it"
        ) from None


def load_revocations(root: Path, description: str) -> list[Revocation]:
    """The revocations that still apply."""
    now = time.time()
    return [r for r in read_revocations(root, description) if r.until is None or r.until > now]


def save_revocation(root: Path, description: str, revocation: Revocation) -> None:
    """Rewrite the (small) file atomically with `revocation` added, expired ones dropped."""
    kept = {
        (r.kind, r.subject): r
        for r in read_revocations(root, description)
        if r.until is None or r.until > revocation.revoked_at
    }
    key = (revocation.kind, revocation.subject)
    kept[key] = _later(kept[key], revocation) if key in kept else revocation
    items = [attrs.asdict(r) for r in sorted(kept.values(), key=lambda r: r.revoked_at)]
    body = json.dumps({"format": 1, "revocations": items}, indent=1) + "\n"
    write_atomically(root / REVOCATIONS_FILE, body.encode())


def _revocation(item: Any) -> Revocation:
    kind, revoked_at, until = item["kind"], float(item["revoked_at"]), item["until"]
    if kind not in ("user", "token"):
        raise ValueError(f"kind {kind!r} is neither 'user' nor 'token'")
    if until is not None:
        until = float(until)
    if not math.isfinite(revoked_at) or (until is not None and not math.isfinite(until)):
        raise ValueError("times must be finite numbers")
    return Revocation(kind=kind, subject=str(item["subject"]), revoked_at=revoked_at, until=until)


def _later(kept: Revocation, new: Revocation) -> Revocation:
    """The union of two revocations of one subject, as the SQL stores keep it."""
    until = None if kept.until is None or new.until is None else max(kept.until, new.until)
    return attrs.evolve(new, revoked_at=max(kept.revoked_at, new.revoked_at), until=until)
