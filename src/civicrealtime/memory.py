"""Giving freed memory back to the operating system.

glibc's allocator keeps freed heap pages for reuse: after a room holding hundreds of MiB
left memory, the process RSS stayed where it was. `malloc_trim(0)` returns the free pages.
Elsewhere (musl, macOS) there is no such call and nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable


def _find_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc
    return trim


_malloc_trim = _find_malloc_trim()


def trim_memory() -> bool:
    """Return free heap pages to the OS; False where the C library cannot. Blocks (run it
    in a thread: ctypes releases the GIL for the call)."""
    if _malloc_trim is None:
        return False
    _malloc_trim(0)
    return True
