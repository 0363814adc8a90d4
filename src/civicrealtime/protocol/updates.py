"""The one boundary between untrusted bytes and pycrdt.

yrs trusts the leading var-uints of an update: given random bytes it can allocate from a
huge count (0.4 s of CPU and 512 MB, holding the GIL) before failing. The pre-check below
rejects those inputs cheaply: the first two var-uints of a v1 update (number of clients,
then the first client's number of structs, or the delete set's count) are bounded by the
update's length in every valid update. Past that, pycrdt raises a zoo of exception types
(including Rust panics, which are BaseExceptions); they all become `InvalidUpdate` here so
that nothing on the data path has to know them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pycrdt import Doc, get_state

from .errors import MalformedMessage
from .varint import Reader

T = TypeVar("T")


class InvalidUpdate(MalformedMessage):
    """An update (or state vector) that pycrdt cannot or must not apply."""


def _is_rust_panic(exc: BaseException) -> bool:
    # pyo3 creates `pyo3_runtime.PanicException` lazily, so it cannot be imported up front.
    return type(exc).__name__ == "PanicException"


def precheck_update(update: bytes) -> None:
    """Raise `InvalidUpdate` when an update's leading counts cannot be honest."""
    reader = Reader(update)
    limit = len(update)
    try:
        clients = reader.read_var_uint()
        if clients > limit:
            raise InvalidUpdate(f"update claims {clients} clients in {limit} bytes")
        # An empty update is just two zero var-uints; anything shorter is truncated.
        second = reader.read_var_uint()
    except MalformedMessage as exc:
        raise InvalidUpdate(f"update header: {exc}") from exc
    if second > limit:
        raise InvalidUpdate(f"update claims {second} entries in {limit} bytes")


def precheck_state_vector(state_vector: bytes) -> None:
    """A state vector is a count then (client, clock) pairs: at least 2 bytes per pair."""
    reader = Reader(state_vector)
    try:
        count = reader.read_var_uint()
    except MalformedMessage as exc:
        raise InvalidUpdate(f"state vector: {exc}") from exc
    if count * 2 > reader.remaining:
        raise InvalidUpdate(f"state vector claims {count} clients in {len(state_vector)} bytes")


def _guarded(call: Callable[[], T], what: str) -> T:
    """Run one pycrdt call on untrusted input; every failure becomes `InvalidUpdate`."""
    try:
        return call()
    except Exception as exc:
        raise InvalidUpdate(f"{what} rejected by pycrdt: {type(exc).__name__}") from exc
    except BaseException as exc:
        if not _is_rust_panic(exc):
            raise
        raise InvalidUpdate(f"{what} rejected by pycrdt: panic") from exc


guarded = _guarded


def apply_update(doc: Doc[Any], update: bytes) -> None:
    """Apply an update from a peer, or raise `InvalidUpdate` and leave `doc` unchanged.

    yrs checks the whole update before integrating it, so a failure changes nothing.
    """
    precheck_update(update)
    _guarded(lambda: doc.apply_update(update), "update")


def diff_update(doc: Doc[Any], state_vector: bytes) -> bytes:
    """The update a peer with `state_vector` is missing, or raise `InvalidUpdate`."""
    precheck_state_vector(state_vector)
    return _guarded(lambda: doc.get_update(state_vector), "state vector")


def update_state_vector(update: bytes) -> dict[int, int]:
    """{client: next clock} of the structs an update carries; raises `InvalidUpdate`."""
    precheck_update(update)
    return decode_state_vector(_guarded(lambda: get_state(update), "update"))


def decode_state_vector(encoded: bytes) -> dict[int, int]:
    reader = Reader(encoded)
    try:
        count = reader.read_var_uint()
        if count * 2 > reader.remaining:
            raise InvalidUpdate(f"state vector claims {count} clients in {len(encoded)} bytes")
        return {reader.read_var_uint(): reader.read_var_uint() for _ in range(count)}
    except MalformedMessage as exc:
        raise InvalidUpdate(f"state vector: {exc}") from exc


def adds_structs(update: bytes, doc_state: dict[int, int]) -> bool:
    """Whether the update carries items the document does not have yet."""
    return any(
        clock > doc_state.get(client, 0) for client, clock in update_state_vector(update).items()
    )
