"""Stored equity columns: compact forms decode to the exact raw bytes."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from usdcarb.backtest.colcodec import (
    decode,
    decode_columns,
    encode_columns,
    encode_grid,
    encode_zlib,
)
from usdcarb.backtest.model import EquityColumns

pytestmark = pytest.mark.unit


def test_a_regular_time_grid_is_16_bytes_and_decodes_bit_for_bit() -> None:
    t = (1_700_000_000_000 + 60_000 * np.arange(1_000_000, dtype=np.int64)).astype("<i8")
    stored = encode_grid(t.tobytes(), len(t))
    assert len(stored) == 4 + 16
    assert decode(stored, len(t)) == t.tobytes()


def test_an_irregular_or_short_column_stays_raw() -> None:
    t = np.array([0, 60_000, 180_000], "<i8").tobytes()
    assert encode_grid(t, 3) == t
    one = np.array([5], "<i8").tobytes()
    assert encode_grid(one, 1) == one and decode(one, 1) == one


def test_zlib_only_when_it_pays_and_round_trips() -> None:
    flat = np.zeros(500_000, "<f8")
    flat[1000:2000] = 0.5
    stored = encode_zlib(flat.tobytes())
    assert len(stored) < len(flat.tobytes()) // 10
    assert decode(stored, len(flat)) == flat.tobytes()
    noise = np.random.default_rng(1).random(10_000).astype("<f8").tobytes()
    assert encode_zlib(noise) == noise        # does not compress: stored raw


def test_whole_curve_round_trip_and_raw_rows_read_as_before() -> None:
    n = 50_000
    rng = np.random.default_rng(2)
    raw = EquityColumns(
        points=n, time_ms=(60_000 * np.arange(n, dtype=np.int64)).astype("<i8").tobytes(),
        equity=(1e6 + rng.standard_normal(n).cumsum()).astype("<f8").tobytes(),
        drawdown=rng.random(n).astype("<f8").tobytes(),
        exposure=np.where(rng.random(n) < 0.9, 0.0, 1.5).astype("<f8").tobytes())
    compact = encode_columns(raw)
    assert len(compact.time_ms) + len(compact.exposure) < (len(raw.time_ms)) // 2
    assert decode_columns(compact) == raw
    assert decode_columns(raw) == raw          # rows stored before the codec


@pytest.mark.parametrize("stored", [b"\x00UZ", b"\x00UZ\x07abc", b"garbage!", b"\x00UZ\x02xx"])
def test_a_damaged_column_is_an_error_not_wrong_numbers(stored: bytes) -> None:
    with pytest.raises((ValueError, zlib.error)):
        decode(stored, 3)
