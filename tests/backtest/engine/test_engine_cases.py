"""Hand-computed cases: fees, slippage, volume impact, limits, transfers, fills, metrics."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from usdcarb.backtest.engine import (
    Cancelled,
    EngineConfig,
    MarketFrame,
    Series,
    Transfer,
    VenueCosts,
    pricing_symbols,
    required_series,
    run_backtest,
    run_sweep,
    run_walk_forward,
    validate_params,
)
from usdcarb.backtest.engine.kernel import F_FEES, F_GLOSS, F_GWIN, F_RTPNL, NF, NS, S_RT, S_WINS
from usdcarb.backtest.engine.metrics import NAMES, finalize, replay_curve, start_curve

pytestmark = pytest.mark.unit

SPREAD = {"symbol": "USDC/USDT", "venueA": "binance", "venueB": "kraken", "entryBps": 15,
          "exitBps": 3, "quantity": 1000}
NAN = math.nan


def _frame(a: list[float], b: list[float], vol_a: float = 1e9) -> MarketFrame:
    n = len(a)
    t = np.arange(n, dtype=np.int64) * 60_000
    return MarketFrame(t, (Series("binance", "USDC/USDT", np.array(a), np.full(n, vol_a)),
                           Series("kraken", "USDC/USDT", np.array(b), np.full(n, 1e9))))


def _config(fill: str = "next", a: dict[str, Any] | None = None,
            b: dict[str, Any] | None = None, **kw: Any) -> EngineConfig:
    va = {"taker_fee_bps": 10.0, "slippage_bps": 2.0,
          "initial_balances": {"USDT": 100_000.0}} | (a or {})
    vb = {"taker_fee_bps": 5.0} | (b or {})
    return EngineConfig(venues=(VenueCosts(venue="binance", **va), VenueCosts(venue="kraken", **vb),
                                VenueCosts(venue="okx", initial_balances={"USDT": 10_000.0},
                                           min_balances={"USDT": 0.0})),
                        fill=fill, **kw)  # type: ignore[arg-type]


A6 = [1.0] * 6
B6 = [1.0, 1.002, 1.001, 1.0, 1.0, 1.0]


def test_next_bar_fill_charges_fees_and_slippage_per_leg() -> None:
    out = run_backtest("cross-exchange-spread", SPREAD, _config(), _frame(A6, B6))
    tr = out.trades
    assert list(tr.bar) == [2, 2, 4, 4]          # signal on 1 fills on 2; exit signal 3 → 4
    assert list(tr.signal_bar) == [1, 1, 3, 3]
    assert list(tr.side) == [1, -1, -1, 1]
    assert list(tr.venue) == ["binance", "kraken", "binance", "kraken"]
    assert tr.price[0] == pytest.approx(1.0002)    # buy A, 2 bp adverse
    assert tr.price[1] == pytest.approx(1.001)     # sell B at its close, no slippage
    assert tr.price[2] == pytest.approx(0.9998)
    assert tr.fee[0] == pytest.approx(1000.2 * 0.001)
    assert tr.fee[1] == pytest.approx(1001.0 * 0.0005)
    assert tr.slippage[0] == pytest.approx(0.2)
    assert tr.slippage[1] == 0.0
    pnl = -(1000.2 + 1.0002) + (1001.0 - 0.5005) + (999.8 - 0.9998) - (1000.0 + 0.5)
    m = out.metrics
    assert m["round_trips"] == 1
    assert m["expectancy"] == pytest.approx(pnl)
    assert m["total_pnl"] == pytest.approx(pnl)
    assert m["fees_paid"] == pytest.approx(1.0002 + 0.5005 + 0.9998 + 0.5)
    assert m["slippage_paid"] == pytest.approx(0.4)
    assert m["theoretical_edge_bps"] == pytest.approx(20.0)  # 20 bp at entry, 0 at exit
    assert m["realized_edge_bps"] == pytest.approx(pnl / 1000.2 * 1e4)
    assert m["capture_rate"] == pytest.approx(pnl / 1000.2 * 1e4 / 20.0)
    assert m["win_rate"] == 0.0
    assert m["exposure"] == pytest.approx(2 / 6)   # held after bars 2 and 3
    assert out.optimistic_fills is False


def test_a_missing_bar_moves_the_fill_to_the_next_bar_with_both_prices() -> None:
    b = [1.0, 1.002, NAN, 1.0, 1.0, 1.0]
    out = run_backtest("cross-exchange-spread", SPREAD, _config(), _frame(A6, b))
    # Bar 2 has no kraken bar: no fill on a stale price; bar 3 fills, then signals the exit.
    assert list(out.trades.bar) == [3, 3, 4, 4]
    assert out.trades.price[1] == pytest.approx(1.0)


def test_latency_delays_the_fill_by_that_many_bars() -> None:
    out = run_backtest("cross-exchange-spread", SPREAD, _config(b={"latency_bars": 2}),
                       _frame(A6 + [1.0] * 3, B6 + [1.0] * 3))
    assert list(out.trades.bar[:2]) == [4, 4]     # signal 1, next bar + 2 of latency
    assert list(out.trades.signal_bar[:2]) == [1, 1]


def test_same_bar_fills_are_labelled_optimistic() -> None:
    out = run_backtest("cross-exchange-spread", SPREAD, _config(fill="same"), _frame(A6, B6))
    assert list(out.trades.bar) == [1, 1, 3, 3]
    assert out.trades.price[1] == pytest.approx(1.002)
    assert out.optimistic_fills is True


def test_volume_impact_adds_bps_per_percent_of_bar_volume() -> None:
    cfg = _config(a={"volume_impact_bps": 3.0})
    out = run_backtest("cross-exchange-spread", SPREAD, cfg, _frame(A6, B6, vol_a=100_000.0))
    # 1000 of 100k volume = 1% → 3 bp on top of the fixed 2 bp.
    assert out.trades.price[0] == pytest.approx(1.0005)
    assert out.trades.slippage[0] == pytest.approx(0.5)


@pytest.mark.parametrize("vol_a", [0.0, NAN, 1e-6, 500.0, 1000.0])
def test_volume_impact_is_capped_at_the_whole_bar_and_empty_bars_trade(vol_a: float) -> None:
    cfg = _config(a={"volume_impact_bps": 3.0})
    out = run_backtest("cross-exchange-spread", SPREAD, cfg, _frame(A6, B6, vol_a=vol_a))
    # No volume, or 1000 of ≤ 1000 volume: 100% participation → 300 bp on top of 2 bp,
    # and the bars still trade (signal on 1 fills on 2, as with volume).
    assert list(out.trades.bar) == [2, 2, 4, 4]
    assert out.trades.price[0] == pytest.approx(1.0302, rel=0, abs=1e-12)
    assert out.trades.slippage[0] == pytest.approx(30.2, rel=0, abs=1e-9)
    assert out.trades.price[2] == pytest.approx(1.0 - 0.0302, rel=0, abs=1e-12)  # unwind sell
    # 1000 of 4000 volume = 25% → 75 bp + 2 bp, below the cap.
    out = run_backtest("cross-exchange-spread", SPREAD, cfg, _frame(A6, B6, vol_a=4000.0))
    assert out.trades.price[0] == pytest.approx(1.0077, rel=0, abs=1e-12)


def test_a_leg_without_balance_is_not_filled_and_no_half_position_opens() -> None:
    # B may not sell USDC it does not hold: the whole open is rejected, A's leg too.
    cfg = _config(b={"min_balances": {"USDC": 0.0}})
    out = run_backtest("cross-exchange-spread", SPREAD, cfg, _frame(A6, B6))
    assert len(out.trades) == 0
    assert out.metrics["rejected_fills"] == 1
    assert out.metrics["round_trips"] == 0
    np.testing.assert_array_equal(out.equity, np.full(6, 100_000.0))  # okx is not traded
    # A's limit: 500 USDT cannot pay for 1000 USDC.
    cfg = _config(a={"initial_balances": {"USDT": 500.0}, "min_balances": {"USDT": 0.0}})
    out = run_backtest("cross-exchange-spread", SPREAD, cfg, _frame(A6, B6))
    assert len(out.trades) == 0
    assert out.metrics["rejected_fills"] == 1


def test_transfers_rebalance_with_fee_and_delay() -> None:
    a = [1.0] * 8
    b = [1.0, 1.002, 1.002, 1.002, 1.002, 1.0, 1.0, 1.0]
    venue_a = {"initial_balances": {"USDT": 500.0}, "min_balances": {"USDT": 0.0}}
    route = Transfer(from_venue="okx", to_venue="binance", asset="USDT", fee=2.0, delay_bars=2)
    out = run_backtest("cross-exchange-spread", SPREAD,
                       _config(a=venue_a, transfers=(route,)), _frame(a, b))
    # Bar 2: A is 501.2002 short; okx's surplus 9998 → moves max(need, half) = 4999,
    # arriving on bar 4. Bars 2 and 3 are rejected; bar 4 fills.
    assert out.metrics["rejected_fills"] == 2
    assert out.extras["transfers"] == 1
    assert out.extras["transfer_fees"] == 2.0
    assert out.trades.bar[0] == 4
    assert out.equity[2] == pytest.approx(10_500.0 - 2.0)
    assert out.metrics["inventory_utilization"]["okx"] == pytest.approx(5001.0 / 10_000.0)
    # With no delay the funds arrive at once and the first attempt fills.
    route0 = Transfer(from_venue="okx", to_venue="binance", asset="USDT", fee=2.0)
    out = run_backtest("cross-exchange-spread", SPREAD,
                       _config(a=venue_a, transfers=(route0,)), _frame(a, b))
    assert out.metrics["rejected_fills"] == 0
    assert out.trades.bar[0] == 2


def test_balance_limits_fill_alike_until_one_binds_then_reject_or_rebalance() -> None:
    # Two round trips (signals on 1, 3, 5, 7 fill on 2, 4, 6, 8). Limits that do not
    # bind change nothing (run_range's written-out fill checks them as _short does);
    # one that binds on the second open only rejects it, or rebalances it from okx.
    a = [1.0] * 10
    b = [1.0, 1.002, 1.001, 1.0, 1.0, 1.002, 1.001, 1.0, 1.0, 1.0]
    free = run_backtest("cross-exchange-spread", SPREAD, _config(), _frame(a, b))
    assert list(free.trades.bar) == [2, 2, 4, 4, 6, 6, 8, 8]
    loose = {"min_balances": {"USDT": 0.0, "USDC": 0.0}}
    out = run_backtest("cross-exchange-spread", SPREAD, _config(a=loose), _frame(a, b))
    np.testing.assert_array_equal(out.equity, free.equity)
    for col in ("bar", "side", "quantity", "price", "fee", "slippage", "round_trip"):
        np.testing.assert_array_equal(getattr(out.trades, col), getattr(free.trades, col))
    assert out.metrics["rejected_fills"] == 0
    # A opens with 1001.2002 USDT of its 1001.5 (10 bp fee, 2 bp slippage); the unwind
    # leaves 999.1, short of the second open.
    tight = {"initial_balances": {"USDT": 1001.5}, "min_balances": {"USDT": 0.0}}
    out = run_backtest("cross-exchange-spread", SPREAD, _config(a=tight), _frame(a, b))
    assert list(out.trades.bar) == [2, 2, 4, 4]
    assert out.metrics["rejected_fills"] == 1
    assert out.metrics["round_trips"] == 1
    np.testing.assert_array_equal(out.trades.price, free.trades.price[:4])
    route = Transfer(from_venue="okx", to_venue="binance", asset="USDT", fee=2.0)
    out = run_backtest("cross-exchange-spread", SPREAD, _config(a=tight, transfers=(route,)),
                       _frame(a, b))
    assert out.metrics["rejected_fills"] == 0
    assert out.extras["transfers"] == 1
    for col in ("bar", "side", "quantity", "price", "fee", "slippage", "round_trip"):
        np.testing.assert_array_equal(getattr(out.trades, col), getattr(free.trades, col))


def test_triangular_loop_takes_the_profitable_direction() -> None:
    n = 4
    t = np.arange(n, dtype=np.int64) * 60_000
    fr = MarketFrame(t, (Series("binance", "BTC/USDC", np.full(n, 59_880.0), np.full(n, 1e9)),
                         Series("binance", "BTC/USDT", np.full(n, 60_000.0), np.full(n, 1e9)),
                         Series("binance", "USDC/USDT", np.full(n, 1.0), np.full(n, 1e9))))
    cfg = EngineConfig(venues=(VenueCosts(venue="binance", initial_balances={"USDT": 1e4}),))
    params = {"venue": "binance", "symbols": ["BTC/USDC", "BTC/USDT", "USDC/USDT"],
              "minEdgeBps": 10, "notional": 1000, "cooldownBars": 5}
    out = run_backtest("triangular", params, cfg, fr)
    # USDT → USDC (buy USDC/USDT) → BTC (buy BTC/USDC) → USDT (sell BTC/USDT).
    assert list(out.trades.symbol) == ["USDC/USDT", "BTC/USDC", "BTC/USDT"]
    assert list(out.trades.side) == [1, 1, -1]
    assert list(out.trades.bar) == [1, 1, 1]     # signal 0, cooldown blocks the rest
    gain = 1000.0 / 59_880.0 * 60_000.0 - 1000.0
    assert out.metrics["round_trips"] == 1
    assert out.metrics["expectancy"] == pytest.approx(gain)
    assert out.metrics["theoretical_edge_bps"] == pytest.approx((60_000 / 59_880 - 1) * 1e4)
    assert out.metrics["capture_rate"] == pytest.approx(1.0)


def test_peg_reversion_stops_out() -> None:
    n = 6
    x = np.array([1.0, 0.998, 0.997, 0.9955, 0.9955, 0.9955])
    fr = MarketFrame(np.arange(n, dtype=np.int64) * 60_000,
                     (Series("binance", "USDC/USDT", x, np.full(n, 1e9)),))
    cfg = EngineConfig(venues=(VenueCosts(venue="binance"),))
    params = {"venue": "binance", "symbol": "USDC/USDT", "entryBps": 15, "exitBps": 2,
              "quantity": 1000, "stopLossBps": 20}
    out = run_backtest("peg-reversion", params, cfg, fr)
    # Buys on bar 2 (signal on 1: 20 bp under the peg) at 0.997; at 0.9955 it is 15 bp
    # under the entry close, inside the 20 bp stop, and 45 bp from the peg: it holds.
    assert list(out.trades.bar) == [2]
    x2 = x.copy()
    x2[3:] = 0.9945   # -25 bp from the entry close: stop on bar 3, exit fill on bar 4
    out = run_backtest("peg-reversion", params, cfg, MarketFrame(fr.time_ms, (
        Series("binance", "USDC/USDT", x2, np.full(n, 1e9)),)))
    assert list(out.trades.bar[:2]) == [2, 4]     # then re-enters, 55 bp under the peg
    assert list(out.trades.side[:2]) == [1, -1]
    assert out.metrics["round_trips"] == 1
    assert out.metrics["expectancy"] == pytest.approx(1000 * (0.9945 - 0.997))


def test_metrics_match_hand_computation_on_a_tiny_curve() -> None:
    equity = np.array([100.0, 110.0, 99.0, 121.0])
    t = np.array([0, 60_000, 120_000, 180_000], dtype=np.int64)
    fs = np.zeros(NF)
    st = np.zeros(NS, np.int64)
    st[S_RT], st[S_WINS] = 3, 2
    fs[F_RTPNL], fs[F_GWIN], fs[F_GLOSS], fs[F_FEES] = 15.0, 20.0, 5.0, 1.5
    start_curve(fs, st, 100.0, 0)
    replay_curve(equity, t, fs, st)
    v = dict(zip(NAMES, finalize(fs, st, 4, 180_000, 100.0, 121.0, 4.0), strict=True))
    r = [0.0, 0.1, -0.1, 121 / 99 - 1]
    mean = sum(r) / 4
    std = math.sqrt(sum((x - mean) ** 2 for x in r) / 3)
    down = math.sqrt(sum(min(x, 0.0) ** 2 for x in r) / 4)
    assert v["total_return"] == pytest.approx(0.21)
    assert v["annualized_return"] == pytest.approx(1.21 ** (4 / 4) - 1)
    assert v["volatility"] == pytest.approx(std * 2)
    assert v["sharpe"] == pytest.approx(mean / std * 2)
    assert v["sortino"] == pytest.approx(mean / down * 2)
    assert v["max_drawdown"] == pytest.approx(0.1)
    assert v["calmar"] == pytest.approx(0.21 / 0.1)
    assert v["max_drawdown_duration_s"] == 120.0   # peak at bar 1, regained at bar 3
    assert v["win_rate"] == pytest.approx(2 / 3)
    assert v["profit_factor"] == pytest.approx(4.0)
    assert v["expectancy"] == pytest.approx(5.0)
    assert v["total_pnl"] == pytest.approx(21.0)
    assert v["fees_paid"] == 1.5


def _noisy(n: int, seed: int) -> MarketFrame:
    rng = np.random.default_rng(seed)
    a = 1.0 + rng.normal(0, 3e-4, n)
    b = a * (1.0 + rng.normal(0, 1.2e-3, n))
    b[1:][rng.random(n - 1) < 0.05] = np.nan
    return _frame(list(a), list(b))


def test_sweep_points_equal_single_runs_in_grid_order() -> None:
    fr = _noisy(2000, 3)
    cfg = _config()
    axes = {"entryBps": [10.0, 15.0], "crossExchangeSpread.exitBps": [2.0, 3.0, 5.0]}
    points = run_sweep("cross-exchange-spread", SPREAD, axes, cfg, fr)
    assert [tuple(p.params.values()) for p in points] == [
        (10.0, 2.0), (10.0, 3.0), (10.0, 5.0), (15.0, 2.0), (15.0, 3.0), (15.0, 5.0)]
    for p in points:
        single = run_backtest("cross-exchange-spread", SPREAD | {
            "entryBps": p.params["entryBps"],
            "exitBps": p.params["crossExchangeSpread.exitBps"]}, cfg, fr)
        assert {k: v for k, v in p.metrics.items() if k != "return_moments"} == single.metrics
    assert len({p.metrics["round_trips"] for p in points}) > 1
    seen: list[tuple[int, int]] = []
    run_sweep("cross-exchange-spread", SPREAD, axes, cfg, fr,
              on_progress=lambda d, t: seen.append((d, t)) is None)
    assert seen[-1] == (6, 6)
    with pytest.raises(Cancelled):
        run_sweep("cross-exchange-spread", SPREAD, axes, cfg, fr, on_progress=lambda d, t: False)
    with pytest.raises(ValueError, match="expected a sweep axis"):
        run_sweep("cross-exchange-spread", SPREAD, {"symbol": [1.0]}, cfg, fr)
    with pytest.raises(ValueError, match="exitBps"):
        run_sweep("cross-exchange-spread", SPREAD, {"exitBps": [20.0]}, cfg, fr)


def test_walk_forward_folds_cover_the_range_with_the_right_windows() -> None:
    fr = _noisy(1000, 4)
    cfg = _config()
    axes = {"entryBps": [8.0, 12.0, 20.0]}
    folds = run_walk_forward("cross-exchange-spread", SPREAD, axes, cfg, fr,
                             in_sample_bars=300, out_of_sample_bars=100, step_bars=100)
    assert [f.in_sample for f in folds] == [(s, s + 300) for s in range(0, 601, 100)]
    assert [f.out_of_sample for f in folds] == [(s + 300, s + 400) for s in range(0, 601, 100)]
    assert folds[-1].out_of_sample[1] == 1000
    for f in folds:
        s, e = f.in_sample
        ins = run_sweep("cross-exchange-spread", SPREAD, axes, cfg, fr.slice(s, e))
        best = max(p.metrics["sharpe"] for p in ins)
        assert f.in_sample_metrics["sharpe"] == best
        assert f.chosen_params["entryBps"] in axes["entryBps"]
        oos = run_backtest("cross-exchange-spread", SPREAD | {"entryBps": f.chosen_params[
            "entryBps"]}, cfg, fr.slice(*f.out_of_sample))
        assert f.out_of_sample_metrics == oos.metrics
    with pytest.raises(ValueError, match="at least 1500 bars"):
        run_walk_forward("cross-exchange-spread", SPREAD, axes, cfg, fr,
                         in_sample_bars=1000, out_of_sample_bars=500, step_bars=10)
    # Progress (folds done) is asked inside a fold's sweep too: a cancel stops the first.
    asked: list[tuple[int, int]] = []
    wide = {"entryBps": [float(x) for x in range(5, 105)]}
    with pytest.raises(Cancelled):
        run_walk_forward("cross-exchange-spread", SPREAD, wide, cfg, fr, in_sample_bars=300,
                         out_of_sample_bars=100, step_bars=100,
                         on_progress=lambda done, total: asked.append((done, total)) or False)
    assert asked == [(0, 7)]


def test_progress_is_reported_in_chunks_and_cancels() -> None:
    fr = _noisy(1000, 5)
    cfg = _config()
    seen: list[int] = []
    out = run_backtest("cross-exchange-spread", SPREAD, cfg, fr, progress_every=300,
                       on_progress=lambda p: seen.append(p.bars_done) is None)
    assert seen == [300, 600, 900, 1000]
    plain = run_backtest("cross-exchange-spread", SPREAD, cfg, fr)
    np.testing.assert_array_equal(out.equity, plain.equity)
    assert out.metrics == plain.metrics
    with pytest.raises(Cancelled):
        run_backtest("cross-exchange-spread", SPREAD, cfg, fr, progress_every=300,
                     on_progress=lambda p: p.bars_done < 600)


def test_bad_input_is_refused_with_expected_x_got_y() -> None:
    with pytest.raises(ValueError, match="expected a number > 0, got -1"):
        validate_params("cross-exchange-spread", SPREAD | {"entryBps": -1})
    with pytest.raises(ValueError, match="expected a strategy kind"):
        validate_params("martingale", {})
    validate_params("cross-exchange-spread", {"crossExchangeSpread": SPREAD})
    assert required_series("cross-exchange-spread", SPREAD) == [
        ("binance", "USDC/USDT"), ("kraken", "USDC/USDT")]
    assert required_series("triangular", {
        "venue": "binance", "symbols": ["BTC/USDC", "BTC/USDT", "USDC/USDT"],
        "minEdgeBps": 1, "notional": 10}) == [
        ("binance", "BTC/USDC"), ("binance", "BTC/USDT"), ("binance", "USDC/USDT")]
    fr = _frame(A6, B6)
    with pytest.raises(ValueError, match="expected market data for USDC/USDT on okx"):
        run_backtest("cross-exchange-spread", SPREAD | {"venueB": "okx"}, _config(), fr)
    with pytest.raises(ValueError, match="expected bars in the time range"):
        run_backtest("cross-exchange-spread", SPREAD, _config(), _frame([], []))
    with pytest.raises(ValueError, match="expected venue 'kraken' in the backtest config"):
        run_backtest("cross-exchange-spread", SPREAD,
                     EngineConfig(venues=(VenueCosts(venue="binance"),)), fr)


def test_assets_outside_the_quote_asset_need_a_pricing_market() -> None:
    btc = {"symbol": "BTC/USDC", "venueA": "binance", "venueB": "kraken", "entryBps": 15,
           "exitBps": 3, "quantity": 1}
    assert pricing_symbols("cross-exchange-spread", btc, "USDT") == ["BTC/USDT", "USDC/USDT"]
    assert pricing_symbols("cross-exchange-spread", SPREAD, "USDT") == []
    # an asset only transfers move still needs pricing
    assert pricing_symbols("cross-exchange-spread", SPREAD, "USDT", ["BTC"]) == ["BTC/USDT"]
    n = 4
    fr = MarketFrame(np.arange(n, dtype=np.int64) * 60_000, (
        Series("binance", "BTC/USDC", np.full(n, 6e4), np.ones(n)),
        Series("kraken", "BTC/USDC", np.full(n, 6e4), np.ones(n))))
    with pytest.raises(ValueError, match="expected a market pricing BTC in the quote asset USDT"):
        run_backtest("cross-exchange-spread", btc, _config(), fr)
