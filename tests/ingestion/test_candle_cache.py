"""The columnar block cache returns exactly what market_data holds, whoever writes."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from usdcarb.marketdata.cache import CandleCache
from usdcarb.marketdata.reader import read_candles
from usdcarb.marketdata.writer import (
    BLOCK_SLOTS,
    GLOBAL_LOCK,
    encode_copy_binary,
    invalidate_blocks,
)

pytestmark = pytest.mark.integration

M = 60_000
T0 = 1_678_406_400_000 // (M * BLOCK_SLOTS) * (M * BLOCK_SLOTS)  # a block boundary
N = 3 * BLOCK_SLOTS + 500


def dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


async def load(pool: Any, ts: np.ndarray, close: np.ndarray, *, symbol: str = "SYN/USD",
               invalidate: bool = True) -> None:
    data = encode_copy_binary(ts, close, close, close, close, np.ones(len(ts)))
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("CREATE TEMP TABLE IF NOT EXISTS s (ts timestamptz, open float8, "
                           "high float8, low float8, close float8, volume float8) "
                           "ON COMMIT DELETE ROWS")
        await conn.copy_to_table("s", source=io.BytesIO(data), format="binary")
        if invalidate:
            await invalidate_blocks(conn, exchange="x", symbol=symbol, timeframe="1m",
                                    first_ms=int(ts.min()), last_ms=int(ts.max()),
                                    timeframe_ms=M, table="market_data")
        await conn.execute(
            f"INSERT INTO market_data (exchange, symbol, timeframe, ts, open, high, low, "
            f"close, volume) SELECT 'x', '{symbol}', '1m', ts, open, high, low, close, volume "
            "FROM s ON CONFLICT (exchange, symbol, timeframe, ts) DO UPDATE "
            "SET close = EXCLUDED.close")


async def both(pool: Any, lo: int, hi: int) -> tuple[Any, Any]:
    cache = CandleCache(table="market_data", blocks="candle_blocks")
    async with pool.acquire() as conn:
        plain = await read_candles(conn, exchange="x", symbol="SYN/USD", timeframe="1m",
                                   start=dt(lo), end=dt(hi), table="market_data")
        cached = await cache.read(conn, exchange="x", symbol="SYN/USD", timeframe="1m",
                                  timeframe_ms=M, start=dt(lo), end=dt(hi))
    return plain, cached


def same(a: Any, b: Any) -> None:
    for f in ("open_time_ms", "open", "high", "low", "close", "volume", "provenance"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))


async def test_cache_reads_equal_market_data_across_writes(service_pool: Any) -> None:
    pool = await service_pool("ingestion")
    ts = T0 + M * np.arange(N, dtype=np.int64)
    ts = ts[(np.arange(N) % 7) != 3]  # gaps
    await load(pool, ts, np.linspace(1, 2, len(ts)))
    lo, hi = T0 + 123 * M, T0 + (N - 50) * M
    plain, cached = await both(pool, lo, hi)
    same(plain, cached)
    assert await pool.fetchval("SELECT count(*) FROM candle_blocks") == 4
    plain, cached = await both(pool, lo, hi)  # now entirely from blocks
    same(plain, cached)
    # a writer that invalidates its blocks drops only those
    await load(pool, ts[BLOCK_SLOTS: BLOCK_SLOTS + 10], np.full(10, 9.0))
    assert await pool.fetchval("SELECT count(*) FROM candle_blocks") == 3
    plain, cached = await both(pool, lo, hi)
    same(plain, cached)
    assert (cached.close == 9.0).sum() == 10
    # a writer unaware of the cache drops every block (statement guard)
    await load(pool, ts[:5], np.full(5, 7.0), invalidate=False)
    assert await pool.fetchval("SELECT count(*) FROM candle_blocks") == 0
    plain, cached = await both(pool, lo, hi)
    same(plain, cached)


async def test_no_block_is_built_while_a_writer_is_in_flight(service_pool: Any) -> None:
    pool = await service_pool("ingestion")
    ts = T0 + M * np.arange(BLOCK_SLOTS, dtype=np.int64)
    await load(pool, ts, np.ones(len(ts)))
    async with pool.acquire() as writer:
        tx = writer.transaction()
        await tx.start()
        await writer.execute("SELECT pg_advisory_xact_lock_shared($1)", GLOBAL_LOCK)
        plain, cached = await both(pool, T0, T0 + BLOCK_SLOTS * M)
        same(plain, cached)
        assert await pool.fetchval("SELECT count(*) FROM candle_blocks") == 0
        await tx.rollback()
    await asyncio.sleep(0)
    await both(pool, T0, T0 + BLOCK_SLOTS * M)
    assert await pool.fetchval("SELECT count(*) FROM candle_blocks") == 1
