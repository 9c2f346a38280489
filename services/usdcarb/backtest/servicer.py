"""gRPC BacktestService: proto ↔ application calls, nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from usdcarb.backtest import convert
from usdcarb.backtest.app import BacktestApp
from usdcarb.backtest.paper.service import PaperService
from usdcarb.platform.identity import get_caller
from usdcarb.v1 import backtest_pb2 as pb
from usdcarb.v1 import backtest_pb2_grpc as pb_grpc
from usdcarb.v1 import common_pb2

DEFAULT_PROGRESS_INTERVAL_S = 0.25


def _state(number: int) -> str | None:
    return common_pb2.JobState.Name(number) if number else None


class BacktestServicer(pb_grpc.BacktestServiceServicer):
    """usdcarb.v1.BacktestService."""

    def __init__(self, app: BacktestApp, paper: PaperService) -> None:
        self._app = app
        self._paper = paper

    async def RunBacktest(self, request: pb.RunBacktestRequest,
                          context: Any) -> AsyncIterator[pb.BacktestEvent]:
        interval = DEFAULT_PROGRESS_INTERVAL_S
        if request.HasField("progress_interval"):
            interval = max(0.0, request.progress_interval.ToMilliseconds() / 1000)
        async for event in self._app.run_backtest(
                strategy_version=request.strategy_version, config=request.config,
                creator=get_caller().subject, request_id=request.request_id, interval_s=interval):
            yield event

    async def CreateBacktest(self, request: pb.CreateBacktestRequest, context: Any) -> Any:
        job = await self._app.create_backtest(
            strategy_version=request.backtest.strategy_version, config=request.backtest.config,
            creator=get_caller().subject,
            request_id=request.request_id)
        return convert.backtest_to_pb(job)

    async def GetBacktest(self, request: pb.GetBacktestRequest, context: Any) -> Any:
        job, progress = await self._app.get_backtest(request.name)
        return convert.backtest_to_pb(job, progress)

    async def ListBacktests(self, request: pb.ListBacktestsRequest, context: Any) -> Any:
        page = await self._app.list_backtests(
            page_size=request.page_size, page_token=request.page_token,
            state=_state(request.state), strategy=request.strategy, owner=request.owner)
        return pb.ListBacktestsResponse(
            backtests=[convert.backtest_to_pb(j) for j in page.items],
            next_page_token=page.next_page_token)

    async def CancelBacktest(self, request: pb.CancelBacktestRequest, context: Any) -> Any:
        return convert.backtest_to_pb(await self._app.cancel_backtest(request.name))

    async def WatchBacktest(self, request: pb.WatchBacktestRequest,
                            context: Any) -> AsyncIterator[pb.BacktestEvent]:
        async for event in self._app.watch_backtest(request.name, request.after_sequence):
            yield event

    async def ListBacktestTrades(self, request: pb.ListBacktestTradesRequest,
                                 context: Any) -> Any:
        page = await self._app.list_trades(request.parent, request.page_size,
                                           request.page_token)
        return pb.ListBacktestTradesResponse(trades=page.items,
                                             next_page_token=page.next_page_token)

    async def GetEquityCurve(self, request: pb.GetEquityCurveRequest, context: Any) -> Any:
        return await self._app.equity_curve(request.name, request.max_points, request.layout,
                                            page_size=request.page_size,
                                            page_token=request.page_token)

    async def CreateSweep(self, request: pb.CreateSweepRequest, context: Any) -> Any:
        job = await self._app.create_sweep(
            sweep=request.sweep, creator=get_caller().subject,
            request_id=request.request_id)
        return convert.sweep_to_pb(job)

    async def GetSweep(self, request: pb.GetSweepRequest, context: Any) -> Any:
        return convert.sweep_to_pb(await self._app.get_sweep(request.name))

    async def ListSweeps(self, request: pb.ListSweepsRequest, context: Any) -> Any:
        page = await self._app.list_sweeps(page_size=request.page_size,
                                           page_token=request.page_token, owner=request.owner)
        return pb.ListSweepsResponse(sweeps=[convert.sweep_to_pb(j) for j in page.items],
                                     next_page_token=page.next_page_token)

    async def CancelSweep(self, request: pb.CancelSweepRequest, context: Any) -> Any:
        return convert.sweep_to_pb(await self._app.cancel_sweep(request.name))

    async def WatchSweep(self, request: pb.WatchSweepRequest,
                         context: Any) -> AsyncIterator[pb.SweepEvent]:
        async for event in self._app.watch_sweep(request.name, request.after_sequence):
            yield event

    async def StartPaperRun(self, request: pb.StartPaperRunRequest, context: Any) -> Any:
        return await self._paper.start_run(
            name=request.name, config=request.config,
            stale_after_bars=request.stale_after_bars, creator=get_caller().subject,
            max_divergence=request.max_divergence)

    async def GetPaperRun(self, request: pb.GetPaperRunRequest, context: Any) -> Any:
        return await self._paper.get_run(request.name)

    async def ListPaperFills(self, request: pb.ListPaperFillsRequest, context: Any) -> Any:
        return await self._paper.list_fills(request.parent, request.page_size,
                                            request.page_token)

    async def ListPaperEquity(self, request: pb.ListPaperEquityRequest, context: Any) -> Any:
        return await self._paper.list_equity(request.parent, request.page_size,
                                             request.page_token)

    async def WatchPaperRun(self, request: pb.WatchPaperRunRequest,
                            context: Any) -> AsyncIterator[pb.PaperRun]:
        async for run in self._paper.watch_run(request.name, request.after_sequence):
            yield run

    async def GetPaperDivergence(self, request: pb.GetPaperDivergenceRequest,
                                 context: Any) -> Any:
        return await self._paper.tracker.divergence(request.name, request.page_size,
                                                    request.page_token)
