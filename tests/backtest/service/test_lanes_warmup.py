"""No compile on the request path, and lanes: a replica on a fresh numba cache reports
NOT_SERVING until its engine process has compiled, then runs the first backtest of every
kind in seconds with no compile in its engine time; a single backtest runs while a
2,000-point sweep runs; a sweep cancelled half-way keeps the points it finished.

Bound of the fresh-cache test: a cold compile of every kernel takes 1.5-2.5 min on two
busy cores, too long for the suite. The kernels take one type for every kind, fill and
series count, so the test copies the warmed cache and deletes ``legs.simulate`` (the entry
every single backtest calls; numba caches a caller with its callees compiled in, so
deleting a callee such as ``run_range`` alone compiles nothing): the replica must compile
it (seconds) and save it before SERVING, and each kind's first backtest then proves it
needs nothing more.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc

from backtest.service.bt_helpers import (
    START_MS,
    VENUES,
    caller,
    config_json,
    load_bars,
    synthetic_pair,
)
from backtest.service.conftest import BARS
from usdcarb.backtest.engine import _cache
from usdcarb.backtest.service import SERVICE
from usdcarb.platform.testing import authed_channel
from usdcarb.v1 import backtest_pb2 as pb
from usdcarb.v1 import common_pb2
from usdcarb.v1 import strategy_pb2 as spb

pytestmark = pytest.mark.integration

END_MS = START_MS + BARS * 60_000


def _config(start_ms: int = START_MS, end_ms: int = END_MS, **kw: Any) -> pb.BacktestConfig:
    cfg = config_json(start_ms, end_ms, **kw)
    cfg["venues"][0]["initialBalances"].append({"asset": "BTC", "amount": 10})
    return json_format.ParseDict(cfg, pb.BacktestConfig())


async def _version(env: Any, kind: str, params: dict[str, Any]) -> str:
    sid = f"{kind.lower().replace('_', '-')[14:]}-{time.monotonic_ns() % 10**9}"
    await env.strategy.CreateStrategy(spb.CreateStrategyRequest(
        strategy_id=sid, strategy=spb.Strategy(display_name=sid, kind=kind)),
        metadata=caller())
    v = await env.strategy.CreateStrategyVersion(spb.CreateStrategyVersionRequest(
        parent=f"strategies/{sid}", version=spb.StrategyVersion(
            parameters=json_format.ParseDict(params, spb.StrategyParameters()))),
        metadata=caller())
    return str(v.name)


async def _finish(env: Any, name: str) -> pb.BacktestEvent:
    async for event in env.backtest.WatchBacktest(pb.WatchBacktestRequest(name=name),
                                                  metadata=caller()):
        if event.HasField("completed"):
            return event
    raise AssertionError(f"{name}: stream ended without its last event")


async def _health(address: str) -> int:
    async with authed_channel(address) as ch:
        reply = await health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service=SERVICE))
        return int(reply.status)


async def test_fresh_cache_replica_is_not_serving_until_warm_then_every_kind_is_fast(
        env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Triangular needs a loop: BTC/USDT and BTC/USDC beside USDC/USDT on venue A.
    bars = synthetic_pair(BARS, seed=5)[VENUES[0]]
    async with env.market_pool.acquire() as conn:
        for symbol, scale in (("BTC/USDT", 30_000.0), ("BTC/USDC", 30_010.0)):
            await load_bars(conn, env.market_table, VENUES[0], symbol,
                            {**bars, "close": bars["close"] * scale})
    kinds = {
        "spread": await _version(env, "STRATEGY_KIND_CROSS_EXCHANGE_SPREAD", {
            "crossExchangeSpread": {"symbol": "USDC/USDT", "venueA": VENUES[0],
                                    "venueB": VENUES[1], "entryBps": 15, "exitBps": 3,
                                    "quantity": 10_000}}),
        "peg": await _version(env, "STRATEGY_KIND_PEG_REVERSION", {
            "pegReversion": {"symbol": "USDC/USDT", "venue": VENUES[0], "entryBps": 10,
                             "exitBps": 2, "quantity": 10_000}}),
        "triangular": await _version(env, "STRATEGY_KIND_TRIANGULAR", {
            "triangular": {"venue": VENUES[0], "symbols": ["BTC/USDT", "BTC/USDC",
                                                           "USDC/USDT"],
                           "minEdgeBps": 1, "notional": 1_000}}),
    }
    # Only the fresh replica runs jobs from here on.
    await env.components.runner.stop()
    cache = tmp_path / "numba"
    shutil.copytree(_cache.CACHE_DIR, cache, dirs_exist_ok=True)
    removed = [p for p in cache.rglob("legs.simulate-*")]
    for p in removed:
        p.unlink()
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(cache))   # the engine process inherits it
    started = time.monotonic()
    # spawn: this process's forkserver (started by the fixture's replica) keeps the
    # environment it started with, not this cache
    components, server = await env.start_replica("fresh", worker_processes=1,
                                                 engine_start="spawn")
    assert await _health(server.address) == health_pb2.HealthCheckResponse.NOT_SERVING
    # A job created while the engine compiles is told so, and waits for it.
    early = await env.backtest.CreateBacktest(pb.CreateBacktestRequest(backtest=pb.Backtest(
        strategy_version=kinds["spread"], config=_config())), metadata=caller())
    first = await _first(env, early.name)
    assert first.state == common_pb2.JOB_STATE_QUEUED
    assert first.progress.queue.warming_up and "warming up" in first.progress.progress.message
    while await _health(server.address) != health_pb2.HealthCheckResponse.SERVING:
        assert time.monotonic() - started < 600, "engine not warm after 10 minutes"
        await asyncio.sleep(0.1)
    assert components.runner.ready.is_set()
    warm_s = time.monotonic() - started
    assert sorted(cache.rglob("legs.simulate-*")), "the replica did not compile simulate"
    done = await _finish(env, early.name)
    assert done.completed.outcome.result == common_pb2.Outcome.RESULT_OK
    assert done.completed.result.elapsed.ToNanoseconds() < 1e9   # no compile in engine time
    for kind, version in kinds.items():
        created = time.monotonic()
        job = await env.backtest.CreateBacktest(pb.CreateBacktestRequest(
            backtest=pb.Backtest(strategy_version=version, config=_config())),
            metadata=caller())
        queued = await _first(env, job.name)
        assert not queued.progress.queue.warming_up, kind
        last = await _finish(env, job.name)
        took = time.monotonic() - created
        assert last.completed.outcome.result == common_pb2.Outcome.RESULT_OK, (kind, last)
        assert last.completed.result.bars == BARS
        assert last.completed.result.elapsed.ToNanoseconds() < 1e9, kind
        assert took < 5.0, f"first {kind} backtest took {took:.1f} s after warm-up"
    assert warm_s > 0 and removed, "the copied cache held legs.simulate"


async def _first(env: Any, name: str) -> pb.BacktestEvent:
    async for event in env.backtest.WatchBacktest(pb.WatchBacktestRequest(name=name),
                                                  metadata=caller()):
        return event
    raise AssertionError(f"{name}: no event")


async def test_a_backtest_runs_beside_a_2000_point_sweep_and_a_cancelled_sweep_keeps_points(
        env: Any) -> None:
    await env.components.runner.stop()
    components, _server = await env.start_replica("lanes", worker_processes=2)
    await asyncio.wait_for(components.runner.ready.wait(), 300)
    # A long market for the sweep, after the fixture's bars.
    n = 300_000
    start = END_MS
    longer = synthetic_pair(n, seed=11, start_ms=start)
    async with env.market_pool.acquire() as conn:
        for venue in VENUES:
            await load_bars(conn, env.market_table, venue, "USDC/USDT", longer[venue])
    version = await env.version()
    entry = [float(x) for x in range(30, 70)]                  # 40 values
    exit_ = [0.25 * k for k in range(50)]                      # 50 values, < 15
    sweep = await env.backtest.CreateSweep(pb.CreateSweepRequest(sweep=pb.Sweep(
        strategy_version=version, config=_config(start, start + n * 60_000),
        axes=[pb.ParameterAxis(path="entryBps", values=entry),
              pb.ParameterAxis(path="exitBps", values=exit_)])), metadata=caller())
    running = None
    async for event in env.backtest.WatchSweep(pb.WatchSweepRequest(name=sweep.name),
                                               metadata=caller()):
        if event.state == common_pb2.JOB_STATE_QUEUED:
            assert event.HasField("queue") and "sweep lane" in event.progress.message
        if event.state == common_pb2.JOB_STATE_RUNNING and event.progress.done > 0:
            running = event
            break
    assert running is not None and running.progress.total == 2000
    created = time.monotonic()
    job = await env.backtest.CreateBacktest(pb.CreateBacktestRequest(
        backtest=pb.Backtest(strategy_version=version, config=_config())), metadata=caller())
    last = await _finish(env, job.name)
    took = time.monotonic() - created
    assert last.completed.outcome.result == common_pb2.Outcome.RESULT_OK
    during = await env.backtest.GetSweep(pb.GetSweepRequest(name=sweep.name))
    assert during.state == common_pb2.JOB_STATE_RUNNING, (
        f"the backtest ({took:.1f} s) should finish while the sweep still runs")
    # Cancel half-way: the finished points stay, ranked, on the sweep.
    await env.backtest.CancelSweep(pb.CancelSweepRequest(name=sweep.name), metadata=caller())
    ended = None
    async for event in env.backtest.WatchSweep(pb.WatchSweepRequest(
            name=sweep.name, after_sequence=running.sequence), metadata=caller()):
        ended = event
    assert ended is not None and ended.outcome.result == common_pb2.Outcome.RESULT_CANCELLED
    got = await env.backtest.GetSweep(pb.GetSweepRequest(name=sweep.name))
    assert got.state == common_pb2.JOB_STATE_CANCELLED
    kept = list(got.points)
    assert running.progress.done <= len(kept) < 2000
    grid = {(e, x) for e in entry for x in exit_}
    pairs = [(p.parameters["entryBps"], p.parameters["exitBps"]) for p in kept]
    assert len(set(pairs)) == len(pairs) and set(pairs) <= grid
    sharpe = [p.metrics.sharpe for p in kept if p.metrics.sharpe == p.metrics.sharpe]
    assert sharpe == sorted(sharpe, reverse=True)
