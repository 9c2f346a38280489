"""Paper runs through the backtest service (issue 18): a PAPER deployment started with
StartPaperRun is followed by the replica's supervisor; its fills and equity, read with
ListPaperFills / ListPaperEquity, equal RunBacktest of the same version over the same
stored bars; WatchPaperRun streams it; StopDeployment stops the runner."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from backtest.service.bt_helpers import START_MS, caller, config_json
from testkit import eventually
from usdcarb.platform.events import STREAM, DomainEvent
from usdcarb.platform.testing import bearer
from usdcarb.v1 import backtest_pb2 as pb
from usdcarb.v1 import common_pb2
from usdcarb.v1 import strategy_pb2 as spb

pytestmark = pytest.mark.integration

TRADER = bearer("alice", ("trader",))
FIRST = 2700   # the paper run starts near the end of the 3,000 stored bars


async def deploy(env: Any) -> str:
    version = await env.version()
    for state in (spb.VERSION_STATE_BACKTESTED, spb.VERSION_STATE_APPROVED):
        await env.strategy.TransitionStrategyVersion(spb.TransitionStrategyVersionRequest(
            name=version, state=state, reason="ok"), metadata=TRADER)
    d = await env.strategy.CreateDeployment(spb.CreateDeploymentRequest(
        parent=version.rsplit("/", 2)[0], deployment=spb.Deployment(
            version=version, environment=spb.DEPLOYMENT_ENVIRONMENT_PAPER)), metadata=TRADER)
    return str(d.name)


async def test_paper_run_through_the_service_equals_run_backtest(env: Any) -> None:
    dep = await deploy(env)
    name = f"{dep}/paperRun"
    start_ms = START_MS + FIRST * 60_000
    cfg = json_format.ParseDict(config_json(start_ms, start_ms + 60_000), pb.BacktestConfig())
    cfg.range.ClearField("end_time")
    with pytest.raises(grpc.aio.AioRpcError) as err:   # readers may not start one
        await env.backtest.StartPaperRun(pb.StartPaperRunRequest(name=name, config=cfg),
                                         metadata=caller())
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    run = await env.backtest.StartPaperRun(pb.StartPaperRunRequest(
        name=name, config=cfg, stale_after_bars=2), metadata=TRADER)
    assert run.state == pb.PAPER_RUN_STATE_RUNNING and run.name == name
    again = await env.backtest.StartPaperRun(pb.StartPaperRunRequest(
        name=name, config=cfg), metadata=TRADER)
    assert again.create_time == run.create_time

    seen: list[int] = []

    async def caught_up() -> pb.PaperRun | None:
        """Every stored bar processed (the last ones wait for a market's next bar)."""
        got = await env.backtest.GetPaperRun(pb.GetPaperRunRequest(name=name),
                                             metadata=caller())
        seen.append(got.bars)
        return got if got.bars >= 290 and seen[-20:] == [got.bars] * 20 else None

    run = await eventually(caught_up, within_s=120)
    assert env.components.paper.following() == [dep]
    watch = env.backtest.WatchPaperRun(pb.WatchPaperRunRequest(name=name), metadata=caller())
    first = await watch.read()
    assert first.sequence >= 290
    watch.cancel()
    run = await env.backtest.GetPaperRun(pb.GetPaperRunRequest(name=name), metadata=caller())
    n = run.bars
    bar0 = run.last_bar_time.ToMilliseconds() - (n - 1) * 60_000
    assert bar0 >= start_ms

    events = [e async for e in env.backtest.RunBacktest(pb.RunBacktestRequest(
        strategy_version=run.strategy_version,
        config=json_format.ParseDict(config_json(bar0, bar0 + n * 60_000), pb.BacktestConfig())),
        metadata=caller())]
    done = events[-1].completed
    assert done.outcome.result == common_pb2.Outcome.RESULT_OK
    bt = events[-1].backtest

    async def pages(call: Any, request: Any, field: str) -> list[Any]:
        out: list[Any] = []
        while True:
            page = await call(request, metadata=caller())
            out += getattr(page, field)
            if not page.next_page_token:
                return out
            request.page_token = page.next_page_token

    trades = await pages(env.backtest.ListBacktestTrades,
                         pb.ListBacktestTradesRequest(parent=bt, page_size=50), "trades")
    fills = await pages(env.backtest.ListPaperFills,
                        pb.ListPaperFillsRequest(parent=name, page_size=7), "fills")
    assert len(fills) == len(trades) == run.fills > 0
    assert fills == trades
    curve = await env.backtest.GetEquityCurve(pb.GetEquityCurveRequest(
        name=f"{bt}/equityCurve", page_size=50_000), metadata=caller())
    points = await pages(env.backtest.ListPaperEquity,
                         pb.ListPaperEquityRequest(parent=name, page_size=100), "points")
    assert [p.equity for p in points] == list(curve.equity)
    assert [p.time.ToMilliseconds() for p in points] == list(curve.time_ms)
    assert run.equity == curve.equity[-1]
    assert run.metrics.total_pnl == done.result.metrics.total_pnl
    assert run.metrics.round_trips == done.result.metrics.round_trips

    # Stopping the deployment stops the run and its runner; nothing keeps following it.
    await env.strategy.StopDeployment(spb.StopDeploymentRequest(name=dep, reason="done"),
                                      metadata=TRADER)

    async def stopped() -> bool:
        got = await env.backtest.GetPaperRun(pb.GetPaperRunRequest(name=name),
                                             metadata=caller())
        return got.state == pb.PAPER_RUN_STATE_STOPPED and not env.components.paper.following()

    await eventually(stopped, within_s=30)
    published = [DomainEvent.from_fields(f) for _, f in await env.redis.xrange(STREAM)]
    mine = [e for e in published if e.subject == name]
    changes = [e.summary for e in mine if e.type == "EVENT_TYPE_DEPLOYMENT_CHANGED"]
    assert len(changes) == 2 and "started" in changes[0] and "stopped" in changes[1]
    stale = [e for e in mine if e.type == "EVENT_TYPE_DATA_ISSUE"]
    missing_bars = [p for p in points if p.missing]
    assert missing_bars and stale   # the synthetic venues miss about 2% of their bars
    assert stale[0].severity == "SEVERITY_WARNING"
    assert stale[0].data["time_ms"] == missing_bars[0].time.ToMilliseconds()
    assert stale[0].data["missing"] == list(missing_bars[0].missing)
    final = [m async for m in env.backtest.WatchPaperRun(
        pb.WatchPaperRunRequest(name=name, after_sequence=10**9), metadata=caller())]
    assert len(final) == 1 and final[0].outcome.result == common_pb2.Outcome.RESULT_OK
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await env.backtest.StartPaperRun(pb.StartPaperRunRequest(name=name, config=cfg),
                                         metadata=TRADER)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "ACTIVE" in (err.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await env.backtest.GetPaperRun(pb.GetPaperRunRequest(name="strategies/x/paperRun"),
                                       metadata=caller())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
