"""Fixtures: the replay server over the real March 2023 recordings, and an in-process
ingestion service (servicer + worker) on a fresh schema."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from google.protobuf import timestamp_pb2

from testkit import SHARED_DATA, require_shared_data
from usdcarb.ingestion.main import SERVICE, IngestionSettings, build
from usdcarb.ingestion.worker import Worker
from usdcarb.platform.testing import DEV_JWKS, DevServiceToken, authed_channel, start_in_process
from usdcarb.replay.data import Catalog, load_catalog
from usdcarb.replay.server import ReplayServer
from usdcarb.v1 import common_pb2 as cpb
from usdcarb.v1 import ingestion_pb2 as pb
from usdcarb.v1 import ingestion_pb2_grpc

DATA = SHARED_DATA


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    require_shared_data(DATA)
    return load_catalog(DATA)


@pytest.fixture
async def replay(catalog: Catalog) -> AsyncIterator[ReplayServer]:
    async with ReplayServer(catalog) as server:
        yield server


def ts(value: str | datetime) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromDatetime(datetime.fromisoformat(value) if isinstance(value, str) else value)
    return t


def ms(value: str) -> int:
    return int(datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp() * 1000)


def job_request(exchange: str, symbol: str, start: str, end: str, *, timeframe: str = "1m",
                mode: int = pb.INGEST_MODE_BACKFILL, request_id: str = "") -> Any:
    rng = cpb.TimeRange(start_time=ts(start + "+00:00"), end_time=ts(end + "+00:00"))
    return pb.CreateIngestJobRequest(
        ingest_job=pb.IngestJob(series=cpb.SeriesKey(exchange=exchange, symbol=symbol,
                                                     timeframe=timeframe),
                                mode=mode, range=rng), request_id=request_id)


@dataclass
class Ingestion:
    stub: Any
    pool: Any
    worker: Worker | None
    replay: ReplayServer
    settings: IngestionSettings
    address: str
    quality: Any = None  # the validation service's pool, when it runs
    follower: Any = None  # the FollowWorker (INGEST_MODE_FOLLOW jobs), when it runs

    async def wait(self, name: str, within_s: float = 60.0) -> Any:
        """Follow WatchIngestJob to its last message and return it."""
        last = None
        async with asyncio.timeout(within_s):
            async for event in self.stub.WatchIngestJob(pb.WatchIngestJobRequest(name=name)):
                last = event
        assert last is not None and last.HasField("outcome"), last
        return last


MakeIngestion = Callable[..., Awaitable[Ingestion]]


class NoEvents:
    async def publish(self, event: object) -> None:
        return None


@pytest.fixture
async def make_ingestion(service_pool: Any, replay: ReplayServer) -> AsyncIterator[MakeIngestion]:
    stack = contextlib.AsyncExitStack()

    async def make(pool: Any = None, redis: Any = None, validation: bool = False,
                   **overrides: Any) -> Ingestion:
        pool = pool or await service_pool("ingestion")
        quality = None
        validation_kw: dict[str, Any] = {}
        values: dict[str, Any] = dict(env="test", jwks_file=DEV_JWKS, replay_url=replay.url,
                                      rate_limit_scale=0.0,
                                      lease_s=3.0, poll_s=0.05, retry_base_s=0.01,
                                      retry_max_s=0.05, events=False, plaintext=True)
        if validation:  # the real validation service, in-process, reading our market_data
            from usdcarb.validation.main import SERVICE as VALIDATION
            from usdcarb.validation.main import build as build_validation

            schema = await pool.fetchval("SELECT current_schema()")
            quality = await service_pool("validation")
            vserver = await stack.enter_async_context(await start_in_process(
                [VALIDATION], build_validation(quality, NoEvents(),
                                               table=f"{schema}.market_data")))
            values["validation_address"] = vserver.address
            # In-process validation (the default) runs the same application on the same
            # validation schema as the service above.
            validation_kw = dict(validation_pool=quality, market_table=f"{schema}.market_data")
        values.update(overrides)
        settings = IngestionSettings(**values)
        parts = build(pool, settings, redis=redis, token=DevServiceToken("ingestion"),
                      **validation_kw)
        server = await stack.enter_async_context(
            await start_in_process([SERVICE], parts.register))
        channel = await stack.enter_async_context(authed_channel(server.address))
        if parts.worker is not None:
            task = asyncio.create_task(parts.worker.run())

            async def stop(worker: Worker = parts.worker, task: Any = task) -> None:
                await worker.stop()
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

            stack.push_async_callback(stop)
        if parts.follow_worker is not None:
            follow_task = asyncio.create_task(parts.follow_worker.run())

            async def stop_follow(worker: Any = parts.follow_worker,
                                  task: Any = follow_task) -> None:
                await worker.stop()
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

            stack.push_async_callback(stop_follow)
        if parts.archive_worker is not None:
            archive_task = asyncio.create_task(parts.archive_worker.run())

            async def stop_archive(worker: Any = parts.archive_worker,
                                   task: Any = archive_task) -> None:
                await worker.stop()
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

            stack.push_async_callback(stop_archive)
        stack.push_async_callback(parts.validator.close)
        return Ingestion(ingestion_pb2_grpc.IngestionServiceStub(channel), pool, parts.worker,
                         replay, settings, server.address, quality, parts.follow_worker)

    yield make
    await stack.aclose()
