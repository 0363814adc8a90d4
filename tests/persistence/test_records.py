from __future__ import annotations

import zlib

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from civicrealtime.persistence import (
    CURRENT_FORMAT,
    CorruptRecord,
    build_log_record,
    build_snapshot,
    verify_log_record,
    verify_snapshot,
)


@given(state=st.binary(max_size=4096), compress=st.booleans())
def test_snapshot_round_trips(state: bytes, compress: bool) -> None:
    record = build_snapshot(
        "records:a", state, version=4, created_at=1700000000123, log_seq=9, compress=compress
    )
    assert record.id == "records:a-4-1700000000123"
    assert record.format_version == CURRENT_FORMAT == 1
    assert record.byte_size == len(state)
    assert record.compression == ("zlib" if compress else None)
    assert verify_snapshot(record) == state


def snapshot(state: bytes = b"some state" * 10, compress: bool = False) -> object:
    return build_snapshot("r", state, version=1, created_at=1, log_seq=0, compress=compress)


@pytest.mark.parametrize(
    ("change", "kind"),
    [
        ({"integrity_hash": "0" * 64}, "hash"),
        ({"format_version": 2}, "format"),
        ({"format_version": 0}, "format"),
        ({"byte_size": 3}, "size"),
        ({"compression": "lz4"}, "compression"),
    ],
)
def test_snapshot_corruption_is_detected(change: dict[str, object], kind: str) -> None:
    record = attrs.evolve(snapshot(), **change)  # type: ignore[misc]
    with pytest.raises(CorruptRecord) as caught:
        verify_snapshot(record)
    assert caught.value.kind == kind


def test_compressed_snapshot_corruption_is_detected() -> None:
    record = snapshot(compress=True)
    broken = attrs.evolve(record, data=record.data[:-4])  # type: ignore[misc]
    with pytest.raises(CorruptRecord) as caught:
        verify_snapshot(broken)
    assert caught.value.kind == "decompress"
    garbage = attrs.evolve(record, data=b"not zlib at all")  # type: ignore[misc]
    with pytest.raises(CorruptRecord, match="decompression failed"):
        verify_snapshot(garbage)


def test_decompression_is_bounded_by_the_recorded_size() -> None:
    bomb = zlib.compress(b"\x00" * 10_000_000)
    record = attrs.evolve(snapshot(compress=True), data=bomb)  # type: ignore[misc]
    with pytest.raises(CorruptRecord) as caught:
        verify_snapshot(record)
    assert caught.value.kind == "size"


def test_civicpress_rows_without_hash_are_accepted_unverified() -> None:
    record = attrs.evolve(snapshot(), integrity_hash="", byte_size=0)  # type: ignore[misc]
    assert verify_snapshot(record) == b"some state" * 10


@given(data=st.binary(max_size=512), flip=st.integers(min_value=0))
def test_log_record_checksum_catches_any_single_bit_flip(data: bytes, flip: int) -> None:
    record = build_log_record("r", 3, data, 1700000000000)
    verify_log_record(record)
    if data:
        index = flip % (len(data) * 8)
        damaged = bytearray(data)
        damaged[index // 8] ^= 1 << (index % 8)
        with pytest.raises(CorruptRecord, match="crc32 mismatch"):
            verify_log_record(attrs.evolve(record, data=bytes(damaged)))
