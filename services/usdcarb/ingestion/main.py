"""Composition root of the ingestion service: ``python -m usdcarb.ingestion.main``.

Builds the pool (schema ``ingestion``, migrated), the Redis client for domain events,
the validation port, the job worker and the servicer, then serves until SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from usdcarb.ingestion.app import IngestionApp
from usdcarb.ingestion.archive_app import ArchiveApp
from usdcarb.ingestion.archive_store import ArchiveStore
from usdcarb.ingestion.archive_worker import ArchiveWorker, ArchiveWorkerConfig
from usdcarb.ingestion.follow import FollowConfig, FollowWorker
from usdcarb.ingestion.markets import MarketDirectory
from usdcarb.ingestion.servicer import IngestionServicer
from usdcarb.ingestion.store import IngestStore
from usdcarb.ingestion.telemetry import IngestionTelemetry
from usdcarb.ingestion.validation import (
    AcceptAll,
    CandleValidator,
    DroppedEvents,
    InProcessValidator,
    RemoteValidator,
)
from usdcarb.ingestion.worker import Worker, WorkerConfig
from usdcarb.platform.bootstrap import run
from usdcarb.platform.db import create_pool, postgres_check
from usdcarb.platform.migrations import apply_migrations
from usdcarb.platform.redis import create_redis
from usdcarb.platform.replica import ReadRouter, ReplicaCollector, service_read_router
from usdcarb.platform.server import Register, run_service
from usdcarb.platform.service_auth import TokenSource, service_token
from usdcarb.platform.settings import PlatformSettings, service_config
from usdcarb.platform.telemetry import domain_registry, instrument_pool
from usdcarb.platform.tls import peer_channel
from usdcarb.v1 import ingestion_pb2_grpc
from usdcarb.validation.main import MIGRATIONS as VALIDATION_MIGRATIONS
from usdcarb.validation.main import RedisEvents, make_app
from usdcarb.validation.telemetry import ValidationTelemetry

SERVICE = "usdcarb.v1.IngestionService"
SCHEMA = "ingestion"
MIGRATIONS = Path(__file__).with_name("migrations")
logger = logging.getLogger(__name__)


class IngestionSettings(PlatformSettings):
    """Settings of the ingestion service (environment variables USDCARB_INGESTION_*)."""

    model_config = service_config("USDCARB_INGESTION_")

    grpc_max_message_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, description=(
        "Largest gRPC message: GetCandles answers up to 1,000,000 bars (~53 MB)."))
    replay_url: str = Field(default="", description=(
        "Base URL of the exchange replay server; when set every exchange's API URLs point "
        "at it (tests, benchmarks, demo)."))
    validation_address: str = Field(default="", description=(
        "host:port of the validation service (validation is deployed); empty = "
        "ingestion's own per-bar rules only."))
    worker_concurrency: int = Field(default=4, ge=0, description=(
        "Jobs one process fetches at once (a job storing its last batch leaves its slot "
        "to the next: up to twice as many held); 0 runs no worker (API only)."))
    lease_s: float = Field(default=30.0, gt=0, description=(
        "Seconds a worker holds a job without renewing; after that another resumes it."))
    poll_s: float = Field(default=0.5, gt=0, description="Seconds between looks for new jobs.")
    rate_limit_scale: float = Field(default=1.0, ge=0, description=(
        "Multiplier on each exchange's own rateLimit; keep 1 against real exchanges."))
    retry_attempts: int = Field(default=8, ge=1, description="Attempts per exchange request.")
    retry_base_s: float = Field(default=0.2, gt=0, description="First retry backoff, seconds.")
    retry_max_s: float = Field(default=10.0, gt=0, description="Largest retry backoff, seconds.")
    events: bool = Field(default=True, description="Publish domain events to Redis.")
    validation_inprocess: bool = Field(default=True, description=(
        "With validation deployed, run the validation service's own application in this "
        "process (rules, findings, quarantine, gap repair and verdicts recorded in the "
        "validation schema, as ValidateCandles(record=true) does) instead of calling "
        "ValidateCandles over gRPC for every batch."))
    validation_schema: str = Field(default="validation", description=(
        "Schema of the validation service's tables (in-process validation)."))
    batch_bars: int = Field(default=50_000, ge=1, description=(
        "Bars validated and stored together: one validation call and one transaction per "
        "batch of pages, while the next pages are fetched (1 = every page on its own)."))
    archive_concurrency: int = Field(default=2, ge=0, description=(
        "Archive imports one process runs at once; 0 runs none (API only)."))
    archive_downloads: int = Field(default=8, ge=1, description=(
        "Archive files one import downloads ahead of the one it stores."))
    archive_validate_range: bool = Field(default=True, description=(
        "With validation deployed, run ValidateRange over what an archive import stored "
        "once it ends (findings, gaps and verdicts of the imported bars)."))
    archive_dir: str = Field(default="", description=(
        "Directory whose files file:// archive sources may name; empty = URLs only."))
    follow_concurrency: int = Field(default=256, ge=0, description=(
        "Follow jobs (INGEST_MODE_FOLLOW, never ending) one process runs at once, beside "
        "the worker's slots; 0 runs none (API only)."))
    follow_poll_s: float = Field(default=0.0, ge=0, description=(
        "Seconds between a follow job's looks for new bars; 0 = at the timeframe's "
        "cadence (when the next bar closes by the exchange's clock, plus follow_settle_s). "
        "Set it short against a replay clock that jumps."))
    follow_settle_s: float = Field(default=2.0, ge=0, description=(
        "Seconds after a bar closes before a follow job asks for it (cadence polling)."))


@dataclass
class Components:
    app: IngestionApp
    worker: Worker | None
    validator: CandleValidator
    register: Register
    archive_worker: ArchiveWorker | None = None
    telemetry: IngestionTelemetry | None = None
    follow_worker: FollowWorker | None = None


def build(pool: Any, settings: IngestionSettings, *, redis: Any = None,
          token: TokenSource | None = None, reads: ReadRouter | None = None,
          validation_pool: Any = None,
          market_table: str = f"{SCHEMA}.market_data") -> Components:
    """Wire the store, validation port, worker, application and servicer.

    With validation deployed (``validation_address``), batches are judged in-process by
    the validation service's application on ``validation_pool`` (search_path: the
    validation schema; it reads and gap-fills ``market_table``), or with
    ``validation_inprocess`` off by ValidateCandles calls authenticated by ``token``
    (default: this service's token from identity).
    """
    store = IngestStore(pool, reads=reads)  # candle reads: the read replica when healthy
    registry = domain_registry()  # served beside the gRPC metrics (serve: collectors)
    validator: CandleValidator = AcceptAll()
    if settings.validation_address and settings.validation_inprocess:
        if validation_pool is None:
            raise ValueError("in-process validation needs a pool on the validation schema")
        validator = InProcessValidator(make_app(
            validation_pool, RedisEvents(redis) if redis is not None else DroppedEvents(),
            table=market_table, reads=reads, telemetry=ValidationTelemetry(registry)))
    elif settings.validation_address:
        validator = RemoteValidator(
            peer_channel(settings, settings.validation_address, "validation"),
            token or service_token(settings, "ingestion"))
    worker = None
    if settings.worker_concurrency:
        worker = Worker(store, validator, WorkerConfig(
            concurrency=settings.worker_concurrency, lease_s=settings.lease_s,
            poll_s=settings.poll_s, replay_url=settings.replay_url,
            rate_limit_scale=settings.rate_limit_scale, retry_attempts=settings.retry_attempts,
            retry_base_s=settings.retry_base_s, retry_max_s=settings.retry_max_s,
            batch_bars=settings.batch_bars), redis=redis)
    follow_worker = None
    if settings.follow_concurrency:
        follow_worker = FollowWorker(store, validator, WorkerConfig(
            lease_s=settings.lease_s, poll_s=settings.poll_s, replay_url=settings.replay_url,
            rate_limit_scale=settings.rate_limit_scale, retry_attempts=settings.retry_attempts,
            retry_base_s=settings.retry_base_s, retry_max_s=settings.retry_max_s),
            FollowConfig(concurrency=settings.follow_concurrency, poll_s=settings.follow_poll_s,
                         settle_s=settings.follow_settle_s), redis=redis)

    def created() -> None:
        for w in (worker, follow_worker):
            if w is not None:
                w.wake()

    app = IngestionApp(store, on_job_created=created,
                       markets=MarketDirectory(replay_url=settings.replay_url))
    archive_store = ArchiveStore(pool)
    archive_worker = None
    if settings.archive_concurrency:
        archive_worker = ArchiveWorker(archive_store, ArchiveWorkerConfig(
            concurrency=settings.archive_concurrency, downloads=settings.archive_downloads,
            lease_s=settings.lease_s, poll_s=settings.poll_s,
            retry_base_s=settings.retry_base_s),
            range_validator=validator if settings.archive_validate_range and isinstance(
                validator, InProcessValidator | RemoteValidator) else None)
    archives = ArchiveApp(archive_store, archive_dir=settings.archive_dir,
                          on_created=archive_worker.wake if archive_worker else (lambda: None))
    servicer = IngestionServicer(app, archives)

    def register(server: Any) -> None:
        ingestion_pb2_grpc.add_IngestionServiceServicer_to_server(  # type: ignore[no-untyped-call]
            servicer, server)

    instrument_pool(pool, registry)
    telemetry = IngestionTelemetry(registry, pool=pool)
    if worker is not None:
        worker.telemetry = telemetry
    if follow_worker is not None:
        follow_worker.telemetry = telemetry
    return Components(app, worker, validator, register, archive_worker, telemetry,
                      follow_worker)


async def serve(settings: IngestionSettings) -> None:
    pool = await create_pool(settings.database_url.get_secret_value(), settings.db_pool_min,
                             settings.db_pool_max, search_path=f"{SCHEMA}, public")
    vpool = None
    try:
        await apply_migrations(pool, SCHEMA, MIGRATIONS)
        reads = await service_read_router(settings, pool, search_path=f"{SCHEMA}, public")
        if settings.validation_address and settings.validation_inprocess:
            # The validation code this process runs, on its schema at this code's version
            # (migrations are idempotent, under their lock, whoever applies them first).
            vschema = settings.validation_schema
            vpool = await create_pool(settings.database_url.get_secret_value(),
                                      settings.db_pool_min, settings.db_pool_max,
                                      search_path=f"{vschema}, public")
            await apply_migrations(vpool, vschema, VALIDATION_MIGRATIONS)
    except BaseException:
        if vpool is not None:
            await vpool.close()
        await pool.close()
        raise
    redis = await create_redis(settings.redis_url) if settings.events else None
    parts = build(pool, settings, redis=redis, reads=reads, validation_pool=vpool)
    if parts.telemetry is not None:
        parts.telemetry.sampler.start()
    task = asyncio.create_task(parts.worker.run()) if parts.worker else None
    archive_task = (asyncio.create_task(parts.archive_worker.run())
                    if parts.archive_worker else None)
    follow_task = (asyncio.create_task(parts.follow_worker.run())
                   if parts.follow_worker else None)

    async def stop_worker() -> None:
        if parts.worker is not None:
            await parts.worker.stop()
        if parts.archive_worker is not None:
            await parts.archive_worker.stop()
        if parts.follow_worker is not None:
            await parts.follow_worker.stop()
        for t in (task, archive_task, follow_task):
            if t is not None:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t
        await parts.validator.close()
        if parts.telemetry is not None:
            await parts.telemetry.sampler.stop()
        if redis is not None:
            await redis.aclose()

    await run_service([SERVICE], parts.register, settings,
                      health_checks={"postgres": postgres_check(pool)},
                      on_close=[stop_worker, pool.close, reads.close,
                                *([vpool.close] if vpool is not None else [])],
                      collectors=[ReplicaCollector(reads),
                                  *([parts.telemetry.registry] if parts.telemetry else [])])


def main() -> None:
    settings = IngestionSettings()
    run(settings, lambda: serve(settings))


if __name__ == "__main__":
    main()
