"""Compact stored forms of equity curve columns, read back to the exact bytes.

A stored column is either the raw little-endian array (exactly ``points * 8`` bytes, what
results stored before this codec hold) or ``MAGIC`` + a method byte + payload:
- ``GRID``: an int64 column on a regular step (bar times): first value and step, 16 bytes
  instead of 8 MB a million bars;
- ``ZLIB``: zlib level 1 of the raw bytes (what results stored before ``LZ4`` hold);
- ``LZ4``: an LZ4 frame of the raw bytes (exposure is 0 whenever the strategy is flat: a
  million bars shrink to ~5%, in a fifth of zlib's time);
- ``SPLIT``: a one-column Parquet file, the values BYTE_STREAM_SPLIT (the eight byte planes
  one after another: an equity curve moves in its low bytes only, so its high planes are
  runs) and zstd-compressed: ~30% of raw in ~10 ms a million points (Arrow's SIMD split;
  numpy's strided transpose took 30-70 ms). ``SHUFFLED_LZ4`` (planes split by numpy, LZ4)
  is still read;
- ``DRAWDOWN``: no values at all, only the initial equity: the column is exactly
  ``1 - equity / peak`` with ``peak`` the running maximum of the initial equity and the
  equity column (``0`` at a peak), the engine's own definition. It is used only when that
  recomputation gives the engine's column bit for bit (checked when encoding), so a
  change of definition in the engine falls back to another form, never to other numbers.
Each compressed form is used only when it saves at least 10%. An encoded column is never
``points * 8`` bytes long, so the raw and encoded forms cannot be confused.
LZ4, zstd and Parquet are pyarrow's (a dependency already), which run without the GIL.
"""

from __future__ import annotations

import dataclasses
import io
import zlib
from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from usdcarb.backtest.model import EquityColumns

MAGIC = b"\x00UZ"
GRID, ZLIB, LZ4, SHUFFLED_LZ4, DRAWDOWN, SPLIT = 1, 2, 3, 4, 5, 6
_LZ4 = "lz4"   # pyarrow's LZ4 frame codec


def encode_grid(raw: bytes, points: int) -> bytes:
    """``raw`` int64 LE; the GRID form when its values are evenly spaced, else ``raw``."""
    a = np.frombuffer(raw, "<i8")
    if points < 2 or len(a) != points:
        return raw
    step = int(a[1]) - int(a[0])
    expected = int(a[0]) + step * np.arange(points, dtype=np.int64)
    if not np.array_equal(a, expected):
        return raw
    return MAGIC + bytes([GRID]) + np.array([a[0], step], "<i8").tobytes()


def encode_zlib(raw: bytes) -> bytes:
    """The ZLIB form when it saves at least 10%, else ``raw``."""
    packed = zlib.compress(raw, 1)
    if len(packed) + len(MAGIC) + 1 >= 0.9 * len(raw):
        return raw
    return MAGIC + bytes([ZLIB]) + packed


def _pays(packed: bytes, raw: bytes) -> bool:
    return len(packed) + len(MAGIC) + 1 < 0.9 * len(raw)


def encode_lz4(raw: bytes) -> bytes:
    """The LZ4 form when it saves at least 10%, else ``raw``."""
    packed = pa.compress(raw, codec=_LZ4, asbytes=True)
    return MAGIC + bytes([LZ4]) + packed if _pays(packed, raw) else raw


def _lz4_decompress(payload: bytes, points: int) -> bytes:
    try:
        raw: bytes = pa.decompress(payload, decompressed_size=points * 8, codec=_LZ4,
                                   asbytes=True)
    except (OSError, pa.ArrowException) as exc:
        raise ValueError(f"expected an LZ4 frame of {points * 8} bytes: {exc}") from exc
    return raw


def _unplanes(planes: bytes) -> bytes:
    return np.frombuffer(planes, np.uint8).reshape(8, -1).T.tobytes()


