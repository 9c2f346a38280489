"""Paper trading on the replay server's advancing clock (issue 18), every part real: the
exchange replay server, the ingestion service (ccxt, follow jobs), the strategy service
and the backtest service (paper supervisor) in-process on real PostgreSQL and Redis.

A spread version deployed in PAPER mode and started: the backtest replica asks ingestion
for a follow job per venue; the replay clock advances and 500 new bars arrive on Binance
and Bybit through those jobs; the paper fills and equity equal a backtest of the same
version over the same stored bars, exactly; a follow job that ends on its own is replaced.
Then Bybit stalls while Binance runs on: its bars count as missing (as a backtest's
missing bar) once Binance is ``stale_after_bars`` ahead, and when they arrive late they
are recorded as such (missing at commit, stored after it). Stopping the deployment stops
the runner and cancels the follow jobs (those of a run whose holder died are cancelled by
any replica): nothing asks the exchange anything after that."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from google.protobuf import json_format
from tests.paper.paper_helpers import TRADER, deploy_paper
from tests.paper.test_paper_runner import assert_equal_to_backtest

from testkit import SHARED_DATA, eventually, require_shared_data
from usdcarb.backtest.engine import run_backtest
from usdcarb.backtest.engine.params import required_series
from usdcarb.backtest.loading import load_market
from usdcarb.backtest.paper.book import PaperBook
from usdcarb.backtest.paper.runner import paper_spec
from usdcarb.backtest.service import SERVICE as BACKTEST
from usdcarb.backtest.service import BacktestSettings, Components
from usdcarb.backtest.service import build as build_backtest
from usdcarb.ingestion.main import SERVICE as INGESTION
from usdcarb.ingestion.main import IngestionSettings
from usdcarb.ingestion.main import build as build_ingestion
from usdcarb.platform.redis import create_redis
from usdcarb.platform.testing import DEV_JWKS, DevServiceToken, authed_channel, bearer
from usdcarb.platform.testing import start_in_process as serve
from usdcarb.replay.data import Catalog, load_catalog
from usdcarb.replay.server import ReplayServer
from usdcarb.strategy.main import SERVICE as STRATEGY
from usdcarb.strategy.main import build as build_strategy
from usdcarb.v1 import backtest_pb2 as pb
from usdcarb.v1 import backtest_pb2_grpc, ingestion_pb2_grpc, strategy_pb2_grpc
from usdcarb.v1 import common_pb2 as cpb
from usdcarb.v1 import ingestion_pb2 as ipb
from usdcarb.v1 import strategy_pb2 as spb

pytestmark = pytest.mark.integration

T0 = int(datetime(2023, 3, 10, 12, tzinfo=UTC).timestamp() * 1000)  # Bybit has every bar
BAR = 60_000
STALE = 25   # stale_after_bars; the clock moves by at most this much per step (below)
KIND = "cross-exchange-spread"
PARAMS = {"symbol": "BTC/USDC", "venueA": "binance", "venueB": "bybit", "entryBps": 8,
          "exitBps": 2, "quantity": 0.5}
KEYS = [("binance", "BTC/USDC"), ("bybit", "BTC/USDC")]


def config() -> pb.BacktestConfig:
    venues = [{"venue": v, "takerFeeBps": 1.0, "slippage": {"fixedBps": 0.5},
               "initialBalances": [{"asset": "BTC", "amount": 20},
                                   {"asset": "USDC", "amount": 1_000_000}]}
              for v, _ in KEYS]
    start = datetime.fromtimestamp(T0 / 1000, UTC).isoformat().replace("+00:00", "Z")
    return json_format.ParseDict({"range": {"startTime": start}, "timeframe": "1m",
                                  "venues": venues, "fillPolicy": "FILL_POLICY_NEXT_BAR",
                                  "quoteAsset": "USDC"}, pb.BacktestConfig())


@dataclass
class Mesh:
    replay: ReplayServer
    market: Any          # the ingestion schema's pool
    table: str
    bt_pool: Any
    backtest: Any        # BacktestServiceStub
    strategy: Any        # StrategyServiceStub
    ingestion: Any       # IngestionServiceStub
    paper: Any           # the backtest replica's PaperService
    follower: Any        # the ingestion service's FollowWorker


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    require_shared_data(SHARED_DATA)
    return load_catalog(SHARED_DATA)


@pytest.fixture
async def mesh(service_pool: Any, redis_server: Any, catalog: Catalog) -> AsyncIterator[Mesh]:
    market = await service_pool("ingestion")
    table = f"{await market.fetchval('SELECT current_schema()')}.market_data"
    bt_pool = await service_pool("backtest")
    redis = await create_redis(redis_server.url)
    async with contextlib.AsyncExitStack() as stack:
        replay = await stack.enter_async_context(ReplayServer(catalog, clock_ms=T0))
        ing = build_ingestion(market, IngestionSettings(
            env="test", jwks_file=DEV_JWKS, replay_url=replay.url, rate_limit_scale=0.0,
            lease_s=3.0, poll_s=0.05, retry_base_s=0.01, retry_max_s=0.05, events=False,
            plaintext=True, follow_poll_s=0.05), token=DevServiceToken("ingestion"))
        assert ing.worker is not None and ing.follow_worker is not None
        workers = [asyncio.create_task(w.run()) for w in (ing.worker, ing.follow_worker)]

        async def stop_workers() -> None:
            for w in (ing.follow_worker, ing.worker):
                if w is not None:
                    await w.stop()
            for t in workers:
                t.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

        stack.push_async_callback(stop_workers)
        ing_server = await stack.enter_async_context(await serve([INGESTION], ing.register))
        ss = await stack.enter_async_context(await serve(
            [STRATEGY], build_strategy(await service_pool("strategy"))))
        settings = BacktestSettings(
            env="test", grpc_host="127.0.0.1", grpc_port=0, metrics_port=-1,
            jwks_file=DEV_JWKS, plaintext=True, health_interval_s=0.05, shutdown_grace_s=2.0,
            strategy_address=ss.address, ingestion_address=ing_server.address,
            redis_url=redis_server.url, worker_processes=0, market_table=table,
            redis_prefix=f"test:{uuid.uuid4().hex[:8]}", paper_poll_s=0.05,
            paper_follow_check_s=0.3)
        components: Components = build_backtest(bt_pool, redis, settings,
                                                token=DevServiceToken("backtest"))
        await components.start()
        bt_server = await stack.enter_async_context(await serve(
            [BACKTEST], components.register, settings=settings, on_close=[components.close]))
        bch = await stack.enter_async_context(authed_channel(bt_server.address))
        sch = await stack.enter_async_context(authed_channel(ss.address))
        ich = await stack.enter_async_context(authed_channel(ing_server.address))
        yield Mesh(replay, market, table, bt_pool, backtest_pb2_grpc.BacktestServiceStub(bch),
                   strategy_pb2_grpc.StrategyServiceStub(sch),
                   ingestion_pb2_grpc.IngestionServiceStub(ich), components.paper,
                   ing.follow_worker)
    await redis.aclose()


async def latest_ms(m: Mesh, venue: str) -> int:
    value = await m.market.fetchval(
        "SELECT max(ts) FROM market_data WHERE exchange = $1 AND symbol = 'BTC/USDC'", venue)
    return -1 if value is None else int(value.timestamp() * 1000)


async def advance(m: Mesh, clock_ms: int, *venues: str) -> None:
    """Move the exchange's clock; wait until ``venues`` have every bar closed by then."""
    m.replay.clock_ms = clock_ms

    async def stored() -> bool:
        return all([await latest_ms(m, v) == clock_ms - BAR for v in venues])

    await eventually(stored, within_s=120)


