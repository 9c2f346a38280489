"""Stored equity columns: compact forms decode to the exact raw bytes."""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np
import pytest

from usdcarb.backtest.colcodec import (
    DRAWDOWN,
    LZ4,
    MAGIC,
    SHUFFLED_LZ4,
    SPLIT,
    decode,
    decode_columns,
    encode_columns,
    encode_drawdown,
    encode_grid,
    encode_lz4,
    encode_split,
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


def _curve(n: int, seed: int = 3) -> tuple[np.ndarray, float]:
    """An equity curve like a spread strategy's: flat spells and small moves in a position."""
    rng = np.random.default_rng(seed)
    moves = np.where(rng.random(n) < 0.3, rng.standard_normal(n) * 25.0, 0.0)
    return (1e7 + moves.cumsum()).astype("<f8"), 1e7


def _engine_drawdown(equity: np.ndarray, initial: float) -> np.ndarray:
    """The engine's per-bar loop (engine/loop.py ``_curve_step``), written out in Python."""
    out = np.empty(len(equity))
    peak, dd, prev = initial, 0.0, initial
    for i, eq in enumerate(equity.tolist()):
        if eq != prev:
            prev = eq
            if eq >= peak:
                peak, dd = eq, 0.0
            else:
                dd = 1.0 - eq / peak
        out[i] = dd
    return out.astype("<f8")


def test_a_drawdown_column_is_recomputed_from_the_equity_bit_for_bit() -> None:
    equity, initial = _curve(20_000)
    drawdown = _engine_drawdown(equity, initial)
    stored = encode_drawdown(drawdown.tobytes(), equity.tobytes(), initial)
    assert stored[:4] == MAGIC + bytes([DRAWDOWN]) and len(stored) == 12
    assert decode(stored, len(equity), equity.tobytes()) == drawdown.tobytes()
    with pytest.raises(ValueError, match="equity"):
        decode(stored, len(equity))                 # without the equity column


def test_a_drawdown_the_equity_does_not_give_exactly_is_kept_as_it_is() -> None:
    equity, initial = _curve(20_000)
    drawdown = _engine_drawdown(equity, initial)
    drawdown[777] = np.nextafter(drawdown[777], 1.0)   # one ulp off
    assert encode_drawdown(drawdown.tobytes(), equity.tobytes(), initial) == drawdown.tobytes()
    other = _engine_drawdown(equity, initial * 1.01)   # another initial equity
    assert encode_drawdown(other.tobytes(), equity.tobytes(), initial) == other.tobytes()


def test_lz4_forms_pay_and_round_trip() -> None:
    equity, _ = _curve(100_000)
    stored = encode_split(equity.tobytes())
    assert stored[:4] == MAGIC + bytes([SPLIT])
    assert len(stored) < len(equity.tobytes()) // 2
    assert decode(stored, len(equity)) == equity.tobytes()
    with pytest.raises(ValueError, match="100001"):
        decode(stored, len(equity) + 1)        # another length than stored
    import pyarrow as pa  # results stored by the first LZ4 codec
    planes = np.frombuffer(equity.tobytes(), np.uint8).reshape(-1, 8).T.tobytes()
    old = MAGIC + bytes([SHUFFLED_LZ4]) + pa.compress(planes, codec="lz4", asbytes=True)
    assert decode(old, len(equity)) == equity.tobytes()
    flat = np.zeros(100_000, "<f8")
    flat[5_000:6_000] = -10_000.0
    stored = encode_lz4(flat.tobytes())
    assert stored[:4] == MAGIC + bytes([LZ4]) and len(stored) < len(flat.tobytes()) // 20
    assert decode(stored, len(flat)) == flat.tobytes()
    noise = np.random.default_rng(4).bytes(80_000)   # no byte plane repeats
    assert encode_lz4(noise) == noise and encode_split(noise) == noise


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
    # A curve as the engine writes it: every column compact, and back bit for bit.
    equity, initial = _curve(n)
    run = EquityColumns(points=n, time_ms=raw.time_ms, equity=equity.tobytes(),
                        drawdown=_engine_drawdown(equity, initial).tobytes(),
                        exposure=raw.exposure)
    compact = encode_columns(run, initial)
    assert len(compact.drawdown) == 12 and len(compact.equity) < len(run.equity) // 2
    assert decode_columns(compact) == run
    legacy = dataclasses.replace(run, exposure=encode_zlib(run.exposure))  # zlib rows
    assert decode_columns(legacy) == run


@pytest.mark.parametrize("stored", [b"\x00UZ", b"\x00UZ\x07abc", b"garbage!", b"\x00UZ\x02xx",
                                    b"\x00UZ\x03xx", b"\x00UZ\x04xx", b"\x00UZ\x05x",
                                    b"\x00UZ\x06PAR1"])
def test_a_damaged_column_is_an_error_not_wrong_numbers(stored: bytes) -> None:
    with pytest.raises((ValueError, zlib.error)):
        decode(stored, 3)
