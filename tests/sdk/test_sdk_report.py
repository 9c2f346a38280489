"""The SDK's BacktestConfig builder, result frames and report pieces, without a stack."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from usdcarb_sdk import v1
from usdcarb_sdk.backtest_config import BacktestConfigBuilder
from usdcarb_sdk.report import BacktestData, SweepData, to_html
from usdcarb_sdk.report_charts import inventory_from_trades, reduce_extremes, spread_series
from usdcarb_sdk.results import attribution_parts, metrics_frame, sweep_points_frame

pytestmark = pytest.mark.unit


def test_builder_fills_every_venue_with_documented_defaults() -> None:
    config = (BacktestConfigBuilder("2023-03-10", "2023-03-13T12:00Z")
              .venue("binance", balances={"BTC": 5, "USDC": 1e5}, latency_ms=250)
              .venue("bybit", taker_fee_bps=7, slippage_bps=2, participation_cap=0.1)
              .transfer("binance", "bybit", "USDC", fee=1, delay_bars=30, both_ways=True)
              .execution(legs="independent", one_leg="retry", retry_bars=3)
              .robustness().build())
    assert config.range.start_time == datetime(2023, 3, 10, tzinfo=UTC)
    assert config.range.end_time == datetime(2023, 3, 13, 12, tzinfo=UTC)
    assert (config.timeframe, config.quote_asset, config.fill_policy) == (
        "1m", "USDC", v1.FillPolicy.NEXT_BAR)
    binance, bybit = config.venues
    assert (binance.taker_fee_bps, binance.maker_fee_bps, binance.latency_ms) == (10, 10, 250)
    assert [(b.asset, b.amount) for b in binance.initial_balances] == [("BTC", 5), ("USDC", 1e5)]
    assert (bybit.taker_fee_bps, bybit.slippage.fixed_bps, bybit.participation_cap) == (7, 2, 0.1)
    assert [(t.from_venue, t.to_venue, t.delay_bars) for t in config.transfers] == [
        ("binance", "bybit", 30), ("bybit", "binance", 30)]
    assert config.execution.leg_mode == v1.LegMode.INDEPENDENT
    assert config.execution.one_leg_policy == v1.OneLegPolicy.RETRY
    assert config.robustness.enabled and not config.robustness.cost_multipliers
    assert v1.BacktestConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(("call", "message"), [
    (lambda: BacktestConfigBuilder("2023-03-13", "2023-03-10"), "expected end after start"),
    (lambda: BacktestConfigBuilder("2023-03-10", "2023-03-13").build(), "at least one venue"),
    (lambda: BacktestConfigBuilder("2023-03-10", "2023-03-13", fill_policy="soon"),
     "fill_policy"),
    (lambda: BacktestConfigBuilder("2023-03-10", "2023-03-13").execution(legs="some"),
     "expected legs"),
])
def test_builder_refuses_what_it_cannot_build(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]


def minute_index(n: int) -> pd.DatetimeIndex:
    return pd.date_range("2023-03-10", periods=n, freq="1min", tz="UTC", name="open_time")


def test_spread_series_of_each_kind() -> None:
    idx = minute_index(3)
    a = pd.DataFrame({"close": [100.0, 100.0, 100.0]}, index=idx)
    b = pd.DataFrame({"close": [101.0, 100.0, 99.5]}, index=idx)
    label, s = spread_series("cross_exchange_spread", {"symbol": "BTC/USDC", "venue_a": "x",
                                                       "venue_b": "y"},
                             {("x", "BTC/USDC"): a, ("y", "BTC/USDC"): b})
    assert "y vs x" in label and np.allclose(s.to_numpy(), [100.0, 0.0, -50.0])
    _, peg = spread_series("peg_reversion", {"venue": "x", "symbol": "USDC/USDT", "peg": 1.0},
                           {("x", "USDC/USDT"): pd.DataFrame({"close": [0.99, 1.0, 1.002]},
                                                             index=idx)})
    assert np.allclose(peg.to_numpy(), [-100.0, 0.0, 20.0])
    closes = {"BTC/USDC": [20_000.0], "BTC/USDT": [20_100.0], "USDC/USDT": [1.0]}
    frames = {("x", k): pd.DataFrame({"close": v}, index=minute_index(1))
              for k, v in closes.items()}
    _, loop = spread_series("triangular", {"venue": "x", "symbols": list(closes)}, frames)
    # BTC/USDT over (BTC/USDC x USDC/USDT): 20,100 / 20,000 - 1 = 50 bps.
    assert np.allclose(loop.to_numpy(), [50.0])
    assert spread_series("peg_reversion", {"venue": "x", "symbol": "A/B"}, {}) is None


def trades_frame() -> pd.DataFrame:
    times = pd.DatetimeIndex(["2023-03-10T00:01Z", "2023-03-10T00:01Z", "2023-03-10T00:05Z"],
                             name="time")
    return pd.DataFrame({"venue": ["x", "y", "x"], "symbol": ["BTC/USDC"] * 3,
                         "side": pd.Categorical(["BUY", "SELL", "SELL"]),
                         "quantity": [1.0, 1.0, 1.0], "price": [100.0, 101.0, 102.0],
                         "fee": [0.1, 0.1, 0.1], "round_trip": [1, 1, 1]}, index=times)


def test_inventory_follows_the_fills_from_the_starting_balances() -> None:
    inv = inventory_from_trades(trades_frame(), {"x": {"BTC": 5, "USDC": 1000},
                                                 "y": {"BTC": 5, "USDC": 1000}})
    assert len(inv) == 2  # the legs of one bar are drawn once
    first, last = inv.iloc[0], inv.iloc[-1]
    assert (first["x:BTC"], first["x:USDC"]) == (6.0, pytest.approx(1000 - 100 - 0.1))
    assert (first["y:BTC"], first["y:USDC"]) == (4.0, pytest.approx(1000 + 101 - 0.1))
    assert (last["x:BTC"], last["x:USDC"]) == (5.0, pytest.approx(899.9 + 102 - 0.1))
    spanned = inventory_from_trades(trades_frame(), {"x": {"BTC": 5}}, "2023-03-10T00:00Z",
                                    "2023-03-11T00:00Z")
    assert list(spanned.index.strftime("%d %H:%M")) == ["10 00:00", "10 00:01", "10 00:05",
                                                        "11 00:00"]
    assert list(spanned["x:BTC"]) == [5.0, 6.0, 5.0, 5.0]
    assert spanned["y:BTC"].iloc[0] == 0.0 and spanned["y:BTC"].iloc[1] == -1.0


def result() -> v1.BacktestResult:
    metrics = v1.BacktestMetrics(total_return=0.03, total_pnl=300.0, sharpe=2.0,
                                 excess_return=0.001, excess_pnl=10.0,
                                 attribution=v1.PnlAttribution(
                                     trading_pnl=15.0, inventory_revaluation=290.0, fees=-4.0,
                                     slippage=-1.0, transfer_costs=0.0, legging=0.0,
                                     total_pnl=300.0))
    return v1.BacktestResult(metrics=metrics, baseline_metrics=v1.BacktestMetrics(
        total_return=0.029, total_pnl=290.0), trade_count=3, bars=10,
        robustness=v1.RobustnessPanel(scenarios=[v1.RobustnessScenario(
            label="costs x2", cost_multiplier=2.0,
            metrics=v1.BacktestMetrics(total_return=0.02))]),
        fingerprint=v1.Fingerprint(digest="f" * 64))


def test_frames_of_a_result_put_the_strategy_beside_the_hold_baseline() -> None:
    frame = metrics_frame(result())
    assert list(frame.columns) == ["strategy", "hold baseline"]
    assert frame.loc["total_pnl", "strategy"] == 300.0
    assert frame.loc["total_pnl", "hold baseline"] == 290.0
    parts = attribution_parts(result().metrics)
    assert parts is not None and sum(v for _, v in parts) == pytest.approx(300.0)
    assert [k for k, _ in parts][:2] == ["inventory revaluation", "trading (captured spreads)"]


def test_reports_render_offline_as_one_self_contained_page() -> None:
    idx = pd.date_range("2023-03-10", periods=10, freq="1min", tz="UTC", name="time")
    equity = pd.DataFrame({"equity": np.linspace(1e4, 1.03e4, 10), "drawdown": 0.0,
                           "exposure": 0.0, "baseline": np.linspace(1e4, 1.029e4, 10)},
                          index=idx)
    config = BacktestConfigBuilder("2023-03-10", "2023-03-11").venue(
        "x", balances={"BTC": 5, "USDC": 1000}).venue("y", balances={"BTC": 5}).build()
    version = v1.StrategyVersion(name="strategies/s/versions/v", parameters=v1.StrategyParameters(
        cross_exchange_spread=v1.CrossExchangeSpreadParams(
            symbol="BTC/USDC", venue_a="x", venue_b="y", entry_bps=60, exit_bps=5,
            quantity=1)))
    candles = {(v, "BTC/USDC"): pd.DataFrame({"close": np.linspace(100, 101 + k, 10)},
                                             index=idx) for k, v in enumerate("xy")}
    page = to_html(BacktestData(v1.Backtest(name="backtests/b", config=config, result=result(),
                                            state=v1.JobState.SUCCEEDED),
                                version, equity, trades_frame(), candles))
    for chart in ("chart-equity", "chart-excess", "chart-drawdown", "chart-spread", "chart-inventory",
                  "chart-attribution", "chart-robustness"):
        assert f'id="{chart}"' in page
    assert "f" * 64 in page and "excess return over hold" in page
    assert "<script src=" not in page and "Plotly.newPlot" in page
    sweep = v1.Sweep(name="sweeps/s", objective="sharpe",
                     axes=[v1.ParameterAxis(path="a", values=[1, 2]),
                           v1.ParameterAxis(path="b", values=[3, 4])],
                     points=[v1.SweepPoint(parameters={"a": a, "b": b},
                                           metrics=v1.BacktestMetrics(sharpe=a * b))
                             for a in (1.0, 2.0) for b in (3.0, 4.0)],
                     deflated_sharpe=v1.DeflatedSharpe(trials=4, deflated_sharpe=0.42))
    assert len(sweep_points_frame(sweep)) == 4
    page = SweepData(sweep).to_html()
    assert 'id="chart-heatmap"' in page and "0.420" in page


def test_a_long_spread_is_drawn_by_its_extremes() -> None:
    rng = np.random.default_rng(3)
    values = rng.standard_normal(100_000)
    values[77_777] = 50.0  # a spike
    series = pd.Series(values, index=pd.date_range("2023-03-10", periods=100_000,
                                                   freq="1min", tz="UTC"))
    reduced = reduce_extremes(series, 1_000)
    assert len(reduced) <= 1_000 and reduced.index.is_monotonic_increasing
    assert reduced.max() == 50.0 and reduced.min() == values.min()
    assert len(reduce_extremes(series.iloc[:500], 1_000)) == 500


def test_a_walk_forward_sweep_report_draws_in_sample_against_out_of_sample() -> None:
    folds = [v1.WalkForwardFold(index=i, chosen_parameters={"a": 1.0},
                                in_sample_metrics=v1.BacktestMetrics(sharpe=3.0 - i),
                                out_of_sample_metrics=v1.BacktestMetrics(sharpe=1.0 - i))
             for i in (1, 2)]
    sweep = v1.Sweep(name="sweeps/w", objective="sharpe", folds=folds,
                     axes=[v1.ParameterAxis(path="a", values=[1.0])],
                     out_of_sample=v1.OutOfSampleSummary(objective="sharpe", mean_in_sample=1.5,
                                                         mean_out_of_sample=-0.5, decay=1.33,
                                                         folds_decayed=2, folds=2))
    page = SweepData(sweep).to_html()
    assert 'id="chart-folds"' in page and "2 / 2" in page and "1.33" in page