async def run_bars(m: Mesh, dep: str, n: int) -> Any:
    async def reached() -> Any:
        row = await m.bt_pool.fetchrow("SELECT * FROM paper_runs WHERE deployment = $1", dep)
        assert row["state"] == "RUNNING", row["error"]
        return row if row["bars"] == n else None

    row = await eventually(reached, within_s=120)
    await asyncio.sleep(0.3)   # six polls: it does not move past n on its own
    assert await m.bt_pool.fetchval("SELECT bars FROM paper_runs WHERE deployment = $1",
                                    dep) == n
    return row


async def test_paper_deployment_follows_the_replay_clock_and_equals_its_backtest(
        mesh: Mesh) -> None:
    m = mesh
    dep = await deploy_paper(m.strategy, PARAMS)
    run = await m.backtest.StartPaperRun(pb.StartPaperRunRequest(
        name=f"{dep}/paperRun", config=config(), stale_after_bars=STALE), metadata=TRADER)
    assert run.state == pb.PAPER_RUN_STATE_RUNNING

    # The replica holding the run started one follow job per venue, from its first bar.
    async def following() -> Any:
        jobs = await m.paper.list_follow_jobs(dep)
        return jobs if len(jobs) == 2 and all(j.state == "ACTIVE" for j in jobs) else None

    jobs = await eventually(following, within_s=120)
    assert [(j.exchange, j.symbol, j.timeframe) for j in jobs] == [
        (v, s, "1m") for v, s in KEYS]
    for j in jobs:
        got = await m.ingestion.GetIngestJob(ipb.GetIngestJobRequest(name=j.job),
                                             metadata=TRADER)
        assert got.mode == ipb.INGEST_MODE_FOLLOW and got.creator == "service:backtest"
        assert got.range.start_time.ToMilliseconds() == T0
    # A follow job that ends while its run goes on (an admin cancels it) is replaced.
    m.paper.follow_jobs.refollow_s = 0.0
    await m.ingestion.CancelIngestJob(ipb.CancelIngestJobRequest(name=jobs[0].job),
                                      metadata=bearer("root", ("admin",)))

    async def replaced() -> Any:
        jobs = await m.paper.list_follow_jobs(dep)
        return jobs if [(j.exchange, j.generation, j.state) for j in jobs] == [
            ("binance", 1, "ENDED"), ("binance", 2, "ACTIVE"), ("bybit", 1, "ACTIVE")] else None

    jobs = await eventually(replaced, within_s=120)
    assert jobs[0].job_state == "JOB_STATE_CANCELLED" and jobs[1].job != jobs[0].job

    # 500 new bars arrive on both venues as the exchange's clock advances.
    n = 500
    for k in range(1, n // STALE + 1):
        await advance(m, T0 + k * STALE * BAR, "binance", "bybit")
    await run_bars(m, dep, n)
    fills = [tuple(r) for r in await m.bt_pool.fetch(
        """SELECT seq, bar, time_ms, venue, symbol, side, quantity, price, fee, slippage,
                  round_trip, signal_bar FROM paper_fills WHERE deployment = $1 ORDER BY seq""",
        dep)]
    equity = [r["equity"] for r in await m.bt_pool.fetch(
        "SELECT equity FROM paper_bars WHERE deployment = $1 ORDER BY bar", dep)]
    spec = paper_spec(config(), required_series(KIND, PARAMS))
    loaded = await load_market(m.market, KEYS, timeframe="1m", timeframe_ms=BAR, start_ms=T0,
                               end_ms=T0 + n * BAR, table=m.table)
    assert loaded.frame.time_ms[0] == T0 and len(loaded.frame.time_ms) == n
    assert_equal_to_backtest(fills, equity, run_backtest(KIND, PARAMS, spec.engine,
                                                         loaded.frame))

    # Bybit stalls; Binance runs on 40 bars: once it is STALE bars ahead, Bybit's bars
    # count as missing (no signal, no fill), as the backtest treats a missing bar.
    m.replay.set_faults(exchange="bybit", delay_ms=10**9)
    await advance(m, T0 + (n + 40) * BAR, "binance")
    await run_bars(m, dep, n + 40 - STALE)
    m.replay.set_faults()   # ... then Bybit's 40 bars arrive, late
    await advance(m, T0 + (n + 40) * BAR, "bybit")
    row = await run_bars(m, dep, n + 40)
    assert row["late_bars"] == 40 - STALE
    seen = await m.bt_pool.fetch(
        """SELECT bar, time_ms, closes, volumes, missing, equity, commit_time FROM paper_bars
           WHERE deployment = $1 ORDER BY bar""", dep)
    late = [r for r in seen if r["missing"]]
    assert [r["bar"] for r in late] == list(range(n, n + 40 - STALE))
    assert all(r["missing"] == ["bybit:BTC/USDC"] and np.isnan(r["closes"][1]) for r in late)
    # The record a divergence report reads: missing when committed, stored after that.
    arrived = {int(r["t"]): r["ingest_time"] for r in await m.market.fetch(
        """SELECT (extract(epoch FROM ts) * 1000)::bigint AS t, ingest_time FROM market_data
           WHERE exchange = 'bybit' AND ts >= $1""",
        datetime.fromtimestamp((T0 + n * BAR) / 1000, UTC))}
    assert all(arrived[r["time_ms"]] > r["commit_time"] for r in late)
    # The run's result is the backtest of the bars as it saw them, late ones missing.
    book = PaperBook(KIND, PARAMS, spec.engine, KEYS)
    frame = book.frame(np.array([r["time_ms"] for r in seen], np.int64),
                       np.ascontiguousarray(np.array([r["closes"] for r in seen]).T),
                       np.ascontiguousarray(np.array([r["volumes"] for r in seen]).T))
    assert [r["equity"] for r in seen] == list(run_backtest(KIND, PARAMS, spec.engine,
                                                            frame).equity)
    # The divergence report names exactly the fills the late bars changed: the paper
    # fills the backtest of the bars stored now lacks, and the reverse (paper-track).
    got = await m.backtest.GetPaperDivergence(pb.GetPaperDivergenceRequest(
        name=f"{dep}/paperDivergence", page_size=10_000), metadata=TRADER)
    assert (got.bars, got.late_bars, got.gap_bars) == (n + 40, 40 - STALE, 0)
    stored = await load_market(m.market, KEYS, timeframe="1m", timeframe_ms=BAR,
                               start_ms=T0, end_ms=T0 + (n + 40) * BAR, table=m.table)
    tr = run_backtest(KIND, PARAMS, spec.engine, stored.frame).trades
    back = Counter((T0 + int(tr.bar[k]) * BAR, tr.venue[k], int(tr.side[k]),
                    float(tr.quantity[k]), float(tr.price[k])) for k in range(len(tr)))
    paper = Counter((int(r["time_ms"]), r["venue"], int(r["side"]), r["quantity"], r["price"])
                    for r in await m.bt_pool.fetch(
                        "SELECT * FROM paper_fills WHERE deployment = $1", dep))

    def named(t: Any) -> tuple[Any, ...]:
        return (t.time.ToMilliseconds(), t.venue, 1 if t.side == pb.SIDE_BUY else -1,
                t.quantity, t.price)

    assert Counter(named(d.paper) for d in got.differences if d.HasField("paper")) == (
        paper - back)
    assert Counter(named(d.backtest) for d in got.differences
                   if d.HasField("backtest")) == back - paper
    assert got.differing_fills == len(got.differences)
    if got.differences:
        first = got.differences[0]
        assert first.reason == pb.DIVERGENCE_REASON_LATE_BAR
        assert list(first.cause_markets) == ["bybit:BTC/USDC"]
        assert T0 + n * BAR <= first.cause_time.ToMilliseconds() < T0 + (n + 40) * BAR

    # Stopping the deployment stops the runner and cancels the follow jobs.
    await m.strategy.StopDeployment(spb.StopDeploymentRequest(name=dep, reason="done"),
                                    metadata=TRADER)

    async def stopped() -> bool:
        jobs = await m.paper.list_follow_jobs(dep)
        state = await m.bt_pool.fetchval(
            "SELECT state FROM paper_runs WHERE deployment = $1", dep)
        return (state == "STOPPED" and not m.paper.following()
                and [j.state for j in jobs] == ["ENDED", "STOPPED", "STOPPED"]
                and not m.follower.running())

    await eventually(stopped, within_s=120)
    for j in await m.paper.list_follow_jobs(dep):
        got = await m.ingestion.GetIngestJob(ipb.GetIngestJobRequest(name=j.job),
                                             metadata=TRADER)
        assert got.state == cpb.JOB_STATE_CANCELLED

    # A run whose holder died: once it is stopped, any replica cancels its follow jobs.
    orphan = f"{dep}-orphan"
    assert await m.paper.runner.create(
        deployment=orphan, strategy_version="strategies/x/versions/v1", kind=KIND,
        params=PARAMS, config=config(), keys=KEYS, stale_after_bars=STALE)
    await m.bt_pool.execute("UPDATE paper_runs SET lease_owner = 'gone', lease_until = "
                            "now() + interval '1 hour' WHERE deployment = $1", orphan)
    assert len(await m.paper.follow_jobs.ensure(orphan)) == 2   # as its holder did
    await m.bt_pool.execute("UPDATE paper_runs SET state = 'STOPPED' WHERE deployment = $1",
                            orphan)

    async def orphans_cancelled() -> bool:
        jobs = await m.paper.list_follow_jobs(orphan)
        return [j.state for j in jobs] == ["STOPPED", "STOPPED"] and not m.follower.running()

    await eventually(orphans_cancelled, within_s=120)
    for j in await m.paper.list_follow_jobs(orphan):
        assert j.job_state == "JOB_STATE_CANCELLED"
    before = dict(m.replay.stats.requests)
    m.replay.clock_ms = T0 + (n + 60) * BAR
    await asyncio.sleep(0.5)   # ten follow polls
    assert dict(m.replay.stats.requests) == before
    assert await latest_ms(m, "binance") == T0 + (n + 39) * BAR
