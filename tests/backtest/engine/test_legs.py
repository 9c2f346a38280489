"""Independent legs and maker orders, by hand (legs.py's rules)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from usdcarb.backtest.engine import (
    EngineConfig,
    Execution,
    MarketFrame,
    Series,
    VenueCosts,
    run_backtest,
)

pytestmark = pytest.mark.unit

SPREAD = {"symbol": "USDC/USDT", "venueA": "binance", "venueB": "kraken", "entryBps": 15,
          "exitBps": 3, "quantity": 10_000}
Q = 10_000.0


def _frame(a: list[float], b: list[float], vol_a: float = 1e9) -> MarketFrame:
    n = len(a)
    return MarketFrame(np.arange(n, dtype=np.int64) * 60_000, (
        Series("binance", "USDC/USDT", np.array(a), np.full(n, vol_a)),
        Series("kraken", "USDC/USDT", np.array(b), np.full(n, 1e9))))


def _config(execution: Execution, a: dict[str, Any] | None = None,
            b: dict[str, Any] | None = None) -> EngineConfig:
    return EngineConfig(execution=execution, venues=(
        VenueCosts(venue="binance", initial_balances={"USDT": 1e6}, **(a or {})),
        VenueCosts(venue="kraken", **(b or {}))))


def _fills(out: Any) -> list[tuple[int, str, int, float, float]]:
    t = out.trades
    return [(int(t.bar[j]), str(t.venue[j]), int(t.side[j]), float(t.quantity[j]),
             float(t.price[j])) for j in range(len(t))]


def test_latency_puts_the_second_leg_on_a_later_worse_bar_and_counts_the_legging_loss() -> None:
    # Signal on bar 1 (B is 20 bps above A): buy A, sell B. Fill next bar; Kraken's 120 s
    # latency puts leg B two bars later, on bar 4, where B has fallen to 1.001.
    a = [1.0] * 9
    b = [1.0, 1.002, 1.002, 1.0015, 1.001, 1.0, 1.0, 1.0, 1.0]
    out = run_backtest("cross-exchange-spread", SPREAD, _config(
        Execution(leg_mode="independent"), b={"latency_ms": 120_000}), _frame(a, b))
    # exit signal on bar 5 (spread 0): A fills on bar 6, B on bar 8
    assert _fills(out) == [(2, "binance", 1, Q, 1.0), (4, "kraken", -1, Q, 1.001),
                           (6, "binance", -1, Q, 1.0), (8, "kraken", 1, Q, 1.0)]
    m = out.metrics
    att = m["attribution"]
    # by hand: the order's reference bar is 2 (its first fill), where B closed at 1.002;
    # selling B at 1.001 instead loses 10,000 x (1.002 - 1.001) = 10 USDT
    assert att["legging"] == pytest.approx(-Q * (1.002 - 1.001), rel=1e-12)
    assert att["legging"] == pytest.approx(-10.0, rel=1e-9)
    # the spread captured at reference prices is 20 USDT; 10 of it was lost to legging
    assert att["trading_pnl"] == pytest.approx(20.0, rel=1e-9)
    assert m["total_pnl"] == pytest.approx(10.0, rel=1e-9)
    assert m["legged_trades"] == 2          # the exit's legs also landed on two bars
    assert m["round_trips"] == 1 and m["partial_fills"] == 0
    # all-or-nothing, the order waits for the slowest venue and fills whole on bar 4
    whole = run_backtest("cross-exchange-spread", SPREAD, _config(
        Execution(), b={"latency_ms": 120_000}), _frame(a, b))
    assert [f[0] for f in _fills(whole)] == [4, 4, 8, 8]
    assert whole.metrics["attribution"]["legging"] == 0.0
    assert whole.metrics["legged_trades"] == 0
    assert whole.execution_model == "all-or-nothing legs, taker fills, next bar"


A_CAP = [1.0, 1.0, 1.0, 0.999, 0.998, 0.997, 0.997, 0.997, 0.997, 0.997]
B_CAP = [1.0, 1.002, 1.002, 1.0025, 1.003, 1.003, 1.003, 1.003, 1.003, 1.003]


def _capped(policy: str, retry_bars: int = 1) -> Any:
    # Binance trades 5,000 a bar and the cap is half of it: 2,500 per bar for leg A.
    return run_backtest("cross-exchange-spread", SPREAD | {"exitBps": 1}, _config(
        Execution(leg_mode="independent", one_leg=policy,  # type: ignore[arg-type]
                  retry_bars=retry_bars),
        a={"participation_cap": 0.5}), _frame(A_CAP, B_CAP, vol_a=5_000.0))


def test_hedge_fills_the_missing_quantity_at_the_next_bar_without_the_cap() -> None:
    out = _capped("hedge")
    assert _fills(out)[:3] == [(2, "binance", 1, 2_500.0, 1.0), (2, "kraken", -1, Q, 1.002),
                               (3, "binance", 1, 7_500.0, 0.999)]
    m = out.metrics
    # bought 7,500 at 0.999 instead of the reference 1.0: a gain of 7.5
    assert m["attribution"]["legging"] == pytest.approx(7_500 * (1.0 - 0.999), rel=1e-12)
    assert m["partial_fills"] == 1 and m["legged_trades"] == 1


def test_unwind_reverses_the_other_legs_excess_at_the_next_bar() -> None:
    out = _capped("unwind")
    fills = _fills(out)
    assert fills[:3] == [(2, "binance", 1, 2_500.0, 1.0), (2, "kraken", -1, Q, 1.002),
                         (3, "kraken", 1, 7_500.0, 1.0025)]
    m = out.metrics
    # bought back 7,500 of B at 1.0025 after selling at 1.002: a loss of 3.75
    assert m["attribution"]["legging"] == pytest.approx(7_500 * (1.002 - 1.0025), rel=1e-12)
    # the order ends holding 2,500 a leg (the spread never closes: no exit)
    assert len(fills) == 3 and m["legged_trades"] == 1 and m["round_trips"] == 0
    assert out.exposure[-1] == pytest.approx(2 * 2_500 * 1.0 / out.equity[-1], rel=1e-2)


def test_retry_tries_for_n_bars_under_the_cap_then_unwinds_the_rest() -> None:
    out = _capped("retry", retry_bars=2)
    fills = _fills(out)
    assert fills[:5] == [(2, "binance", 1, 2_500.0, 1.0), (2, "kraken", -1, Q, 1.002),
                         (3, "binance", 1, 2_500.0, 0.999), (4, "binance", 1, 2_500.0, 0.998),
                         (5, "kraken", 1, 2_500.0, 1.003)]
    legging = (2_500 * (1.0 - 0.999) + 2_500 * (1.0 - 0.998) + 2_500 * (1.002 - 1.003))
    assert out.metrics["attribution"]["legging"] == pytest.approx(legging, rel=1e-9)
    assert out.metrics["partial_fills"] == 3


def test_maker_orders_fill_at_the_limit_when_a_later_bar_trades_through() -> None:
    # Signal on bar 1 at A 1.0 and B 1.002: a buy limit on A at 1.0 and a sell limit on
    # B at 1.002. Bar 2 trades through neither; bar 3 through both.
    a = [1.0, 1.0, 1.0, 0.9995, 1.0, 1.0, 1.0]
    b = [1.0, 1.002, 1.002, 1.0025, 1.0, 1.0, 1.0]
    costs = {"maker_fee_bps": 1.0, "taker_fee_bps": 10.0, "slippage_bps": 5.0}
    out = run_backtest("cross-exchange-spread", SPREAD, _config(
        Execution(order_type="maker", maker_timeout_bars=1), a=costs, b=costs),
        _frame(a, b))
    fills = _fills(out)
    assert fills[:2] == [(3, "binance", 1, Q, 1.0), (3, "kraken", -1, Q, 1.002)]
    t = out.trades
    assert float(t.fee[0]) == Q * 1.0 * (1.0 / 1e4) and float(t.slippage[0]) == 0.0
    # the exit (signal on bar 4: sell A above 1.0, buy B below 1.0) is never traded
    # through on bars 5 and 6: 2 of 4 posted legs filled
    m = out.metrics
    assert len(fills) == 2 and m["fill_ratio"] == 0.5
    assert m["slippage_paid"] == 0.0 and m["fees_paid"] == pytest.approx(
        Q * 1.0 * 1e-4 + Q * 1.002 * 1e-4, rel=1e-12)
    assert out.execution_model.startswith("all-or-nothing legs, maker orders")


def test_a_maker_order_that_is_never_traded_through_expires_unfilled() -> None:
    a = [1.0, 1.0, 1.001, 1.001, 1.001]
    b = [1.0, 1.002, 1.001, 1.001, 1.001]
    out = run_backtest("cross-exchange-spread", SPREAD, _config(
        Execution(order_type="maker", maker_timeout_bars=2)), _frame(a, b))
    assert len(out.trades) == 0
    assert out.metrics["fill_ratio"] == 0.0
    assert out.metrics["attribution"]["trading_pnl"] == 0.0


def test_triangular_loops_refuse_other_execution_models() -> None:
    from usdcarb.backtest.engine.warm import KINDS, _market

    kind, params, _ = KINDS[2]
    venues = (VenueCosts(venue="vena", initial_balances={"USDT": 1e6}),)
    with pytest.raises(ValueError, match="all-or-nothing taker execution"):
        run_backtest(kind, params, EngineConfig(
            venues=venues, execution=Execution(leg_mode="independent")), _market())


def test_cost_axes_sweep_fees_slippage_and_latency_like_single_runs() -> None:
    from usdcarb.backtest.engine import run_sweep

    n = 400
    rng = np.random.default_rng(9)
    a = 1.0 + rng.normal(0, 4e-4, n)
    b = a * (1.0 + rng.normal(0, 1.5e-3, n))
    fr = _frame(list(a), list(b))
    costs = {"taker_fee_bps": 2.0, "slippage_bps": 1.0, "maker_fee_bps": 0.5}
    cfg = _config(Execution(leg_mode="independent"), a=costs | {"latency_ms": 60_000},
                  b=costs)
    axes = {"entryBps": [8.0, 12.0], "execution.feeMultiplier": [1.0, 2.0],
            "execution.slippageMultiplier": [1.0, 3.0], "execution.extraLatencyBars": [0, 2]}
    points = run_sweep("cross-exchange-spread", SPREAD, axes, cfg, fr)
    assert len(points) == 16
    for point in points:
        pp = point.params
        single = run_backtest(
            "cross-exchange-spread", SPREAD | {"entryBps": pp["entryBps"]}, cfg, fr,
            costs=(pp["execution.feeMultiplier"], pp["execution.slippageMultiplier"],
                   int(pp["execution.extraLatencyBars"])))
        assert {k: v for k, v in point.metrics.items() if k != "return_moments"} \
                == single.metrics, pp
    by = {tuple(p.params.values()): p.metrics for p in points}
    assert by[(8.0, 2.0, 1.0, 0.0)]["fees_paid"] > by[(8.0, 1.0, 1.0, 0.0)]["fees_paid"] > 0
    # twice the fee rate on the same fills: exactly twice the fees when the fills agree
    assert by[(8.0, 1.0, 3.0, 0.0)]["slippage_paid"] == pytest.approx(
        3 * by[(8.0, 1.0, 1.0, 0.0)]["slippage_paid"], rel=1e-9)
    with pytest.raises(ValueError, match="whole bars"):
        run_sweep("cross-exchange-spread", SPREAD, {"execution.extraLatencyBars": [0.5]},
                  cfg, fr)


def test_the_robustness_panel_reruns_with_more_latency_and_higher_costs() -> None:
    from usdcarb.backtest.engine import Robustness

    n = 400
    rng = np.random.default_rng(4)
    a = 1.0 + rng.normal(0, 4e-4, n)
    b = a * (1.0 + rng.normal(0, 1.5e-3, n))
    fr = _frame(list(a), list(b))
    costs = {"taker_fee_bps": 2.0, "slippage_bps": 1.0}
    base = _config(Execution(), a=costs, b=costs)
    cfg = EngineConfig(venues=base.venues, robustness=Robustness())
    out = run_backtest("cross-exchange-spread", SPREAD | {"entryBps": 8}, cfg, fr)
    labels = [(label, x, m) for label, x, m, _ in out.robustness]
    assert labels == [("latency +1 bar", 1, 1.0), ("latency +2 bars", 2, 1.0),
                      ("costs x1.5", 0, 1.5), ("costs x2", 0, 2.0)]
    plain = run_backtest("cross-exchange-spread", SPREAD | {"entryBps": 8}, base, fr)
    assert plain.robustness == () and plain.metrics == out.metrics
    later = run_backtest("cross-exchange-spread", SPREAD | {"entryBps": 8}, EngineConfig(
        venues=tuple(VenueCosts(venue=v.venue, taker_fee_bps=2.0, slippage_bps=1.0,
                                latency_bars=1, initial_balances=v.initial_balances)
                     for v in base.venues)), fr)
    assert out.robustness[0][3] == later.metrics
    assert out.robustness[3][3]["fees_paid"] > out.metrics["fees_paid"]
