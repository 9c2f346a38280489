"""Issue 14 through the service: attribution, hold baseline, execution model, robustness
panel, cost axes, deflated Sharpe, out-of-sample decay and purged k-fold sweeps."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from backtest.service.bt_helpers import START_MS, caller, config_json, venue_configs
from usdcarb.v1 import backtest_pb2 as pb
from usdcarb.v1 import common_pb2

pytestmark = pytest.mark.integration

END_MS = START_MS + 3000 * 60_000


def config(**overrides: Any) -> pb.BacktestConfig:
    return json_format.ParseDict(config_json(START_MS, END_MS, **overrides), pb.BacktestConfig())


async def _run(env: Any, version: str, cfg: pb.BacktestConfig,
               ) -> tuple[str, pb.BacktestResult]:
    events = [e async for e in env.backtest.RunBacktest(pb.RunBacktestRequest(
        strategy_version=version, config=cfg), metadata=caller())]
    last = events[-1]
    assert last.completed.outcome.result == common_pb2.Outcome.RESULT_OK, last
    got = await env.backtest.GetBacktest(pb.GetBacktestRequest(name=last.backtest))
    assert got.result == last.completed.result
    return last.backtest, last.completed.result


async def test_a_backtest_result_splits_its_pnl_and_carries_its_baseline_and_panel(
        env: Any) -> None:
    version = await env.version()
    name, result = await _run(env, version, config(robustness={"enabled": True}))
    m = result.metrics
    a = m.attribution
    parts = (a.trading_pnl + a.inventory_revaluation + a.fees + a.slippage
             + a.transfer_costs + a.legging)
    assert a.total_pnl == m.total_pnl
    assert parts == pytest.approx(m.total_pnl, rel=1e-9, abs=1e-6)
    # the venues start with USDC, so holding it is the baseline the strategy must beat
    assert a.inventory_revaluation == result.baseline_metrics.total_pnl != 0.0
    assert m.excess_pnl == pytest.approx(m.total_pnl - a.inventory_revaluation, abs=1e-6)
    assert result.baseline_metrics.round_trips == 0 and m.round_trips > 0
    assert result.execution_model == "all-or-nothing legs, taker fills, next bar"
    assert m.fill_ratio == 1.0
    # the equity curve carries the baseline's equity at the same bars, in either layout
    name = f"{name}/equityCurve"
    curve = await env.backtest.GetEquityCurve(pb.GetEquityCurveRequest(name=name),
                                              metadata=caller())
    assert len(curve.baseline) == curve.count > 0
    assert curve.baseline[-1] == pytest.approx(
        curve.equity[-1] - m.excess_pnl, rel=1e-12)
    assert len(set(curve.baseline)) > 1          # USDC held: the baseline moves
    page = await env.backtest.GetEquityCurve(pb.GetEquityCurveRequest(
        name=name, page_size=1000, layout=common_pb2.COLUMN_LAYOUT_LE_BYTES),
        metadata=caller())
    assert len(page.baseline_le) == 8 * page.count == 8000
    labels = [s.label for s in result.robustness.scenarios]
    assert labels == ["latency +1 bar", "latency +2 bars", "costs x1.5", "costs x2"]
    assert result.robustness.scenarios[3].metrics.fees_paid > m.fees_paid


async def test_independent_legs_report_legging_and_partial_fills(env: Any) -> None:
    version = await env.version()
    cfg = config(venues=[dict(v, latencyMs=90_000 if v["venue"] == "venueb" else 0,
                              participationCap=0.0005) for v in venue_configs()],
                 execution={"legMode": "LEG_MODE_INDEPENDENT",
                            "oneLegPolicy": "ONE_LEG_POLICY_RETRY", "retryBars": 2})
    _, result = await _run(env, version, cfg)
    m = result.metrics
    assert result.execution_model.startswith("independent legs (one leg filled: retry 2")
    assert m.legged_trades > 0 and m.attribution.legging != 0.0


async def test_sweeps_report_deflated_sharpe_decay_and_purged_kfold(env: Any) -> None:
    version = await env.version()

    async def finished(sweep: pb.Sweep) -> pb.Sweep:
        made = await env.backtest.CreateSweep(pb.CreateSweepRequest(sweep=sweep),
                                              metadata=caller())
        events = [e async for e in env.backtest.WatchSweep(
            pb.WatchSweepRequest(name=made.name))]
        assert events[-1].outcome.result == common_pb2.Outcome.RESULT_OK, events[-1]
        got: pb.Sweep = await env.backtest.GetSweep(pb.GetSweepRequest(name=made.name))
        return got

    axes = [pb.ParameterAxis(path="entryBps", values=[10, 15, 20]),
            pb.ParameterAxis(path="execution.feeMultiplier", values=[1, 2])]
    grid = await finished(pb.Sweep(strategy_version=version, config=config(), axes=axes))
    assert len(grid.points) == 6
    d = grid.deflated_sharpe
    assert d.trials == 6 and d.observations == 3000 and 0.0 <= d.deflated_sharpe <= 1.0
    assert d.annualized_sharpe == max(p.metrics.sharpe for p in grid.points)

    kfold = await finished(pb.Sweep(
        strategy_version=version, config=config(), axes=axes[:1], objective="total_pnl",
        cross_validation=json_format.ParseDict(
            {"folds": 3, "purge": "600s", "embargo": "1200s"}, pb.CrossValidationSpec())))
    assert [f.index for f in kfold.cv_folds] == [1, 2, 3] and not kfold.folds
    middle = kfold.cv_folds[1]
    assert len(middle.train) == 2
    assert middle.train[0].end_time.ToMilliseconds() == (
        middle.test.start_time.ToMilliseconds() - 600_000)
    assert kfold.out_of_sample.folds == 3 and kfold.out_of_sample.objective == "total_pnl"
    assert kfold.cross_validation.folds == 3

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await env.backtest.CreateSweep(pb.CreateSweepRequest(sweep=pb.Sweep(
            strategy_version=version, config=config(robustness={"enabled": True}),
            axes=axes[:1])), metadata=caller())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await env.backtest.CreateSweep(pb.CreateSweepRequest(sweep=pb.Sweep(
            strategy_version=version, config=config(), axes=axes[:1],
            cross_validation=pb.CrossValidationSpec(folds=40))), metadata=caller())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
