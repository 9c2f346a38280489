"""Fixtures: the backtest service in-process against real PostgreSQL, Redis and an
in-process StrategyService, with synthetic market data in its own schema."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from backtest.service.bt_helpers import (
    SYMBOL,
    VENUES,
    caller,
    load_bars,
    spread_params,
    synthetic_pair,
)
from usdcarb.backtest.service import SERVICE, BacktestSettings, Components, build
from usdcarb.platform.redis import create_redis
from usdcarb.platform.testing import (
    DEV_JWKS,
    DevServiceToken,
    InProcessServer,
    authed_channel,
    start_in_process,
)
from usdcarb.strategy.main import SERVICE as STRATEGY_SERVICE
from usdcarb.strategy.main import build as build_strategy
from usdcarb.v1 import backtest_pb2_grpc, strategy_pb2_grpc
from usdcarb.v1 import strategy_pb2 as spb

BARS = 3000


@dataclass
class Env:
    """Everything a backtest service test talks to."""

    backtest: Any  # BacktestServiceStub
    strategy: Any  # StrategyServiceStub
    pool: Any  # backtest schema pool
    market_pool: Any
    market_table: str
    redis: Any
    settings: BacktestSettings
    components: Components
    server: InProcessServer
    start_replica: Callable[..., Awaitable[tuple[Components, InProcessServer]]]

    async def version(self, sid: str | None = None, **overrides: Any) -> str:
        """Create a cross-exchange-spread strategy and a version; return the version name."""
        sid = sid or f"s-{uuid.uuid4().hex[:8]}"
        try:
            await self.strategy.CreateStrategy(spb.CreateStrategyRequest(
                strategy_id=sid, strategy=spb.Strategy(
                    display_name="spread", kind=spb.STRATEGY_KIND_CROSS_EXCHANGE_SPREAD)),
                metadata=caller())
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
        v = await self.strategy.CreateStrategyVersion(spb.CreateStrategyVersionRequest(
            parent=f"strategies/{sid}", version=spb.StrategyVersion(
                parameters=json_format.ParseDict(spread_params(**overrides),
                                                 spb.StrategyParameters()))),
            metadata=caller())
        return str(v.name)


@pytest.fixture
async def env(service_pool: Any, redis_server: Any) -> AsyncIterator[Env]:
    market_pool = await service_pool("ingestion")
    schema = await market_pool.fetchval("SELECT current_schema()")
    table = f"{schema}.market_data"
    bars = synthetic_pair(BARS)
    async with market_pool.acquire() as conn:
        for venue in VENUES:
            await load_bars(conn, table, venue, SYMBOL, bars[venue])
    pool = await service_pool("backtest")
    strategy_pool = await service_pool("strategy")
    redis = await create_redis(redis_server.url)
    prefix = f"test:{uuid.uuid4().hex[:8]}"
    started: list[tuple[Components, InProcessServer]] = []
    async with await start_in_process([STRATEGY_SERVICE], build_strategy(strategy_pool)) as ss:
        settings = BacktestSettings(
            env="test", grpc_host="127.0.0.1", grpc_port=0, metrics_port=-1, jwks_file=DEV_JWKS,
            plaintext=True,  # an in-process test server, and its channel to strategy
            health_interval_s=0.05, shutdown_grace_s=2.0, strategy_address=ss.address,
            redis_url=redis_server.url, worker_processes=1, market_table=table,
            redis_prefix=prefix, claim_idle_s=2.0, max_attempts=2, progress_interval_s=0.0)

        async def start_replica(name: str | None = None,
                                **overrides: Any) -> tuple[Components, InProcessServer]:
            s = settings.model_copy(update=overrides)
            components = build(pool, redis, s, worker_name=name,
                               token=DevServiceToken("backtest"))
            await components.start()
            server = await start_in_process(
                [SERVICE], components.register, settings=s, on_close=[components.close],
                health_checks={"engine": components.runner.ready_check})
            started.append((components, server))
            return components, server

        components, server = await start_replica("replica-1")
        try:
            async with authed_channel(server.address) as ch, \
                    authed_channel(ss.address) as sch:
                yield Env(backtest=backtest_pb2_grpc.BacktestServiceStub(ch),
                          strategy=strategy_pb2_grpc.StrategyServiceStub(sch), pool=pool,
                          market_pool=market_pool, market_table=table, redis=redis,
                          settings=settings, components=components, server=server,
                          start_replica=start_replica)
        finally:
            for _, srv in reversed(started):
                await srv.stop(0)
            await redis.aclose()
