"""Composition root of the backtest service (``python -m usdcarb.backtest.main`` runs it).

Builds the pool (schema ``backtest``, migrated at start-up), the Redis client, the
strategy service client, the job queue and this replica's worker slots, then serves
until SIGTERM. On shutdown the slots stop taking jobs and their child processes end;
a job that was running stays pending in the queue and another replica re-runs it.
Not in ``main``: multiprocessing runs the main module again in every engine process, so
that one imports nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from usdcarb.backtest.app import AppSettings, BacktestApp
from usdcarb.backtest.engine_server import StartMethod
from usdcarb.backtest.ingestion_client import IngestionClient
from usdcarb.backtest.jobs import GROUP, JobQueue, Lanes
from usdcarb.backtest.lanes import LaneInfo
from usdcarb.backtest.loading import check_table
from usdcarb.backtest.paper.follow import FollowJobs
from usdcarb.backtest.paper.service import PaperService
from usdcarb.backtest.progress import Channels, ProgressBus
from usdcarb.backtest.runner import Runner, RunnerSettings
from usdcarb.backtest.servicer import BacktestServicer
from usdcarb.backtest.store import BacktestStore
from usdcarb.backtest.strategy_client import StrategyClient
from usdcarb.backtest.telemetry import BacktestTelemetry
from usdcarb.platform.db import create_pool, postgres_check
from usdcarb.platform.migrations import apply_migrations
from usdcarb.platform.redis import create_redis, redis_check
from usdcarb.platform.replica import ReadRouter, ReplicaCollector, service_read_router
from usdcarb.platform.server import Register, run_service
from usdcarb.platform.service_auth import TokenSource, service_token
from usdcarb.platform.settings import PlatformSettings, service_config
from usdcarb.platform.telemetry import domain_registry, instrument_pool, instrument_redis
from usdcarb.platform.tls import peer_channel
from usdcarb.v1 import backtest_pb2_grpc

SERVICE = "usdcarb.v1.BacktestService"
SERVICE_NAME = "backtest"  # its principal: service:backtest
SCHEMA = "backtest"
MIGRATIONS = Path(__file__).with_name("migrations")


class BacktestSettings(PlatformSettings):
    """Settings of the backtest service (environment variables USDCARB_BACKTEST_*)."""

    model_config = service_config("USDCARB_BACKTEST_")

    strategy_address: str = Field(
        default="127.0.0.1:50053", description="host:port of the StrategyService.")
    ingestion_address: str = Field(
        default="", description="host:port of the IngestionService, which paper runs ask "
        "for a follow job per market; empty = no follow jobs (a paper run then follows "
        "whatever bars are stored).")
    worker_processes: int = Field(
        default_factory=lambda: min(2, os.cpu_count() or 1), ge=0, le=64,
        description="Engine processes (concurrent jobs) of a replica; default 2 where the "
        "machine has two cores (one then serves only backtests, so none waits behind a "
        "sweep), else 1.")
    engine_start: StartMethod = Field(
        default="forkserver", description="How engine processes start: forked from a "
        "server that loaded the engine at the service's start (forkserver: a slot is ready "
        "~0.1 s after it), or as new interpreters that load it each (spawn).")
    max_attempts: int = Field(
        default=3, ge=1, description="Runs of a job whose worker died before it is FAILED.")
    claim_idle_s: float = Field(
        default=15.0, gt=0, description="Seconds a job's entry may go without a heartbeat "
        "before another worker reclaims it.")
    market_table: str = Field(
        default="ingestion.market_data", description="Hypertable the candles are read from.")
    redis_prefix: str = Field(
        default="usdcarb:backtest", description="Prefix of the Redis keys (jobs stream, "
        "progress streams, cancel keys).")
    max_bars: int = Field(default=20_000_000, ge=1, description="Most bars one run may span.")
    max_sweep_points: int = Field(default=10_000, ge=1,
                                  description="Most parameter combinations of one sweep.")
    sweep_chunk_points: int = Field(
        default=250, ge=0, le=100_000, description="Grid sweeps of more combinations run "
        "in chunks of this many, which any slot of any replica takes (0: never split).")
    progress_interval_s: float = Field(
        default=0.1, ge=0, description="Least seconds between progress events a run emits.")
    paper_lease_s: float = Field(
        default=15.0, gt=0, description="Seconds a replica holds a paper run without "
        "renewing before another replica takes it over.")
    paper_poll_s: float = Field(
        default=0.25, gt=0, description="Seconds between looks for new bars of a paper run.")
    paper_follow_check_s: float = Field(
        default=5.0, gt=0, description="Seconds between checks of a paper run's ingestion "
        "follow jobs (started when missing, replaced when one ended, cancelled once the "
        "run stopped).")
    paper_divergence_check_s: float = Field(
        default=5.0, gt=0, description="Seconds between comparisons of a paper run that has "
        "a divergence bound with the backtest of its bars (when new bars were committed).")
    market_memo_mb: int = Field(
        default=256, ge=0, le=65_536, description="Megabytes of market data blocks a "
        "replica keeps in memory between runs, each used only while its block is current "
        "(16 bytes a bar; 0: none).")


@dataclass
class Components:
    """What ``build`` wired: the servicer registration and the lifecycle of the workers."""

    register: Register
    app: BacktestApp
    runner: Runner
    strategy: StrategyClient
    telemetry: BacktestTelemetry
    paper: PaperService
    ingestion: IngestionClient | None = None

    async def start(self) -> None:
        await self.runner.start()
        self.telemetry.sampler.start()
        self.paper.start()

    async def close(self) -> None:
        await self.paper.close()
        await self.telemetry.sampler.stop()
        await self.runner.stop()
        if self.ingestion is not None:
            await self.ingestion.close()
        await self.strategy.close()


def build(pool: Any, redis: Any, settings: BacktestSettings, *,
          worker_name: str | None = None, token: TokenSource | None = None,
          reads: ReadRouter | None = None) -> Components:
    """Wire the store, queue, progress bus, strategy client, app, runner and servicer.

    ``token`` (default: this service's token from identity) authenticates the calls to
    the strategy service.
    """
    check_table(settings.market_table)
    store = BacktestStore(pool)
    channels = Channels(prefix=settings.redis_prefix)
    bus = ProgressBus(redis, channels)
    idle_ms = int(settings.claim_idle_s * 1000)
    queue = Lanes(backtests=JobQueue(redis, channels.jobs, group=GROUP, claim_idle_ms=idle_ms),
                  sweeps=JobQueue(redis, channels.sweeps, group=GROUP, claim_idle_ms=idle_ms))
    lanes = LaneInfo(redis, channels)
    token = token or service_token(settings, SERVICE_NAME)
    strategy = StrategyClient(peer_channel(settings, settings.strategy_address, "strategy"),
                              token)
    ingestion = None
    if settings.ingestion_address:   # the same token source (closed with the strategy's)
        ingestion = IngestionClient(
            peer_channel(settings, settings.ingestion_address, "ingestion"), token)
    runner = Runner(store=store, bus=bus, queue=queue, lanes=lanes, strategy=strategy,
                    redis=redis, reads=reads,
                    name=worker_name, settings=RunnerSettings(
                        processes=settings.worker_processes, max_attempts=settings.max_attempts,
                        market_table=settings.market_table, redis_url=settings.redis_url,
                        progress_interval_s=settings.progress_interval_s,
                        heartbeat_s=max(0.2, settings.claim_idle_s / 4),
                        max_bars=settings.max_bars, chunk_points=settings.sweep_chunk_points,
                        market_memo_mb=settings.market_memo_mb,
                        engine_start=settings.engine_start))
    app = BacktestApp(store=store, bus=bus, queue=queue, lanes=lanes, strategy=strategy,
                      settings=AppSettings(market_table=settings.market_table,
                                           max_bars=settings.max_bars,
                                           max_sweep_points=settings.max_sweep_points,
                                           backtest_slots=max(1, runner.backtest_slots),
                                           sweep_slots=runner.sweep_slots))
    paper = PaperService(pool, strategy, market_table=settings.market_table, reads=reads,
                         replica=runner.name, lease_s=settings.paper_lease_s,
                         poll_s=settings.paper_poll_s, redis=redis,
                         follow_jobs=None if ingestion is None else FollowJobs(pool, ingestion),
                         follow_check_s=settings.paper_follow_check_s,
                         divergence_check_s=settings.paper_divergence_check_s)
    servicer = BacktestServicer(app, paper)
    registry = domain_registry()  # served beside the gRPC metrics (serve: collectors)
    instrument_pool(pool, registry)
    instrument_redis(redis, registry)
    telemetry = BacktestTelemetry(registry, runner=runner, redis=redis, pool=pool,
                                  streams={"backtests": channels.jobs, "sweeps": channels.sweeps})
    return Components(
        register=lambda server: backtest_pb2_grpc.add_BacktestServiceServicer_to_server(  # type: ignore[no-untyped-call]
            servicer, server),
        app=app, runner=runner, strategy=strategy, telemetry=telemetry, paper=paper,
        ingestion=ingestion)


async def serve(settings: BacktestSettings) -> None:
    pool = await create_pool(settings.database_url.get_secret_value(), settings.db_pool_min,
                             settings.db_pool_max, search_path=f"{SCHEMA}, public")
    try:
        await apply_migrations(pool, SCHEMA, MIGRATIONS)
        reads = await service_read_router(settings, pool, search_path=f"{SCHEMA}, public")
        redis = await create_redis(settings.redis_url)
    except BaseException:
        await pool.close()
        raise
    components = build(pool, redis, settings, reads=reads)
    await components.start()
    await run_service(
        [SERVICE], components.register, settings,
        # "engine": NOT_SERVING until every engine process has loaded (or, on a cold
        # cache, compiled) its kernels, so no request waits on a compile.
        health_checks={"postgres": postgres_check(pool), "redis": redis_check(redis),
                       "engine": components.runner.ready_check},
        on_close=[pool.close, reads.close, redis.aclose, components.close],
        collectors=[ReplicaCollector(reads), components.telemetry.registry],
        recheck_on=[components.runner.ready.wait])   # SERVING as soon as they are
