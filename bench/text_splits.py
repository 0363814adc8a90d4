"""The cost of `YDocument.apply` (surrogate-pair containment) against a bare pycrdt apply.

    python bench/text_splits.py [updates] [repeats]

Typing-size updates (one character per transaction, appended, as an editor types), made by
pycrdt, applied to a fresh document by:
  before   `protocol.updates.apply_update` (pre-check + pycrdt), the path before issue 14;
  after    `YDocument.apply` (pre-check + struct reader + split-point check + pycrdt + the
           pending check).
Three texts: ASCII only; one character in ten an emoji (the index of pairs is then never
empty); every character an emoji. Prints µs per update (best of `repeats`).

Then the rare path: one update that splits an emoji in a document of N characters (the
document is rebuilt from its rewritten state), in ms per containment.
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pycrdt import Doc, Text, TransactionEvent

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from civicrealtime.protocol.document import YDocument
from civicrealtime.protocol.updates import apply_update
from civicrealtime.protocol.varint import encode_var_string, encode_var_uint


def typing_updates(count: int, emoji_every: int) -> list[bytes]:
    doc: Doc[Any] = Doc()
    text = doc.get("text", type=Text)
    updates: list[bytes] = []

    def collect(event: TransactionEvent) -> None:
        updates.append(event.update)

    doc.observe(collect)
    for i in range(count):
        text += "😀" if emoji_every and i % emoji_every == 0 else "abcdefghij"[i % 10]
    return updates


def best_us(
    make: Callable[[], Callable[[bytes], object]], updates: list[bytes], repeats: int
) -> float:
    """µs per update, best of `repeats`, each run into a fresh document from `make`."""
    best = float("inf")
    for _ in range(repeats):
        apply = make()
        start = time.perf_counter()
        for update in updates:
            apply(update)
        best = min(best, time.perf_counter() - start)
    return best / len(updates) * 1e6


def typing(count: int, repeats: int) -> None:
    print(f"typing, {count} one-character updates, best of {repeats}: µs per update")
    print(f"{'text':<22}{'before':>10}{'after':>10}{'extra':>10}")
    for label, every in (("ASCII", 0), ("1 emoji in 10", 10), ("all emoji", 1)):
        updates = typing_updates(count, every)
        before = best_us(lambda: functools.partial(apply_update, Doc()), updates, repeats)
        after = best_us(lambda: YDocument().apply, updates, repeats)
        print(f"{label:<22}{before:>10.1f}{after:>10.1f}{after - before:>10.1f}")


def containment(sizes: tuple[int, ...]) -> None:
    print("one contained split (document rebuilt): ms")
    for size in sizes:
        source: Doc[Any] = Doc()
        text = source.get("text", type=Text)
        # One transaction per line of 50 characters, an emoji in each line.
        for line in range(size // 50):
            text += "😀" + "x" * 48 + ("\n" if line % 2 else " ")
        state = source.get_update()
        author = source.client_id
        # Another client inserts right after the first emoji's high half (clock 0).
        split = (
            encode_var_uint(1)
            + encode_var_uint(1)
            + encode_var_uint(424242)
            + encode_var_uint(0)
            + bytes([0x84])
            + encode_var_uint(author)
            + encode_var_uint(0)
            + encode_var_string("é")
            + encode_var_uint(0)
        )
        best = float("inf")
        for _ in range(5):
            document = YDocument()
            document.apply(state)
            start = time.perf_counter()
            contained = document.apply(split)
            best = min(best, time.perf_counter() - start)
            assert contained == 1
        print(f"  {size:>7} characters ({len(state):>7} bytes): {best * 1000:8.2f}")


def main() -> None:
    # Each containment logs a warning; the rare-path loop would print them all.
    logging.disable(logging.WARNING)
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    typing(count, repeats)
    containment((1_000, 10_000, 100_000))


if __name__ == "__main__":
    main()
