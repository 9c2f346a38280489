"""Shared inputs of the paper-run tests: a spread version, its config, synthetic bars."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from usdcarb.v1 import backtest_pb2 as pb

KIND = "cross-exchange-spread"
PARAMS: dict[str, Any] = {"symbol": "USDC/USDT", "venueA": "binance", "venueB": "kraken",
                          "entryBps": 15, "exitBps": 3, "quantity": 10000}
KEYS = [("binance", "USDC/USDT"), ("kraken", "USDC/USDT")]
START = datetime(2023, 3, 10, tzinfo=UTC)
START_MS = int(START.timestamp() * 1000)
BAR_MS = 60_000


def config(start: datetime = START) -> pb.BacktestConfig:
    cfg = pb.BacktestConfig(timeframe="1m", quote_asset="USDT",
                            fill_policy=pb.FILL_POLICY_NEXT_BAR)
    cfg.range.start_time.FromDatetime(start)
    for venue, fee in (("binance", 10.0), ("kraken", 7.5)):
        cfg.venues.append(pb.VenueConfig(
            venue=venue, taker_fee_bps=fee, slippage=pb.SlippageModel(fixed_bps=1.0),
            initial_balances=[pb.AssetAmount(asset="USDC", amount=1e6),
                              pb.AssetAmount(asset="USDT", amount=1e6)]))
    return cfg


def bars(n: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` 1m bars of USDC/USDT on both venues whose spread crosses ±15 bps often."""
    rng = np.random.default_rng(seed)
    t = START_MS + np.arange(n, dtype=np.int64) * BAR_MS
    a = 1.0 + np.cumsum(rng.normal(0.0, 2e-4, n))
    spread = 25e-4 * np.sin(np.arange(n) / 9.0) + rng.normal(0.0, 4e-4, n)
    b = a * (1.0 + spread)
    closes = np.round(np.stack([a, b]), 6)
    volumes = np.round(rng.uniform(1e4, 1e6, (2, n)), 2)
    return t, closes, volumes
