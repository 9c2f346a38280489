"""Redis SIGKILLed while backtest jobs are queued: no acknowledged job is lost.

The backtest service runs in-process against real PostgreSQL and a Redis of this test's
own (AOF, fsync every second). A caller keeps creating backtests while Redis is killed
and restarted; every CreateBacktest that answered OK must still be queued after the
restart, and a worker started afterwards runs each of them to success.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from backtest.service.bt_helpers import (
    START_MS,
    SYMBOL,
    VENUES,
    caller,
    config_json,
    load_bars,
    spread_params,
    synthetic_pair,
)
from testkit import eventually
from usdcarb.backtest.model import JobState
from usdcarb.backtest.service import SERVICE, BacktestSettings, build
from usdcarb.devstack import RedisServer, scratch_dir
from usdcarb.platform.redis import create_redis
from usdcarb.platform.testing import DEV_JWKS, DevServiceToken, authed_channel, start_in_process
from usdcarb.strategy.main import SERVICE as STRATEGY_SERVICE
from usdcarb.strategy.main import build as build_strategy
from usdcarb.v1 import backtest_pb2 as pb
from usdcarb.v1 import backtest_pb2_grpc, strategy_pb2_grpc
from usdcarb.v1 import strategy_pb2 as spb

pytestmark = pytest.mark.integration

BARS = 600


@pytest.fixture
async def own_redis() -> AsyncIterator[RedisServer]:
    root = scratch_dir("usdcarb-dbops-redis-")
    server = RedisServer(root / "redis")
    server.start()
    try:
        yield server
    finally:
        if server.is_running():
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


async def test_sigkilled_redis_loses_no_acknowledged_backtest(
        service_pool: Any, own_redis: RedisServer) -> None:
    market = await service_pool("ingestion")
    table = f"{await market.fetchval('SELECT current_schema()')}.market_data"
    bars = synthetic_pair(BARS)
    async with market.acquire() as conn:
        for venue in VENUES:
            await load_bars(conn, table, venue, SYMBOL, bars[venue])
    pool = await service_pool("backtest")
    redis = await create_redis(own_redis.url)
    prefix = f"test:{uuid.uuid4().hex[:8]}"
    cfg = json_format.ParseDict(config_json(START_MS, START_MS + BARS * 60_000),
                                pb.BacktestConfig())
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(redis.aclose)
        ss = await stack.enter_async_context(
            await start_in_process([STRATEGY_SERVICE], build_strategy(await service_pool(
                "strategy"))))
        settings = BacktestSettings(
            env="test", metrics_port=-1, jwks_file=DEV_JWKS, plaintext=True,
            health_interval_s=0.05, shutdown_grace_s=2.0, strategy_address=ss.address,
            redis_url=own_redis.url, worker_processes=0,  # API only: jobs stay queued
            market_table=table, redis_prefix=prefix, claim_idle_s=2.0, max_attempts=2,
            progress_interval_s=0.0)
        api = build(pool, redis, settings, worker_name="api", token=DevServiceToken("backtest"))
        await api.start()
        server = await stack.enter_async_context(await start_in_process(
            [SERVICE], api.register, settings=settings, on_close=[api.close]))
        channel = await stack.enter_async_context(authed_channel(server.address))
        backtests = backtest_pb2_grpc.BacktestServiceStub(channel)
        strategy_channel = await stack.enter_async_context(authed_channel(ss.address))
        await strategy_pb2_grpc.StrategyServiceStub(strategy_channel).CreateStrategy(
            spb.CreateStrategyRequest(strategy_id="redis-crash", strategy=spb.Strategy(
                display_name="spread", kind=spb.STRATEGY_KIND_CROSS_EXCHANGE_SPREAD)),
            metadata=caller())
        version = await strategy_pb2_grpc.StrategyServiceStub(
            strategy_channel).CreateStrategyVersion(spb.CreateStrategyVersionRequest(
                parent="strategies/redis-crash", version=spb.StrategyVersion(
                    parameters=json_format.ParseDict(spread_params(),
                                                     spb.StrategyParameters()))),
                metadata=caller())

        acked: list[str] = []
        refused: list[grpc.StatusCode] = []
        stop = asyncio.Event()

        async def create_until_stopped() -> None:
            while not stop.is_set():
                try:
                    job = await backtests.CreateBacktest(pb.CreateBacktestRequest(
                        backtest=pb.Backtest(strategy_version=version.name, config=cfg)),
                        metadata=caller(), timeout=15)
                    acked.append(job.name.rsplit("/", 1)[1])
                except grpc.aio.AioRpcError as exc:  # refused while Redis is down: not acked
                    refused.append(exc.code())
                    await asyncio.sleep(0.02)

        creator = asyncio.create_task(create_until_stopped())
        try:
            await eventually(lambda: len(acked) >= 5, within_s=60)
            own_redis.kill()  # mid-stream: the creator keeps calling
            await asyncio.sleep(0.3)
            own_redis.start()  # same port, AOF replayed
            killed_at = len(acked)
            await eventually(lambda: len(acked) >= killed_at + 5, within_s=60)
        finally:
            stop.set()
            await creator

        # Every acknowledged job is still waiting in the queue's stream...
        queued = {fields[b"id"].decode() for _id, fields in
                  await redis.xrange(api.runner._queue.backtests.stream)}
        assert set(acked) <= queued, f"lost: {sorted(set(acked) - queued)}"
        assert all(code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL,
                            grpc.StatusCode.DEADLINE_EXCEEDED) for code in refused), refused

        # ...and a worker started now runs each to success.
        worker = build(pool, redis, settings.model_copy(update={"worker_processes": 1}),
                       worker_name="worker", token=DevServiceToken("backtest"))
        await worker.start()
        stack.push_async_callback(worker.close)

        async def all_done() -> bool:
            states = [s for (s,) in await pool.fetch(
                "SELECT state FROM backtests WHERE id = ANY($1::text[])", acked)]
            return len(states) == len(acked) and all(
                s == JobState.SUCCEEDED for s in states)

        await eventually(all_done, within_s=120)
