"""Compile (or load from the on-disk cache) every kernel specialisation the service calls.

The kernels take one type whatever the strategy kind, fill mode or number of series
(closes and volumes are one float64 [series, bar] array, C-contiguous and writable;
``layout.rows``), so a tiny run of each kind and fill, one sweep and one walk-forward
reach every specialisation: ``legs.simulate`` (``run_range``, or ``run_range_legs`` for
the other execution models) with trade logging (single runs),
``_sweep_kernel`` (parallel, sweeps and walk-forward in-sample windows), ``finalize``
and the helpers. ``python -m usdcarb.backtest.engine.warm`` does it at setup and in the
container build, the single-run kernels here and the sweep kernels in a second process at
the same time (they share no kernel, numba caches each function in files of its own and
writes them by rename, and an empty cache takes minutes of one core's time: two cores
halve it); each engine process does it again at start, a load from the cache.
"""

from __future__ import annotations

import argparse
import os
import subprocess
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


def warm_up(part: Literal["all", "single", "sweep"] = "all") -> str:
    """Run every kind and fill once (``single``), a sweep and a walk-forward (``sweep``), or
    both; return the engine version."""
    market = _market()
    balances = {"USDC": 1e6, "USDT": 1e6, "BTC": 10.0}
    venues = tuple(VenueCosts(venue=v, taker_fee_bps=1.0, initial_balances=balances)
                   for v in ("vena", "venb"))
    if part in ("all", "single"):
        _single(market, venues)
    if part in ("all", "sweep"):
        _sweeps(market, venues)
    return ENGINE_VERSION


def _single(market: MarketFrame, venues: tuple[VenueCosts, ...]) -> None:
    for fill in FILLS:
        config = EngineConfig(venues=venues, fill=fill)
        for kind, params, _axis in KINDS:
            run_backtest(kind, params, config, market)
    for kind, params, _axis in KINDS[:2]:     # independent legs and maker orders (legs.py)
        for execution in (Execution(leg_mode="independent"), Execution(order_type="maker")):
            run_backtest(kind, params, EngineConfig(venues=venues, execution=execution),
                         market)


def _sweeps(market: MarketFrame, venues: tuple[VenueCosts, ...]) -> None:
    config = EngineConfig(venues=venues)
    for kind, params, axis in KINDS:
        run_sweep(kind, params, {axis: [5.0, 10.0]}, config, market)
    kind, params, axis = _SPREAD
    run_walk_forward(kind, params, {axis: [5.0, 10.0]}, config, market, in_sample_bars=32,
                     out_of_sample_bars=16, step_bars=16)


def main(argv: list[str] | None = None) -> int:
    """Warm the cache; ``--part`` warms one half (what the other process does)."""
    from ._cache import CACHE_DIR

    parser = argparse.ArgumentParser(prog="python -m usdcarb.backtest.engine.warm",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("all", "single", "sweep"), default=None,
                        help="one half only (default: both, the sweeps in a second process)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.part is not None:
        version = warm_up(args.part)
    else:
        me = [sys.executable, "-m", "usdcarb.backtest.engine.warm", "--part"]
        env = {**os.environ, "NUMBA_CACHE_DIR": CACHE_DIR}
        sweeps = subprocess.Popen([*me, "sweep"], env=env)
        try:
            version = warm_up("single")
        finally:
            code = sweeps.wait()
        # A fresh process loads every kernel back, and compiles any the two halves both
        # wrote (one function's index saved by both at once keeps one of them).
        code = code or subprocess.run([*me, "all"], env=env, check=False).returncode
        if code != 0:
            sys.stderr.write(f"the engine's warm-up failed (exit {code})\n")
            return code
    sys.stderr.write(f"engine {version} kernels ({args.part or 'all'}) ready in "
                     f"{time.perf_counter() - started:.1f} s (cache {CACHE_DIR})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
