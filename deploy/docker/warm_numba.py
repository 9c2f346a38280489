"""Compile the backtest engine's numba kernels into NUMBA_CACHE_DIR (image build step).

Runs one small backtest and one sweep per strategy kind on a synthetic two-venue frame,
which compiles every cached kernel the service calls; fails if nothing was cached.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from usdcarb.backtest.engine import (
    EngineConfig,
    MarketFrame,
    Series,
    VenueCosts,
    run_backtest,
    run_sweep,
)

SPREAD = {"symbol": "USDC/USDT", "venueA": "binance", "venueB": "kraken", "entryBps": 15,
          "exitBps": 3, "quantity": 1000}


def main() -> int:
    cache = Path(os.environ["NUMBA_CACHE_DIR"])
    n = 64
    t = np.arange(n, dtype=np.int64) * 60_000
    a = 1.0 + 0.002 * np.sin(np.arange(n) / 3.0)
    frame = MarketFrame(t, (Series("binance", "USDC/USDT", a, np.full(n, 1e9)),
                            Series("kraken", "USDC/USDT", np.ones(n), np.full(n, 1e9))))
    config = EngineConfig(venues=(
        VenueCosts(venue="binance", taker_fee_bps=10.0, initial_balances={"USDT": 100_000.0}),
        VenueCosts(venue="kraken", taker_fee_bps=5.0, initial_balances={"USDT": 100_000.0})))
    run_backtest("cross-exchange-spread", SPREAD, config, frame)
    run_sweep("cross-exchange-spread", SPREAD, {"entryBps": [10.0, 15.0]}, config, frame)
    cached = list(cache.rglob("*.nbi"))
    if not cached:
        sys.stderr.write(f"expected numba cache index files in {cache}, got none\n")
        return 1
    sys.stdout.write(f"numba cache: {len(cached)} kernels in {cache}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