def encode_split(raw: bytes) -> bytes:
    """The SPLIT form of float64 values when it saves at least 10%, else ``raw``."""
    if len(raw) % 8 or not raw:
        return raw
    out = io.BytesIO()
    # The bytes as an Arrow array without a copy (a numpy array would make pyarrow import
    # pandas, 0.2 s, to ask whether it is a Series).
    values = pa.Array.from_buffers(pa.float64(), len(raw) // 8, [None, pa.py_buffer(raw)])
    pq.write_table(pa.Table.from_arrays([values], names=["v"]), out, compression="zstd",
                   use_dictionary=False, use_byte_stream_split=True, write_statistics=False,
                   store_schema=False)
    packed = out.getvalue()
    return MAGIC + bytes([SPLIT]) + packed if _pays(packed, raw) else raw


def _split_decode(payload: bytes, points: int) -> bytes:
    try:   # (read_table and to_numpy would import pandas: 0.2 s on first use)
        column = pq.ParquetFile(pa.BufferReader(payload)).read(
            use_pandas_metadata=False).column(0)
    except (OSError, pa.ArrowException) as exc:
        raise ValueError(f"expected a Parquet column of {points} values: {exc}") from exc
    if len(column) != points or column.null_count or column.type != pa.float64():
        raise ValueError(f"expected {points} float64 values, got {len(column)} "
                         f"{column.type}")
    return b"".join(memoryview(c.buffers()[1])[8 * c.offset:8 * (c.offset + len(c))]
                    for c in column.chunks)


def _drawdown(equity: np.ndarray, initial_equity: float) -> np.ndarray:
    """The drawdown column of an equity curve (the engine's definition), float64 '<f8':
    ``1 - equity / peak``, with ``peak`` the running maximum of the initial equity and the
    equity. One array, computed in place."""
    out: np.ndarray = np.maximum(equity, initial_equity, dtype="<f8")
    np.maximum.accumulate(out, out=out)
    np.divide(equity, out, out=out)
    np.subtract(1.0, out, out=out)
    return out


def encode_drawdown(raw: bytes, equity_raw: bytes, initial_equity: float) -> bytes:
    """The DRAWDOWN form when recomputing the column from the equity column gives ``raw``
    bit for bit, else ``raw``."""
    if len(raw) != len(equity_raw) or len(raw) < 8 * 8:
        return raw
    equity = np.frombuffer(equity_raw, "<f8")
    with np.errstate(all="ignore"):
        again = _drawdown(equity, initial_equity)
    if not np.array_equal(again.view("<u8"), np.frombuffer(raw, "<u8")):   # bit for bit
        return raw
    return MAGIC + bytes([DRAWDOWN]) + np.array([initial_equity], "<f8").tobytes()


def decode(stored: bytes, points: int, equity_raw: bytes | None = None) -> bytes:
    """The raw little-endian bytes of a stored column of ``points`` values (a DRAWDOWN
    column needs the raw bytes of its curve's equity column)."""
    if len(stored) == points * 8:
        return stored
    if stored[:len(MAGIC)] != MAGIC or len(stored) <= len(MAGIC):
        raise ValueError(f"expected a raw column of {points * 8} bytes or an encoded one, "
                         f"got {len(stored)} bytes")
    method, payload = stored[len(MAGIC)], stored[len(MAGIC) + 1:]
    if method == GRID:
        first, step = (int(x) for x in np.frombuffer(payload, "<i8", 2))
        raw = (first + step * np.arange(points, dtype=np.int64)).astype("<i8").tobytes()
    elif method == ZLIB:
        raw = zlib.decompress(payload)
    elif method == LZ4:
        raw = _lz4_decompress(payload, points)
    elif method == SPLIT:
        raw = _split_decode(payload, points)
    elif method == SHUFFLED_LZ4:
        raw = _unplanes(_lz4_decompress(payload, points))
    elif method == DRAWDOWN:
        if equity_raw is None or len(equity_raw) != points * 8 or len(payload) != 8:
            raise ValueError("expected a drawdown column's initial equity and its curve's "
                             f"equity column of {points * 8} bytes")
        (initial,) = np.frombuffer(payload, "<f8")
        with np.errstate(all="ignore"):
            raw = _drawdown(np.frombuffer(equity_raw, "<f8"), float(initial)).tobytes()
    else:
        raise ValueError(f"expected a column method from {GRID} to {SPLIT}, got {method}")
    if len(raw) != points * 8:
        raise ValueError(f"expected {points * 8} bytes once decoded, got {len(raw)}")
    return raw


def encode_columns(c: EquityColumns, initial_equity: float | None = None, *,
                   executor: Executor | None = None,
                   encoded: dict[str, bytes] | None = None) -> EquityColumns:
    """The stored form of a curve's columns: bar times as a grid, equity SPLIT,
    drawdown recomputed from the equity (given the run's initial equity), exposure LZ4;
    each only where it holds bit for bit and pays. With ``executor`` the columns are
    encoded side by side on it (the codecs release the GIL); ``encoded``: columns
    encoded already (by ``encode_baseline``/``encode_grid`` here, earlier)."""

    def drawdown() -> bytes:
        if initial_equity is not None:
            dd = encode_drawdown(c.drawdown, c.equity, initial_equity)
            if dd is not c.drawdown:
                return dd
        return encode_split(c.drawdown)

    jobs: dict[str, Callable[[], bytes]] = {
        "equity": lambda: encode_split(c.equity), "drawdown": drawdown,
        "exposure": lambda: encode_lz4(c.exposure),
        "baseline": lambda: encode_baseline(c.baseline),
        "time_ms": lambda: encode_grid(c.time_ms, c.points)}
    done = dict(encoded or {})
    jobs = {k: job for k, job in jobs.items() if k not in done}
    if executor is None:
        done.update({k: job() for k, job in jobs.items()})
    else:
        futures = {k: executor.submit(job) for k, job in jobs.items()}
        done.update({k: f.result() for k, f in futures.items()})
    return dataclasses.replace(c, time_ms=done["time_ms"], equity=done["equity"],
                               drawdown=done["drawdown"], exposure=done["exposure"],
                               baseline=done["baseline"])


def encode_baseline(raw: bytes) -> bytes:
    """The hold baseline's stored form: a column only when it moves (SPLIT where that
    pays); a constant one is its 8 bytes, as given."""
    return encode_split(raw) if len(raw) > 8 else raw


def decode_columns(c: EquityColumns) -> EquityColumns:
    """Raw columns of a stored curve (any form)."""
    equity = decode(c.equity, c.points)
    return EquityColumns(points=c.points, time_ms=decode(c.time_ms, c.points),
                         equity=equity, drawdown=decode(c.drawdown, c.points, equity),
                         exposure=decode(c.exposure, c.points),
                         baseline=decode(c.baseline, c.points) if len(c.baseline) > 8
                         else c.baseline)
