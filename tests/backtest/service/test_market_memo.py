"""Market data of a run: the same grid and snapshot hash whether its blocks come from
memory, the block cache or market_data, and never a block that is no longer current."""

from __future__ import annotations

import dataclasses
import io
import os
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from usdcarb.backtest.handoff import create_frame, discard, held_frame, read_frame
from usdcarb.backtest.loading import Loaded, load_market
from usdcarb.backtest.marketmemo import MarketMemo
from usdcarb.marketdata.reader import read_candles
from usdcarb.marketdata.writer import BLOCK_SLOTS, encode_copy_binary, invalidate_blocks

pytestmark = pytest.mark.integration

M = 60_000
T0 = 1_678_406_400_000 // (M * BLOCK_SLOTS) * (M * BLOCK_SLOTS)  # a block boundary
N = 4 * BLOCK_SLOTS + 300
KEYS = [("x", "SYN/USD"), ("y", "SYN/USD")]
LO, HI = T0 + 777 * M + 5, T0 + (N - 100) * M   # both ends cut a block; LO off the grid
SHM = os.path.isdir("/dev/shm")


def _exists(path: str) -> bool:
    return os.path.exists(path)


async def write(pool: Any, venue: str, ts: np.ndarray, close: np.ndarray, *,
                invalidate: bool = True) -> None:
    """Write bars as the ingestion writer does (dropping the blocks it changes), or as an
    unaware writer (the statement guard then drops every block)."""
    data = encode_copy_binary(ts, close, close * 1.1, close * 0.9, close, close * 10)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("CREATE TEMP TABLE IF NOT EXISTS s (ts timestamptz, open float8, "
                           "high float8, low float8, close float8, volume float8) "
                           "ON COMMIT DELETE ROWS")
        await conn.copy_to_table("s", source=io.BytesIO(data), format="binary")
        if invalidate:
            await invalidate_blocks(conn, exchange=venue, symbol="SYN/USD", timeframe="1m",
                                    first_ms=int(ts.min()), last_ms=int(ts.max()),
                                    timeframe_ms=M, table="market_data")
        await conn.execute(
            "INSERT INTO market_data (exchange, symbol, timeframe, ts, open, high, low, close, "
            f"volume) SELECT '{venue}', 'SYN/USD', '1m', ts, open, high, low, close, volume "
            "FROM s ON CONFLICT (exchange, symbol, timeframe, ts) DO UPDATE "
            "SET open = EXCLUDED.open, close = EXCLUDED.close, volume = EXCLUDED.volume")


