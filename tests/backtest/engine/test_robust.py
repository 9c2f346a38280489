"""Deflated Sharpe, out-of-sample decay and purged, embargoed k-fold (robust.py)."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from usdcarb.backtest.engine import (
    EngineConfig,
    MarketFrame,
    Series,
    SweepPoint,
    VenueCosts,
    run_backtest,
    run_sweep,
)
from usdcarb.backtest.engine.robust import (
    blocks,
    deflated_sharpe,
    expected_max_sharpe,
    out_of_sample,
    probabilistic_sharpe,
    return_moments,
    run_cross_validation,
    train_windows,
)

pytestmark = pytest.mark.unit

SPREAD = {"symbol": "USDC/USDT", "venueA": "binance", "venueB": "kraken", "entryBps": 10,
          "exitBps": 2, "quantity": 10_000}


def test_deflated_sharpe_reproduces_the_papers_numerical_example() -> None:
    """Bailey & López de Prado (2014), "A numerical example": 100 trials whose annualised
    Sharpe ratios have variance 1/2, the best 2.5 annualised over 5 years of daily
    returns (T = 1250) with skewness -3 and kurtosis 10: SR0 ~ 0.1132 (daily) and a
    deflated Sharpe ratio of 0.9004."""
    days = 250.0
    sr0 = expected_max_sharpe(100, 0.5 / days)
    # the formula by hand: sqrt(V)·((1 - g)·Phi^-1(1 - 1/N) + g·Phi^-1(1 - 1/(N·e)))
    z1 = 2.3263478740408408                             # Phi^-1(0.99)
    z2 = NormalDist().inv_cdf(1 - 1 / (100 * math.e))  # ~ 2.68
    gamma = 0.5772156649015329
    assert sr0 == pytest.approx(math.sqrt(0.5 / days) * ((1 - gamma) * z1 + gamma * z2),
                                rel=1e-12)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    sr = 2.5 / math.sqrt(days)
    dsr = probabilistic_sharpe(sr, sr0, 1250, -3.0, 10.0)
    assert dsr == pytest.approx(0.9004, abs=5e-5)
    # by hand: Phi((SR - SR0)·sqrt(T - 1) / sqrt(1 - g3·SR + (g4 - 1)/4·SR²))
    z = (sr - sr0) * math.sqrt(1249) / math.sqrt(1 + 3 * sr + 9 / 4 * sr * sr)
    assert dsr == pytest.approx(0.5 * (1 + math.erf(z / math.sqrt(2))), rel=1e-12)


def test_deflated_sharpe_of_a_grid_uses_every_trial_and_the_best_points_moments() -> None:
    ppy = 250.0
    sharpes = [0.5, 1.0, 2.5, -0.3]
    points = [SweepPoint(params={"x": float(j)}, metrics={"sharpe": s})
              for j, s in enumerate(sharpes)]
    assert deflated_sharpe(points, ppy) is None          # the best has no moments yet
    points[2].metrics["return_moments"] = {"sharpe_per_bar": 2.5 / math.sqrt(ppy),
                                           "skewness": -3.0, "kurtosis": 10.0,
                                           "observations": 1250.0}
    got = deflated_sharpe(points, ppy)
    assert got is not None
    per_bar = [s / math.sqrt(ppy) for s in sharpes]
    assert got["trials"] == 4.0 and got["annualized_sharpe"] == 2.5
    assert got["trials_variance"] == pytest.approx(float(np.var(per_bar, ddof=1)), rel=1e-12)
    assert got["expected_max_sharpe"] == expected_max_sharpe(4, got["trials_variance"])
    assert got["deflated_sharpe"] == probabilistic_sharpe(
        2.5 / math.sqrt(ppy), got["expected_max_sharpe"], 1250.0, -3.0, 10.0)
    assert 0.0 <= got["deflated_sharpe"] <= 1.0


def test_return_moments_are_those_of_the_per_bar_returns() -> None:
    rng = np.random.default_rng(3)
    eq = 1e6 * np.cumprod(1 + rng.standard_t(4, 5000) * 1e-4)
    m = return_moments(eq, 1e6)
    r = eq / np.concatenate([[1e6], eq[:-1]]) - 1
    d = r - r.mean()
    assert m["observations"] == 5000
    assert m["sharpe_per_bar"] == pytest.approx(r.mean() / r.std(ddof=1), rel=1e-9)
    assert m["skewness"] == pytest.approx(np.mean(d ** 3) / np.mean(d ** 2) ** 1.5, rel=1e-9)
    assert m["kurtosis"] == pytest.approx(np.mean(d ** 4) / np.mean(d ** 2) ** 2, rel=1e-9)
    assert m["kurtosis"] > 3.0        # Student t tails


def _market(n: int, seed: int) -> MarketFrame:
    rng = np.random.default_rng(seed)
    a = 1.0 + rng.normal(0, 4e-4, n)
    b = a * (1.0 + rng.normal(0, 1.5e-3, n))
    return MarketFrame(np.arange(n, dtype=np.int64) * 60_000, (
        Series("binance", "USDC/USDT", a, np.full(n, 1e9)),
        Series("kraken", "USDC/USDT", b, np.full(n, 1e9))))


CFG = EngineConfig(venues=(
    VenueCosts(venue="binance", taker_fee_bps=1.0, initial_balances={"USDT": 1e6}),
    VenueCosts(venue="kraken", taker_fee_bps=1.0)))


def test_a_sweeps_best_point_carries_the_moments_of_its_own_curve() -> None:
    fr = _market(600, 1)
    points = run_sweep("cross-exchange-spread", SPREAD, {"entryBps": [5.0, 10.0, 20.0]},
                       CFG, fr)
    best = max(range(3), key=lambda j: (points[j].metrics["sharpe"], -j))
    assert [j for j, p in enumerate(points) if "return_moments" in p.metrics] == [best]
    single = run_backtest("cross-exchange-spread", SPREAD | {
        "entryBps": points[best].params["entryBps"]}, CFG, fr)
    assert points[best].metrics["return_moments"] == return_moments(
        single.equity, single.extras["initial_equity"])
    assert points[best].metrics["return_moments"]["sharpe_per_bar"] == pytest.approx(
        single.metrics["sharpe"] / math.sqrt(525_600), rel=1e-9)
    dsr = deflated_sharpe(points, 525_600)
    assert dsr is not None and dsr["trials"] == 3


def test_out_of_sample_summary_reports_the_decay() -> None:
    pairs = [({"sharpe": 2.0, "max_drawdown": 0.1}, {"sharpe": 1.0, "max_drawdown": 0.2}),
             ({"sharpe": 4.0, "max_drawdown": 0.3}, {"sharpe": 5.0, "max_drawdown": 0.1})]
    s = out_of_sample(pairs, "sharpe")
    assert s == {"objective": "sharpe", "mean_in_sample": 3.0, "mean_out_of_sample": 3.0,
                 "decay": 0.0, "folds_decayed": 1, "folds": 2}
    d = out_of_sample(pairs[:1], "max_drawdown")
    assert d["decay"] == pytest.approx(1 - 0.2 / 0.1) and d["folds_decayed"] == 1


def test_purged_embargoed_folds_leave_the_test_block_and_its_margins_out() -> None:
    assert blocks(103, 4) == [(0, 25), (25, 50), (50, 75), (75, 103)]
    assert train_windows(103, (25, 50), 5, 10) == ((0, 20), (60, 103))
    assert train_windows(103, (0, 25), 5, 10) == ((35, 103),)
    assert train_windows(103, (75, 103), 5, 10) == ((0, 70),)


def test_cross_validation_chooses_on_the_training_windows_and_tests_on_the_block() -> None:
    fr = _market(900, 2)
    axes = {"entryBps": [5.0, 10.0, 20.0]}
    folds = run_cross_validation("cross-exchange-spread", SPREAD, axes, CFG, fr, folds=3,
                                 purge_bars=20, embargo_bars=30, objective="total_pnl")
    assert [f.test for f in folds] == [(0, 300), (300, 600), (600, 900)]
    assert [f.train for f in folds] == [((330, 900),), ((0, 280), (630, 900)),
                                        ((0, 580),)]
    middle = folds[1]
    sweeps = [run_sweep("cross-exchange-spread", SPREAD, axes, CFG, fr.slice(*w))
              for w in middle.train]
    pnl = [sum(pts[j].metrics["total_pnl"] * (w[1] - w[0])
               for pts, w in zip(sweeps, middle.train, strict=True)) for j in range(3)]
    best = max(range(3), key=lambda j: (pnl[j], -j))
    assert middle.chosen_params == sweeps[0][best].params
    assert middle.train_metrics["round_trips"] == sum(
        pts[best].metrics["round_trips"] for pts in sweeps)
    test = run_backtest("cross-exchange-spread", SPREAD | {
        "entryBps": middle.chosen_params["entryBps"]}, CFG, fr.slice(300, 600))
    assert middle.test_metrics == test.metrics
    summary = out_of_sample([(f.train_metrics, f.test_metrics) for f in folds], "total_pnl")
    assert summary["folds"] == 3
    with pytest.raises(ValueError, match="2 to 20 folds"):
        run_cross_validation("cross-exchange-spread", SPREAD, axes, CFG, fr, folds=1)
