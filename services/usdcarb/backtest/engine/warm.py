"""Compile (or load from the on-disk cache) every kernel specialisation the service calls.

The kernels take one type whatever the strategy kind, fill mode or number of series
(closes and volumes are one float64 [series, bar] array, C-contiguous and writable;
``layout.rows``), so a tiny run of each kind and fill, one sweep and one walk-forward
reach every specialisation: ``legs.simulate`` (``run_range``, or ``run_range_legs`` for
the other execution models) with trade logging (single runs),
``_sweep_kernel`` (parallel, sweeps and walk-forward in-sample windows), ``finalize``
and the helpers. ``python -m usdcarb.backtest.engine.warm`` does it at setup and in the
container build; each engine process does it again at start, a load from the cache.
"""

from __future__ import annotations

import sys
import time
from typing import Literal

import numpy as np

from .model import ENGINE_VERSION, EngineConfig, Execution, MarketFrame, Series, VenueCosts
from .run import run_backtest
from .sweep import run_sweep, run_walk_forward

_SPREAD = ("cross-exchange-spread", {"symbol": "USDC/USDT", "venueA": "vena", "venueB": "venb",
                                     "entryBps": 10, "exitBps": 2, "quantity": 100},
           "entryBps")
_PEG = ("peg-reversion", {"symbol": "USDC/USDT", "venue": "vena", "entryBps": 10,
                          "exitBps": 2, "quantity": 100}, "entryBps")
_TRI = ("triangular", {"venue": "vena", "symbols": ["BTC/USDT", "BTC/USDC", "USDC/USDT"],
                       "minEdgeBps": 1, "notional": 100}, "minEdgeBps")
KINDS = (_SPREAD, _PEG, _TRI)
FILLS: tuple[Literal["next", "same"], ...] = ("next", "same")


def _market(n: int = 64) -> MarketFrame:
    t = np.arange(n, dtype=np.int64) * 60_000
    x = np.arange(n, dtype=np.float64)
    a = 1.0 + 0.002 * np.sin(x)
    b = 1.0 + 0.002 * np.cos(x)
    ones = np.ones(n)
    return MarketFrame(time_ms=t, series=(
        Series("vena", "USDC/USDT", a, ones), Series("venb", "USDC/USDT", b, ones),
        Series("vena", "BTC/USDT", 30_000.0 * b, ones),
        Series("vena", "BTC/USDC", 30_000.0 * a, ones)))


def warm_up() -> str:
    """Run every kind and fill once, a sweep and a walk-forward; return the engine version."""
    market = _market()
    balances = {"USDC": 1e6, "USDT": 1e6, "BTC": 10.0}
    venues = tuple(VenueCosts(venue=v, taker_fee_bps=1.0, initial_balances=balances)
                   for v in ("vena", "venb"))
    for fill in FILLS:
        config = EngineConfig(venues=venues, fill=fill)
        for kind, params, _axis in KINDS:
            run_backtest(kind, params, config, market)
    for kind, params, _axis in KINDS[:2]:     # independent legs and maker orders (legs.py)
        for execution in (Execution(leg_mode="independent"), Execution(order_type="maker")):
            run_backtest(kind, params, EngineConfig(venues=venues, execution=execution),
                         market)
    config = EngineConfig(venues=venues)
    for kind, params, axis in KINDS:
        run_sweep(kind, params, {axis: [5.0, 10.0]}, config, market)
    kind, params, axis = _SPREAD
    run_walk_forward(kind, params, {axis: [5.0, 10.0]}, config, market, in_sample_bars=32,
                     out_of_sample_bars=16, step_bars=16)
    return ENGINE_VERSION


def main() -> None:
    from ._cache import CACHE_DIR

    started = time.perf_counter()
    version = warm_up()
    sys.stderr.write(f"engine {version} kernels ready in "
                     f"{time.perf_counter() - started:.1f} s (cache {CACHE_DIR})\n")


if __name__ == "__main__":
    main()