async def expected(pool: Any) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """The grid straight from market_data: closes and volumes [series, bar], row counts."""
    first = -(-LO // M) * M
    n = -(-(HI - first) // M)
    closes, volumes = np.full((2, n), np.nan), np.full((2, n), np.nan)
    rows = {}
    async with pool.acquire() as conn:
        for j, (venue, symbol) in enumerate(KEYS):
            c = await read_candles(conn, exchange=venue, symbol=symbol, timeframe="1m",
                                   start=datetime.fromtimestamp(LO / 1000, UTC),
                                   end=datetime.fromtimestamp(HI / 1000, UTC),
                                   table="market_data")
            closes[j, (c.open_time_ms - first) // M] = c.close
            volumes[j, (c.open_time_ms - first) // M] = c.volume
            rows[f"{venue}:{symbol}:1m"] = len(c)
    return closes, volumes, rows


async def loaded(pool: Any, memo: MarketMemo | None, **kw: Any) -> Any:
    return await load_market(pool, KEYS, timeframe="1m", timeframe_ms=M, start_ms=LO,
                             end_ms=HI, table="market_data", memo=memo, **kw)


def check(got: Any, want: tuple[np.ndarray, np.ndarray, dict[str, int]]) -> None:
    closes, volumes, rows = want
    assert got.rows == rows
    for j, s in enumerate(got.frame.series):
        np.testing.assert_array_equal(s.close, closes[j])
        np.testing.assert_array_equal(s.volume, volumes[j])
    first = -(-LO // M) * M
    np.testing.assert_array_equal(got.frame.time_ms, first + M * np.arange(len(closes[0])))


async def test_memory_blocks_cache_and_market_data_give_one_grid_and_hash(
        service_pool: Any) -> None:
    pool = await service_pool("ingestion")
    ts = T0 + M * np.arange(N, dtype=np.int64)
    await write(pool, "x", ts[np.arange(N) % 7 != 3], np.linspace(1, 2, N)[np.arange(N) % 7 != 3])
    await write(pool, "y", ts[np.arange(N) % 5 != 1], np.linspace(2, 1, N)[np.arange(N) % 5 != 1])
    want = await expected(pool)
    memo = MarketMemo()
    cold = await loaded(pool, memo)          # no blocks yet: market_data, blocks built
    check(cold, want)
    assert memo.nbytes == 0
    for _ in range(3):   # two series' builders can race for the cache's global lock
        if await pool.fetchval("SELECT count(*) FROM candle_blocks") == 10:
            break
        await loaded(pool, None)
    assert await pool.fetchval("SELECT count(*) FROM candle_blocks") == 10
    from_blocks = await loaded(pool, memo)   # from the blocks; the whole ones kept
    check(from_blocks, want)
    assert memo.nbytes >= 2 * 3 * 16 * BLOCK_SLOTS and memo.hits == 0
    warm = await loaded(pool, memo)          # whole blocks from memory, cut ones fetched
    check(warm, want)
    assert memo.hits == 2 * 3
    plain = await loaded(pool, None)
    assert cold.snapshot_hash == from_blocks.snapshot_hash == warm.snapshot_hash \
        == plain.snapshot_hash

    # A bar changed inside the range (a writer dropping its block): seen, hash changes.
    await write(pool, "x", ts[2 * BLOCK_SLOTS + 10: 2 * BLOCK_SLOTS + 11], np.array([7.5]))
    want = await expected(pool)
    assert want[0][0][2 * BLOCK_SLOTS + 10 - 777 - 1] == 7.5
    changed = await loaded(pool, memo)
    check(changed, want)
    assert changed.snapshot_hash != warm.snapshot_hash
    assert changed.snapshot_hash == (await loaded(pool, memo)).snapshot_hash

    # An unaware writer (the statement guard drops every block): nothing stale is used.
    await write(pool, "y", ts[BLOCK_SLOTS + 5: BLOCK_SLOTS + 6], np.array([0.25]),
                invalidate=False)
    assert await pool.fetchval("SELECT count(*) FROM candle_blocks") == 0
    want = await expected(pool)
    again = await loaded(pool, memo)
    check(again, want)
    rebuilt = await loaded(pool, memo)
    check(rebuilt, want)
    assert again.snapshot_hash == rebuilt.snapshot_hash != changed.snapshot_hash

    # A bar outside the range, in a block the range cuts: the rows read, and the hash,
    # are unchanged.
    await write(pool, "x", ts[100:101], np.array([3.0]))
    outside = await loaded(pool, memo)
    check(outside, want)
    assert outside.snapshot_hash == rebuilt.snapshot_hash


async def test_a_run_loads_straight_into_the_frame_the_engine_process_maps(
        service_pool: Any) -> None:
    pool = await service_pool("ingestion")
    ts = T0 + M * np.arange(N, dtype=np.int64)
    for venue in ("x", "y"):
        await write(pool, venue, ts, np.linspace(1, 2, N))
    made: list[Any] = []

    def buffers(bars: int, k: int) -> tuple[Any, Any, Any]:
        ref, *arrays = create_frame(bars, KEYS)
        made.append(ref)
        return arrays[0], arrays[1], arrays[2]

    got = await loaded(pool, MarketMemo(), buffers=buffers)
    (ref,) = made
    try:
        if SHM:
            assert ref.path.startswith("/dev/shm/")
        check(got, await expected(pool))
        child = read_frame(ref)      # what the engine process sees
        np.testing.assert_array_equal(child.time_ms, got.frame.time_ms)
        for a, b in zip(child.series, got.frame.series, strict=True):
            np.testing.assert_array_equal(a.close, b.close)
            np.testing.assert_array_equal(a.volume, b.volume)
    finally:
        discard(ref)
    assert not _exists(ref.path)


async def test_an_engine_process_keeps_its_frame_and_gets_the_key_until_a_bar_changes(
        service_pool: Any) -> None:
    from usdcarb.backtest import engine
    from usdcarb.backtest.worker import FrameNotHeld, frame_of

    pool = await service_pool("ingestion")
    ts = T0 + M * np.arange(N, dtype=np.int64)
    rng = np.random.default_rng(5)
    for venue in ("x", "y"):
        await write(pool, venue, ts, np.round(1 + rng.normal(0, 0.003, N), 5))
    memo, made, held = MarketMemo(), [], [""]

    def buffers(bars: int, k: int) -> tuple[Any, Any, Any]:
        ref, *arrays = create_frame(bars, KEYS)
        made.append(ref)
        return arrays[0], arrays[1], arrays[2]

    def load() -> Any:
        return loaded(pool, memo, buffers=buffers, held=lambda key: key == held[0])

    params = {"crossExchangeSpread": {"symbol": "SYN/USD", "venueA": "xa", "venueB": "ya",
                                      "entryBps": 20, "exitBps": 2, "quantity": 10}}
    config = engine.EngineConfig(venues=tuple(
        engine.VenueCosts(venue=v, taker_fee_bps=1.0, initial_balances={"USD": 1e4})
        for v in ("xa", "ya")), quote_asset="USD")

    def run(frame: Any) -> Any:   # venue names of two letters or more: the same arrays
        return engine.run_backtest("cross-exchange-spread", params, config, engine.MarketFrame(
            time_ms=frame.time_ms, series=tuple(
                engine.Series(s.venue + "a", s.symbol, s.close, s.volume)
                for s in frame.series)))

    refs: list[Any] = []
    try:
        first = await load()   # the engine process holds nothing: placed, sent as a file
        assert first.placed and len(made) == 1
        refs.append(dataclasses.replace(made[0], key=first.snapshot_hash))
        out1 = run(frame_of(refs[0], keep=True))
        assert len(out1.trades) > 0
        held[0] = first.snapshot_hash
        again = await load()   # the same bars: only checked and hashed, nothing placed
        assert not again.placed and len(made) == 1
        assert again.snapshot_hash == first.snapshot_hash and again.rows == first.rows
        refs.append(held_frame(len(again.frame), KEYS, again.snapshot_hash))
        kept = frame_of(refs[1], keep=True)
        out2 = run(kept)
        np.testing.assert_array_equal(out2.equity, out1.equity)
        check(Loaded(frame=kept, snapshot_hash="", rows=first.rows), await expected(pool))
        # a process that lost it (restarted) is sent the frame after all, in the same file
        with pytest.raises(FrameNotHeld):
            frame_of(dataclasses.replace(refs[1], key="another"), keep=True)
        _, *arrays = create_frame(len(again.frame), KEYS, held=refs[1])
        assert again.place is not None
        await again.place(lambda bars, k: (arrays[0], arrays[1], arrays[2]))
        check(Loaded(frame=read_frame(dataclasses.replace(refs[1], held=False)),
                     snapshot_hash="", rows=first.rows), await expected(pool))
        # a changed bar: another hash, placed and sent again
        await write(pool, "y", ts[2 * BLOCK_SLOTS + 7: 2 * BLOCK_SLOTS + 8], np.array([1.5]))
        changed = await load()
        assert changed.placed and len(made) == 2
        assert changed.snapshot_hash != first.snapshot_hash
        check(changed, await expected(pool))
    finally:
        for ref in refs + made:
            discard(ref)


def test_the_memo_keeps_to_its_budget_dropping_the_least_recently_used() -> None:
    from usdcarb.backtest.marketmemo import GridBlock

    def block(version: str) -> GridBlock:
        return GridBlock(version=version, rows=1, digest=b"", close=np.zeros(1000),
                         volume=np.zeros(1000))

    size = block("0").nbytes
    memo = MarketMemo(max_bytes=3 * size)
    for i in range(3):
        memo.put(("s", str(i)), block("1"))
    assert memo.get(("s", "0"), "1") is not None    # 0 is now the most recent
    memo.put(("s", "3"), block("1"))
    assert memo.get(("s", "1"), "1") is None         # the least recently used went
    assert memo.get(("s", "0"), "1") is not None and memo.get(("s", "3"), "1") is not None
    assert memo.get(("s", "0"), "2") is None         # another version is not this block
    assert memo.nbytes == 3 * size
