"""Write candle columns as a PostgreSQL binary COPY stream (the reader's mirror image).

``encode_copy_binary`` lays fixed-width NOT NULL columns out in one numpy structured
array: no per-row Python work, so encoding runs at memory speed.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import numpy.typing as npt

_PG_EPOCH_MS = 946_684_800_000
_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_TRAILER = b"\xff\xff"
STAGE_COLUMNS = ("ts", "open", "high", "low", "close", "volume")
_ROW = np.dtype([
    ("n", ">i2"),
    ("l_ts", ">i4"), ("ts", ">i8"),
    ("l_o", ">i4"), ("open", ">f8"),
    ("l_h", ">i4"), ("high", ">f8"),
    ("l_l", ">i4"), ("low", ">f8"),
    ("l_c", ">i4"), ("close", ">f8"),
    ("l_v", ">i4"), ("volume", ">f8"),
])


def encode_copy_binary(
    open_time_ms: npt.NDArray[np.int64], open_: npt.NDArray[np.float64],
    high: npt.NDArray[np.float64], low: npt.NDArray[np.float64],
    close: npt.NDArray[np.float64], volume: npt.NDArray[np.float64],
) -> bytes:
    """Encode rows (ts timestamptz, open, high, low, close, volume float8) for COPY BINARY."""
    n = int(open_time_ms.shape[0])
    rows = np.empty(n, dtype=_ROW)
    rows["n"] = 6
    for name in ("l_ts", "l_o", "l_h", "l_l", "l_c", "l_v"):
        rows[name] = 8
    rows["ts"] = (open_time_ms.astype(np.int64) - _PG_EPOCH_MS) * 1000
    rows["open"], rows["high"], rows["low"] = open_, high, low
    rows["close"], rows["volume"] = close, volume
    return _HEADER + rows.tobytes() + _TRAILER


# -- the columnar block cache (ingestion.candle_blocks) -----------------------------------

BLOCK_SLOTS = 10_080  # bar slots per cached block: one week of 1-minute bars
GLOBAL_LOCK = 7_216_372_948_311_501  # advisory key every unaware writer takes (shared)


def series_lock_key(exchange: str, symbol: str, timeframe: str) -> int:
    """Return the advisory lock key of one series' cache blocks (signed 64-bit)."""
    digest = hashlib.sha1(f"{exchange}|{symbol}|{timeframe}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def blocks_table(table: str) -> str:
    """Return the cache table beside a market data table ("x.market_data" -> "x.candle_blocks")."""
    schema, dot, _ = table.rpartition(".")
    return f"{schema}{dot}candle_blocks"


async def invalidate_blocks(conn: Any, *, exchange: str, symbol: str, timeframe: str,
                            first_ms: int, last_ms: int, timeframe_ms: int,
                            table: str = "ingestion.market_data") -> None:
    """Call inside the transaction that writes bars [first_ms, last_ms] of one series to
    ``table``, BEFORE the write: drop the cached blocks it changes, and mark the
    transaction so the statement guard does not drop every other block."""
    span = timeframe_ms * BLOCK_SLOTS
    await conn.execute("SELECT pg_advisory_xact_lock_shared($1)",
                       series_lock_key(exchange, symbol, timeframe))
    await conn.execute(
        f"DELETE FROM {blocks_table(table)} WHERE exchange = $1 AND symbol = $2 "
        "AND timeframe = $3 AND block_start >= $4 AND block_start <= $5",
        exchange, symbol, timeframe, (first_ms // span) * span, (last_ms // span) * span)
    await conn.execute("SELECT set_config('usdcarb.blocks_touched', 'on', true)")
