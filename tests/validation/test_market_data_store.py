"""The validation service's reads of the market data hypertable: which other venues and
same-base symbols store a market (asked per validated batch, answered by a loose index
scan) equal what SELECT DISTINCT over the whole table says."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from usdcarb.validation.model import Series
from usdcarb.validation.store import MarketData

from .conftest import Env

pytestmark = pytest.mark.integration

T0 = 1_677_628_800_000  # 2023-03-01
SERIES = [("binance", "BTC/USDC", "1m"), ("binance", "BTC/USDT", "1m"),
          ("binance", "BTCDOM/USDT", "1m"), ("binance", "BTC/EUR", "5m"),
          ("binance", "ETH/BTC", "1m"), ("bybit", "BTC/USDC", "1m"),
          ("coinbase", "BTC/USD", "1m"), ("coinbase", "BTC/USDC", "5m"),
          ("okx", "BTC/USDC", "1m"), ("okx", "BTC/USDT", "1m"), ("a-venue", "BTC/USDC", "1m")]


def bars(n: int, tf_ms: int, start: int) -> pd.DataFrame:
    ts = start + tf_ms * np.arange(n, dtype=np.int64)
    one = np.ones(n)
    return pd.DataFrame({"open_time_ms": ts, "open": one, "high": one, "low": one,
                         "close": one, "volume": one})


async def test_venues_and_same_base_match_a_full_distinct_scan(env: Env) -> None:
    for i, (ex, sym, tf) in enumerate(SERIES):
        # Series in different chunks (7-day chunks), so the scan crosses chunk indexes.
        await env.load(ex, sym, bars(5, 60_000 if tf == "1m" else 300_000,
                                     T0 + i * 3 * 86_400_000), timeframe=tf)
    market = MarketData(env.market, env.table)
    for ex, sym, tf in [*SERIES, ("kraken", "BTC/USDC", "1m"), ("binance", "SOL/USDC", "1m")]:
        expected = [r[0] for r in await env.market.fetch(
            f"SELECT DISTINCT exchange FROM {env.table} WHERE symbol = $1 AND timeframe = $2 "
            "AND exchange <> $3 ORDER BY exchange", sym, tf, ex)]
        assert await market.venues(sym, tf, ex) == expected, (ex, sym, tf)
        base = sym.split("/")[0]
        expected = [r[0] for r in await env.market.fetch(
            f"SELECT DISTINCT symbol FROM {env.table} WHERE exchange = $1 AND timeframe = $2 "
            "AND symbol <> $3 AND split_part(symbol, '/', 1) = $4 ORDER BY symbol",
            ex, tf, sym, base)]
        assert await market.same_base(Series(ex, sym, tf)) == expected, (ex, sym, tf)
    assert await market.venues("BTC/USDC", "1m", "binance") == ["a-venue", "bybit", "okx"]
    assert await market.same_base(Series("binance", "BTC/USDC", "1m")) == ["BTC/USDT"]
