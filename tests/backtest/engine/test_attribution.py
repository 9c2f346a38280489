"""PnL attribution and the hold baseline: hand cases the random reference cases cannot pin."""

from __future__ import annotations

import numpy as np
import pytest

from usdcarb.backtest.engine import (
    EngineConfig,
    MarketFrame,
    Series,
    VenueCosts,
    run_backtest,
    run_sweep,
)
from usdcarb.backtest.engine.warm import KINDS, _market

pytestmark = pytest.mark.unit


def _inventory_config() -> EngineConfig:
    balances = {"USDC": 250_000.0, "USDT": 1e6, "BTC": 3.0}
    return EngineConfig(venues=tuple(
        VenueCosts(venue=v, taker_fee_bps=5.0, slippage_bps=1.0, initial_balances=balances)
        for v in ("vena", "venb")))


@pytest.mark.parametrize("kind", [k for k, _, _ in KINDS])
def test_a_config_that_never_trades_has_no_trading_pnl_and_no_excess(kind: str) -> None:
    market = _market(400)
    _, params, _ = next(k for k in KINDS if k[0] == kind)
    quiet = dict(params) | ({"minEdgeBps": 5_000} if kind == "triangular"
                            else {"entryBps": 5_000, "exitBps": 1})
    out = run_backtest(kind, quiet, _inventory_config(), market)
    m = out.metrics
    att = m["attribution"]
    assert len(out.trades) == 0
    # the inventory drifts, so the run's own figures are not zero ...
    assert m["total_pnl"] != 0.0 and m["sharpe"] != 0.0
    # ... but all of it is revaluation of what it held from the start
    assert att["trading_pnl"] == 0.0
    assert att["inventory_revaluation"] == att["total_pnl"] == m["total_pnl"]
    assert att["fees"] == att["slippage"] == att["transfer_costs"] == att["legging"] == 0.0
    np.testing.assert_array_equal(out.baseline_curve(), out.equity)
    for key in ("excess_pnl", "excess_return", "excess_sharpe", "excess_max_drawdown",
                "excess_volatility"):
        assert m[key] == 0.0, key
    assert out.baseline_metrics["total_pnl"] == m["total_pnl"]
    assert out.baseline_metrics["sharpe"] == m["sharpe"]


def test_excess_is_the_strategy_less_its_hold_baseline() -> None:
    market = _market(400)
    kind, params, _ = KINDS[0]
    out = run_backtest(kind, params, _inventory_config(), market)
    m = out.metrics
    assert m["round_trips"] > 0
    init = out.extras["initial_equity"]
    assert m["excess_pnl"] == out.equity[-1] - out.baseline_curve()[-1]
    assert m["excess_return"] == pytest.approx(
        (out.equity[-1] - out.baseline_curve()[-1]) / init, rel=1e-12)
    x = init + (out.equity - out.baseline_curve())
    r = np.diff(np.concatenate([[init], x])) / np.concatenate([[init], x[:-1]])
    assert m["excess_sharpe"] == pytest.approx(
        r.mean() / r.std(ddof=1) * np.sqrt(525_600), rel=1e-9)
    peak = np.maximum.accumulate(np.concatenate([[init], x]))[1:]
    assert m["excess_max_drawdown"] == pytest.approx(float(np.max(1 - x / peak)), abs=1e-15)
    att = m["attribution"]
    assert att["inventory_revaluation"] == pytest.approx(out.baseline_curve()[-1] - init, rel=1e-12)
    assert att["fees"] == -m["fees_paid"] and att["slippage"] == -m["slippage_paid"]


def test_without_inventory_the_baseline_is_flat_and_excess_is_the_run_itself() -> None:
    n = 300
    rng = np.random.default_rng(2)
    a = 1.0 + rng.normal(0, 4e-4, n)
    b = a * (1.0 + rng.normal(0, 1.5e-3, n))
    fr = MarketFrame(np.arange(n, dtype=np.int64) * 60_000,
                     (Series("vena", "USDC/USDT", a, np.ones(n)),
                      Series("venb", "USDC/USDT", b, np.ones(n))))
    cfg = EngineConfig(venues=(VenueCosts(venue="vena", taker_fee_bps=1.0,
                                          initial_balances={"USDT": 1e6}),
                               VenueCosts(venue="venb", taker_fee_bps=1.0)))
    out = run_backtest("cross-exchange-spread", KINDS[0][1] | {"venueA": "vena"}, cfg, fr)
    m = out.metrics
    assert m["round_trips"] > 0
    assert np.all(out.baseline_curve() == 1e6) and m["attribution"]["inventory_revaluation"] == 0.0
    assert m["excess_sharpe"] == m["sharpe"] and m["excess_pnl"] == m["total_pnl"]
    assert out.baseline_metrics["total_return"] == 0.0


def test_sweep_points_carry_the_single_runs_excess_and_attribution() -> None:
    market = _market(300)
    cfg = _inventory_config()
    for kind, params, axis in KINDS:
        values = [3.0, 5.0, 10.0]
        points = run_sweep(kind, params, {axis: values}, cfg, market)
        for value, point in zip(values, points, strict=True):
            single = run_backtest(kind, dict(params) | {axis: value}, cfg, market)
            assert {k: v for k, v in point.metrics.items() if k != "return_moments"} \
                == single.metrics, (kind, value)
