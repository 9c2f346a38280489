"""BacktestService in-process: real PostgreSQL, Redis, StrategyService and engine."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from backtest.service.bt_helpers import (
    START_MS,
    caller,
    config_json,
    load_bars,
    synthetic_pair,
    venue_configs,
)
from testkit import eventually
from usdcarb.platform.events import STREAM as EVENTS
from usdcarb.platform.testing import authed_channel
from usdcarb.v1 import backtest_pb2 as pb
from usdcarb.v1 import common_pb2
from usdcarb.v1 import strategy_pb2 as spb

pytestmark = pytest.mark.integration

END_MS = START_MS + 3000 * 60_000


def config(start_ms: int = START_MS, end_ms: int = END_MS, **overrides: Any) -> pb.BacktestConfig:
    return json_format.ParseDict(config_json(start_ms, end_ms, **overrides), pb.BacktestConfig())


async def run(env: Any, version: str, cfg: pb.BacktestConfig | None = None,
              **kw: Any) -> list[pb.BacktestEvent]:
    call = env.backtest.RunBacktest(pb.RunBacktestRequest(
        strategy_version=version, config=cfg or config(), **kw), metadata=caller())
    return [e async for e in call]


def details(err: grpc.aio.AioRpcError, kind: Any) -> list[Any]:
    status = rpc_status.from_call(err)
    assert status is not None
    found = []
    for d in status.details:
        if d.Is(kind.DESCRIPTOR):
            msg = kind()
            d.Unpack(msg)
            found.append(msg)
    return found


async def test_run_backtest_streams_progress_and_ends_with_the_result(env: Any) -> None:
    version = await env.version()
    events = await run(env, version)
    assert [e.sequence for e in events] == sorted({e.sequence for e in events})
    assert events[0].state == common_pb2.JOB_STATE_QUEUED
    queued = events[0].progress
    assert queued.HasField("queue") and queued.queue.ahead >= 0
    assert "ahead in the backtest lane" in queued.progress.message
    progress = [e for e in events if e.HasField("progress")
                and e.state == common_pb2.JOB_STATE_RUNNING and e.progress.progress.total]
    assert progress, "expected progress events with bars"
    fractions = [e.progress.progress.fraction for e in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert progress[-1].progress.progress.done == 3000
    assert progress[-1].progress.equity > 0
    last = events[-1]
    assert last.HasField("completed") and last.state == common_pb2.JOB_STATE_SUCCEEDED
    assert last.completed.outcome.result == common_pb2.Outcome.RESULT_OK
    result = last.completed.result
    assert result.bars == 3000 and result.trade_count > 0
    assert result.metrics.round_trips > 0 and result.metrics.fees_paid > 0
    assert set(result.metrics.inventory_utilization) == {"venuea", "venueb"}
    fp = result.fingerprint
    assert fp.strategy_version_id == version.rsplit("/", 1)[1]
    assert len(fp.digest) == 64 and fp.engine_version and not result.optimistic_fills

    got = await env.backtest.GetBacktest(pb.GetBacktestRequest(name=last.backtest))
    assert got.state == common_pb2.JOB_STATE_SUCCEEDED and got.result == result
    assert got.creator == "alice" and got.attempts == 1

    trades: list[pb.Trade] = []
    token = ""
    while True:
        page = await env.backtest.ListBacktestTrades(pb.ListBacktestTradesRequest(
            parent=last.backtest, page_size=100, page_token=token))
        trades += page.trades
        token = page.next_page_token
        if not token:
            break
    assert len(trades) == result.trade_count
    assert [t.time.ToMilliseconds() for t in trades] == sorted(
        t.time.ToMilliseconds() for t in trades)
    fees = sum(t.fee for t in trades)
    assert fees == pytest.approx(result.metrics.fees_paid, rel=1e-9)

    packed = await env.backtest.GetEquityCurve(pb.GetEquityCurveRequest(
        name=f"{last.backtest}/equityCurve", page_size=5000))
    assert packed.count == 3000 and len(packed.equity) == 3000
    assert packed.total_points == 3000 and not packed.next_page_token and not packed.reduced
    le = await env.backtest.GetEquityCurve(pb.GetEquityCurveRequest(
        name=f"{last.backtest}/equityCurve", layout=common_pb2.COLUMN_LAYOUT_LE_BYTES,
        page_size=5000))
    assert np.array_equal(np.frombuffer(le.equity_le, "<f8"), np.asarray(packed.equity))
    assert np.frombuffer(le.time_ms_le, "<i8")[0] == START_MS
    # By default the curve is reduced (3,000 bars > 2,000 points), extremes kept; the
    # stream's last event carried the same reduced curve.
    reduced = await env.backtest.GetEquityCurve(pb.GetEquityCurveRequest(
        name=f"{last.backtest}/equityCurve"))
    assert reduced.reduced and reduced.count <= 2000 and reduced.total_points == 3000
    assert max(reduced.drawdown) == max(packed.drawdown)
    assert last.completed.equity_curve == reduced
    small = await env.backtest.GetEquityCurve(pb.GetEquityCurveRequest(
        name=f"{last.backtest}/equityCurve", max_points=10))
    assert small.count <= 10 and small.equity[-1] == packed.equity[-1]
    assert small.time_ms[0] == packed.time_ms[0]
    assert min(small.equity) == min(packed.equity) and max(small.equity) == max(packed.equity)

    async def backtested() -> bool:   # the version moves after the last event
        v = await env.strategy.GetStrategyVersion(spb.GetStrategyVersionRequest(name=version))
        return bool(v.state == spb.VERSION_STATE_BACKTESTED)

    await eventually(backtested, within_s=5)

    async def published() -> bool:
        entries = await env.redis.xrange(EVENTS)
        return any(f[b"type"] == b"EVENT_TYPE_BACKTEST_SUCCEEDED"
                   and f[b"subject"].decode() == last.backtest for _, f in entries)

    await eventually(published, within_s=5)


async def test_rerun_gives_the_same_fingerprint_and_numbers(env: Any) -> None:
    version = await env.version()
    first = (await run(env, version))[-1].completed.result
    second = (await run(env, version))[-1].completed.result
    assert first.fingerprint == second.fingerprint
    assert first.metrics == second.metrics and first.trade_count == second.trade_count
    # Same everything but the order venues are listed in: the same canonical config.
    swapped = config(venues=list(reversed(venue_configs())))
    third = (await run(env, version, swapped))[-1].completed.result
    assert third.fingerprint.digest == first.fingerprint.digest
    # One changed bar changes the data snapshot hash (and only it).
    await env.market_pool.execute(
        f"UPDATE {env.market_table} SET close = close + 0.0001 WHERE exchange = 'venuea' "
        "AND ts = (SELECT max(ts) FROM " + env.market_table + ")")
    fourth = (await run(env, version))[-1].completed.result
    assert fourth.fingerprint.data_snapshot_hash != first.fingerprint.data_snapshot_hash
    assert fourth.fingerprint.config_hash == first.fingerprint.config_hash
    # A changed fee changes the config hash.
    fifth = (await run(env, version, config(venues=venue_configs(takerFeeBps=2.0))))
    assert fifth[-1].completed.result.fingerprint.config_hash != first.fingerprint.config_hash


async def test_watch_replays_from_another_connection_and_resumes(env: Any) -> None:
    version = await env.version()
    events = await run(env, version)
    name = events[-1].backtest
    _, other = await env.start_replica("replica-2")
    async with authed_channel(other.address) as ch:
        from usdcarb.v1 import backtest_pb2_grpc
        stub = backtest_pb2_grpc.BacktestServiceStub(ch)
        watched = [e async for e in stub.WatchBacktest(pb.WatchBacktestRequest(name=name))]
        assert watched[-1].completed.result == events[-1].completed.result
        assert [e.sequence for e in watched] == list(range(1, watched[-1].sequence + 1))
        resumed = [e async for e in stub.WatchBacktest(pb.WatchBacktestRequest(
            name=name, after_sequence=watched[-2].sequence))]
        assert resumed == watched[-1:]


async def test_bad_input_is_refused_and_writes_nothing(env: Any) -> None:
    version = await env.version()
    sid = version.split("/")[1]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await run(env, f"strategies/{sid}/versions/0123456789abcdef")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    info = details(err.value, error_details_pb2.ResourceInfo)
    assert info and info[0].resource_name.endswith("0123456789abcdef")

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await run(env, version, config(START_MS - 86_400_000, START_MS - 3_600_000))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    pf = details(err.value, error_details_pb2.PreconditionFailure)[0]
    assert {v.subject for v in pf.violations} == {"venuea:USDC/USDT:1m", "venueb:USDC/USDT:1m"}

    bad = config(venues=[venue_configs(takerFeeBps=-1.0)[0]], timeframe="7m")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await run(env, version, bad)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = {v.field: v.description for v in
              details(err.value, error_details_pb2.BadRequest)[0].field_violations}
    assert fields["config.venues[0].taker_fee_bps"] == (
        "expected a number from 0 to 1000, got -1.0")
    assert "config.timeframe" in fields and "config.venues" in fields

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await env.backtest.CreateSweep(pb.CreateSweepRequest(sweep=pb.Sweep(
            strategy_version=version, config=config(),
            axes=[pb.ParameterAxis(path="entryBps", values=[10, -5]),
                  pb.ParameterAxis(path="symbol", values=[1])])), metadata=caller())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = {v.field for v in details(err.value, error_details_pb2.BadRequest)[0]
              .field_violations}
    assert fields == {"sweep.axes[0].values[1]", "sweep.axes[1].path"}

    listed = await env.backtest.ListBacktests(pb.ListBacktestsRequest())
    assert list(listed.backtests) == []
    assert await env.pool.fetchval("SELECT count(*) FROM sweeps") == 0
    assert await env.redis.xlen(env.components.runner._queue.backtests.stream) == 0
    assert await env.redis.xlen(env.components.runner._queue.sweeps.stream) == 0


async def test_create_get_list_and_idempotent_request_ids(env: Any) -> None:
    version = await env.version()
    req = pb.CreateBacktestRequest(backtest=pb.Backtest(strategy_version=version,
                                                        config=config()), request_id="r-1")
    a = await env.backtest.CreateBacktest(req, metadata=caller())
    b = await env.backtest.CreateBacktest(req, metadata=caller())
    assert a.name == b.name and a.state == common_pb2.JOB_STATE_QUEUED
    watched = [e async for e in env.backtest.WatchBacktest(pb.WatchBacktestRequest(name=a.name))]
    assert watched[-1].completed.outcome.result == common_pb2.Outcome.RESULT_OK
    again = [e async for e in env.backtest.WatchBacktest(pb.WatchBacktestRequest(name=a.name))]
    assert len(again) == len(watched)
    c = await env.backtest.CreateBacktest(pb.CreateBacktestRequest(
        backtest=pb.Backtest(strategy_version=version, config=config())), metadata=caller())
    page1 = await env.backtest.ListBacktests(pb.ListBacktestsRequest(page_size=1))
    assert [x.name for x in page1.backtests] == [c.name] and page1.next_page_token
    page2 = await env.backtest.ListBacktests(pb.ListBacktestsRequest(
        page_size=1, page_token=page1.next_page_token))
    assert [x.name for x in page2.backtests] == [a.name]
    done = await env.backtest.ListBacktests(pb.ListBacktestsRequest(
        state=common_pb2.JOB_STATE_SUCCEEDED, strategy=version.rsplit("/", 2)[0]))
    assert a.name in {x.name for x in done.backtests}


async def test_cancel_a_queued_backtest_and_a_running_sweep_frees_the_worker(
        env: Any) -> None:
    # One slot and the sweep in one piece: the slot stays busy with it. (Split in chunks,
    # as by default, a backtest would run at the sweep's next chunk boundary instead.)
    await env.components.runner.stop()
    await env.start_replica("whole", worker_processes=1, sweep_chunk_points=0)
    version = await env.version()
    # The longest grid allowed (10,000 points) keeps the only worker busy: a shorter one
    # (2,000) could end under load before the cancel below reached it.
    big = [float(x) for x in range(5, 2005)]
    sweep = await env.backtest.CreateSweep(pb.CreateSweepRequest(sweep=pb.Sweep(
        strategy_version=version, config=config(),
        axes=[pb.ParameterAxis(path="crossExchangeSpread.entryBps", values=big),
              pb.ParameterAxis(path="exitBps", values=[0.5, 1, 2, 3, 4])])), metadata=caller())
    seen: list[pb.SweepEvent] = []
    async for event in env.backtest.WatchSweep(pb.WatchSweepRequest(name=sweep.name)):
        seen.append(event)
        if event.progress.done > 0 and event.state == common_pb2.JOB_STATE_RUNNING:
            break
    # Backtests go first in a slot's next claim, so this one is queued behind a sweep
    # only because the sweep already runs.
    queued = await env.backtest.CreateBacktest(pb.CreateBacktestRequest(
        backtest=pb.Backtest(strategy_version=version, config=config())), metadata=caller())
    cancelled = await env.backtest.CancelBacktest(pb.CancelBacktestRequest(name=queued.name),
                                                  metadata=caller())  # by its owner
    assert cancelled.state == common_pb2.JOB_STATE_CANCELLED
    stopped = await env.backtest.CancelSweep(pb.CancelSweepRequest(name=sweep.name),
                                             metadata=caller())
    assert stopped.state == common_pb2.JOB_STATE_CANCELLED
    rest = [e async for e in env.backtest.WatchSweep(pb.WatchSweepRequest(
        name=sweep.name, after_sequence=seen[-1].sequence))]
    assert rest[-1].outcome.result == common_pb2.Outcome.RESULT_CANCELLED
    assert rest[-1].progress.done < 10_000
    # The worker is free again: the next job runs to the end.
    events = await run(env, version)
    assert events[-1].completed.outcome.result == common_pb2.Outcome.RESULT_OK
    watched = [e async for e in env.backtest.WatchBacktest(
        pb.WatchBacktestRequest(name=queued.name))]
    assert watched[-1].completed.outcome.result == common_pb2.Outcome.RESULT_CANCELLED


async def test_sweep_grid_and_walk_forward(env: Any) -> None:
    version = await env.version()
    grid = await env.backtest.CreateSweep(pb.CreateSweepRequest(sweep=pb.Sweep(
        strategy_version=version, config=config(), objective="total_pnl",
        axes=[pb.ParameterAxis(path="entryBps", values=[10, 15, 20]),
              pb.ParameterAxis(path="exitBps", values=[1, 3])])), metadata=caller())
    events = [e async for e in env.backtest.WatchSweep(pb.WatchSweepRequest(name=grid.name))]
    assert events[-1].outcome.result == common_pb2.Outcome.RESULT_OK
    got = await env.backtest.GetSweep(pb.GetSweepRequest(name=grid.name))
    assert len(got.points) == 6
    pnls = [p.metrics.total_pnl for p in got.points]
    assert pnls == sorted(pnls, reverse=True)
    # The best point equals a single backtest with its parameters.
    best = got.points[0].parameters
    single_version = await env.version(version.split("/")[1], entryBps=best["entryBps"],
                                       exitBps=best["exitBps"])
    single = (await run(env, single_version))[-1].completed.result
    assert single.metrics.total_pnl == pytest.approx(pnls[0], rel=1e-9, abs=1e-6)

    wf = await env.backtest.CreateSweep(pb.CreateSweepRequest(sweep=pb.Sweep(
        strategy_version=version, config=config(),
        axes=[pb.ParameterAxis(path="entryBps", values=[10, 20])],
        walk_forward=pb.WalkForwardSpec(
            in_sample=json_format.Parse('"60000s"', __import__(
                "google.protobuf.duration_pb2", fromlist=["Duration"]).Duration()),
            out_of_sample=json_format.Parse('"30000s"', __import__(
                "google.protobuf.duration_pb2", fromlist=["Duration"]).Duration())))),
        metadata=caller())
    events = [e async for e in env.backtest.WatchSweep(pb.WatchSweepRequest(name=wf.name))]
    assert events[-1].outcome.result == common_pb2.Outcome.RESULT_OK
    got = await env.backtest.GetSweep(pb.GetSweepRequest(name=wf.name))
    assert [f.index for f in got.folds] == list(range(1, len(got.folds) + 1))
    assert len(got.folds) >= 2
    f1 = got.folds[0]
    assert f1.in_sample.end_time == f1.out_of_sample.start_time
    assert f1.out_of_sample.end_time.ToMilliseconds() - f1.out_of_sample.start_time.ToMilliseconds() == 30_000_000


async def watch(env: Any, name: str, within_s: float = 60) -> list[pb.BacktestEvent]:
    async def collect() -> list[pb.BacktestEvent]:
        return [e async for e in env.backtest.WatchBacktest(pb.WatchBacktestRequest(name=name))]

    return await asyncio.wait_for(collect(), within_s)


async def ghost_takes(env: Any, version: str, attempts: int) -> str:
    """Queue a job that a worker ("ghost") claims, starts ``attempts`` times and dies."""
    from usdcarb.backtest.convert import lost_worker_error

    job = await env.backtest.CreateBacktest(pb.CreateBacktestRequest(
        backtest=pb.Backtest(strategy_version=version, config=config())), metadata=caller())
    job_id = job.name.split("/")[1]
    entry = await env.components.runner._queue.backtests.claim("ghost-0", block_ms=100)
    assert entry is not None and entry.job_id == job_id
    started, ok = await env.components.runner._store.start_backtest(
        job_id, "ghost-0", 5, lost_worker_error(5, 5))
    assert ok and started.state.value == "JOB_STATE_RUNNING"
    await env.pool.execute("UPDATE backtests SET attempts = $2 WHERE id = $1", job_id, attempts)
    return str(job.name)


async def test_a_job_whose_worker_died_is_rerun_then_failed_after_its_attempts(
        env: Any) -> None:
    version = await env.version()
    await env.components.runner.stop()  # no live worker in replica-1 from here on
    rerun = await ghost_takes(env, version, attempts=1)
    failed = await ghost_takes(env, version, attempts=2)
    got = await env.backtest.GetBacktest(pb.GetBacktestRequest(name=rerun))
    assert got.state == common_pb2.JOB_STATE_RUNNING
    # A new replica (max_attempts 2) reclaims the silent entries after claim_idle_s.
    await env.start_replica("replica-2")
    events = await watch(env, rerun)
    assert events[-1].completed.outcome.result == common_pb2.Outcome.RESULT_OK
    got = await env.backtest.GetBacktest(pb.GetBacktestRequest(name=rerun))
    assert got.attempts == 2 and got.state == common_pb2.JOB_STATE_SUCCEEDED
    events = await watch(env, failed)
    final = events[-1].completed
    assert final.outcome.result == common_pb2.Outcome.RESULT_FAILED
    assert "stopped 2 times" in final.outcome.error.message
    got = await env.backtest.GetBacktest(pb.GetBacktestRequest(name=failed))
    assert got.state == common_pb2.JOB_STATE_FAILED and got.error.message


async def test_a_job_stored_as_succeeded_by_a_worker_that_died_before_publishing_is_announced(
        env: Any) -> None:
    """The worker stored the result, then Redis went away before the last event and the
    domain event went out (issue 19's soak: a lost webhook and SubscribeEvents event).
    The replica that takes the entry over publishes both, with the worker's event key."""
    version = await env.version()
    done = await run(env, version, config())  # a result to store as the ghost's
    await env.components.runner.stop()
    name = await ghost_takes(env, version, attempts=1)
    job_id = name.split("/")[1]
    await env.pool.execute(
        "UPDATE backtests SET state = 'JOB_STATE_SUCCEEDED', end_time = now(), "
        "result = (SELECT result FROM backtests WHERE id = $2) WHERE id = $1",
        job_id, done[-1].backtest.split("/")[1])
    await env.start_replica("replica-2")
    events = await watch(env, name)
    assert events[-1].completed.outcome.result == common_pb2.Outcome.RESULT_OK

    async def announced() -> list[Any]:
        return [f for _, f in await env.redis.xrange(EVENTS)
                if f[b"subject"].decode() == name]

    [event] = await eventually(announced, within_s=60)  # once replica-2 is ready
    assert event[b"type"] == b"EVENT_TYPE_BACKTEST_SUCCEEDED"
    assert event[b"key"].decode() == f"{name}:EVENT_TYPE_BACKTEST_SUCCEEDED"


async def test_two_replicas_share_the_jobs(env: Any) -> None:
    version = await env.version()
    second, _ = await env.start_replica("replica-2")
    await asyncio.wait_for(env.components.runner.ready.wait(), 60)
    await asyncio.wait_for(second.runner.ready.wait(), 60)
    names = []
    for _ in range(6):
        job = await env.backtest.CreateBacktest(pb.CreateBacktestRequest(
            backtest=pb.Backtest(strategy_version=version, config=config())), metadata=caller())
        names.append(job.name)
    for name in names:
        events = [e async for e in env.backtest.WatchBacktest(pb.WatchBacktestRequest(name=name))]
        assert events[-1].completed.outcome.result == common_pb2.Outcome.RESULT_OK
    workers = await env.pool.fetch("SELECT DISTINCT worker FROM backtests")
    assert {w["worker"].rsplit("-", 1)[0] for w in workers} == {"replica-1", "replica-2"}


async def test_assets_need_a_stored_market_pricing_them_in_the_quote_asset(env: Any) -> None:
    """Equity in USD of a USDC/USDT spread needs USDC and USDT priced in USD: refused up
    front, naming both, until such markets are stored; then loaded and used."""
    version = await env.version()
    in_usd = config(quoteAsset="USD")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await run(env, version, in_usd)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    pf = details(err.value, error_details_pb2.PreconditionFailure)[0]
    assert {(v.type, v.subject) for v in pf.violations} == {
        ("PRICING_MARKET", "USDC"), ("PRICING_MARKET", "USDT")}
    assert "USDC/USD or USD/USDC on venuea, venueb" in pf.violations[0].description
    assert await env.pool.fetchval("SELECT count(*) FROM backtests") == 0

    bars = synthetic_pair(3000)["venuea"]  # the minutes the env stored
    async with env.market_pool.acquire() as conn:  # USDC at 1.0 USD; USDT from the pair
        await load_bars(conn, env.market_table, "venuea", "USDC/USD",
                        {**bars, "close": np.ones_like(bars["close"])})
        await load_bars(conn, env.market_table, "venueb", "USD/USDT", bars)
    events = await run(env, version, in_usd)
    done = events[-1].completed
    assert done.outcome.result == common_pb2.Outcome.RESULT_OK
    assert done.result.metrics.total_return != 0
