"""Compact stored forms of equity curve columns, read back to the exact bytes.

A stored column is either the raw little-endian array (exactly ``points * 8`` bytes, what
results stored before this codec hold) or ``MAGIC`` + a method byte + payload:
- ``GRID``: an int64 column on a regular step (bar times): first value and step, 16 bytes
  instead of 8 MB a million bars;
- ``ZLIB``: zlib level 1 of the raw bytes, used only when it saves at least 10% (exposure
  is 0 whenever the strategy is flat: a million bars shrink to a few hundred KB).
An encoded column is never ``points * 8`` bytes long, so the two cannot be confused.
Equity and drawdown stay raw: under load zlib took longer than storing what it saved.
"""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np

from usdcarb.backtest.model import EquityColumns

MAGIC = b"\x00UZ"
GRID, ZLIB = 1, 2


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


def decode(stored: bytes, points: int) -> bytes:
    """The raw little-endian bytes of a stored column of ``points`` values."""
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
    else:
        raise ValueError(f"expected column method {GRID} or {ZLIB}, got {method}")
    if len(raw) != points * 8:
        raise ValueError(f"expected {points * 8} bytes once decoded, got {len(raw)}")
    return raw


def encode_columns(c: EquityColumns) -> EquityColumns:
    """The stored form of a curve's columns (bar times as a grid, exposure zlib)."""
    return dataclasses.replace(c, time_ms=encode_grid(c.time_ms, c.points),
                               exposure=encode_zlib(c.exposure))


def decode_columns(c: EquityColumns) -> EquityColumns:
    """Raw columns of a stored curve (either form)."""
    return EquityColumns(points=c.points, time_ms=decode(c.time_ms, c.points),
                         equity=decode(c.equity, c.points),
                         drawdown=decode(c.drawdown, c.points),
                         exposure=decode(c.exposure, c.points))
