"""Crash safety: the ingestion process SIGKILLed mid-backfill and restarted, and
PostgreSQL restarted mid-job; both jobs finish with zero missing and zero duplicate bars."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from tests.ingestion.conftest import MakeIngestion, job_request
from tests.ingestion.test_ingest_exchanges import assert_equal_to_source, stored
from tests.testkit import eventually

from usdcarb.devstack import PostgresServer, scratch_dir
from usdcarb.ingestion.store import IngestStore
from usdcarb.platform.db import create_pool
from usdcarb.platform.testing import DEV_JWKS
from usdcarb.replay.data import Catalog
from usdcarb.replay.server import ReplayServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
START, END = "2023-03-01T00:00:00", "2023-03-15T00:00:00"


def utc(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


async def job_row(pool: Any, job_id: str) -> Any:
    try:
        return await pool.fetchrow("SELECT state, cursor_time, progress, stats, lease_owner "
                                   "FROM ingest_jobs WHERE id = $1", job_id)
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
            asyncpg.CannotConnectNowError):
        return None


@contextlib.asynccontextmanager
async def ingestion_process(dsn: str, replay: ReplayServer, log: Path) -> AsyncIterator[Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        str(ROOT / p) for p in ("services", "gen/python")),
        "USDCARB_INGESTION_ENV": "test", "USDCARB_INGESTION_DATABASE_URL": dsn,
        "USDCARB_INGESTION_GRPC_PORT": "0", "USDCARB_INGESTION_METRICS_PORT": "-1",
        "USDCARB_INGESTION_REPLAY_URL": replay.url, "USDCARB_INGESTION_RATE_LIMIT_SCALE": "0",
        "USDCARB_INGESTION_LEASE_S": "2", "USDCARB_INGESTION_POLL_S": "0.1",
        "USDCARB_INGESTION_EVENTS": "false", "USDCARB_INGESTION_LOG_JSON": "false",
        "USDCARB_INGESTION_LOG_LEVEL": "WARNING", "USDCARB_INGESTION_PLAINTEXT": "true",
        # No identity here: callers' tokens are checked against the DEV-ONLY key.
        "USDCARB_INGESTION_JWKS_FILE": str(DEV_JWKS)}
    with log.open("ab") as sink:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "usdcarb.ingestion.main", env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=sink)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def test_sigkill_mid_backfill_then_restart_finishes_exactly_once(
        postgres: PostgresServer, replay: ReplayServer, catalog: Catalog) -> None:
    database = f"ingest_kill_{uuid.uuid4().hex[:8]}"
    postgres.create_database(database)
    postgres.psql("CREATE EXTENSION IF NOT EXISTS timescaledb", database=database)
    dsn = postgres.dsn(database)
    replay.set_faults(latency_ms=25)  # ~200 pages of 300 bars: several seconds of work
    log = scratch_dir("usdcarb-ingest-kill-") / "ingestion.log"

    async def migrated() -> Any:
        assert first.returncode is None, log.read_text()[-2000:]
        return await _open_migrated(dsn)

    async with ingestion_process(dsn, replay, log) as first:
        pool = await eventually(migrated, within_s=90, interval=0.2)
        job = await IngestStore(pool).create_job(
            exchange="coinbase", symbol="BTC/USD", timeframe="1m", mode="INGEST_MODE_BACKFILL",
            start=utc(START), end=utc(END), creator="test", request_id="")

        async def partly_done() -> bool:
            row = await job_row(pool, job.id)
            return bool(row and row["progress"].get("fraction", 0) > 0.3)

        await eventually(partly_done, within_s=60)
        first.send_signal(signal.SIGKILL)
        await first.wait()
    killed = await job_row(pool, job.id)
    assert killed["state"] == "JOB_STATE_RUNNING" and killed["progress"]["fraction"] < 1
    async with ingestion_process(dsn, replay, log):
        async def finished() -> bool:
            row = await job_row(pool, job.id)
            return bool(row and row["state"] == "JOB_STATE_SUCCEEDED")

        await eventually(finished, within_s=120, interval=0.2)
    candles = await stored(pool, "coinbase", "BTC/USD", START, END)
    assert_equal_to_source(candles, catalog, "coinbase", "BTC/USD", START, END)
    dupes = await pool.fetchval("SELECT count(*) - count(DISTINCT ts) FROM market_data")
    assert dupes == 0
    await pool.close()
    shutil.rmtree(log.parent, ignore_errors=True)


async def _open_migrated(dsn: str) -> Any:
    pool = await create_pool(dsn, 1, 4, search_path="ingestion, public", attempts=1)
    try:
        ok = await pool.fetchval("SELECT to_regclass('ingestion.ingest_rejects') IS NOT NULL")
    except BaseException:
        await pool.close()
        raise
    if not ok:
        await pool.close()
        return None
    return pool


async def test_postgres_restart_mid_job_is_retried_and_completes(
        make_ingestion: MakeIngestion, catalog: Catalog) -> None:
    root = scratch_dir("usdcarb-ingest-pg-")
    pg = PostgresServer(root / "pg", fast=True)
    try:
        await asyncio.to_thread(pg.start)
        await asyncio.to_thread(pg.create_database, "usdcarb")
        pool = await create_pool(pg.dsn("usdcarb"), 1, 6, search_path="ingestion, public")
        from usdcarb.ingestion.main import MIGRATIONS
        from usdcarb.platform.migrations import apply_migrations

        await apply_migrations(pool, "ingestion", MIGRATIONS)
        ing = await make_ingestion(pool=pool)
        ing.replay.set_faults(latency_ms=25)
        job = await ing.stub.CreateIngestJob(job_request("coinbase", "BTC/USD", START, END))
        job_id = job.name.split("/")[1]

        async def partly_done() -> bool:
            row = await job_row(pool, job_id)
            return bool(row and row["progress"].get("fraction", 0) > 0.2)

        await eventually(partly_done, within_s=60)
        await asyncio.to_thread(pg.restart)

        async def finished() -> Any:
            row = await job_row(pool, job_id)
            return row if row and row["state"] not in ("JOB_STATE_RUNNING",
                                                       "JOB_STATE_QUEUED") else None

        row = await eventually(finished, within_s=90, interval=0.2)
        assert row["state"] == "JOB_STATE_SUCCEEDED", row["error"]
        candles = await stored(pool, "coinbase", "BTC/USD", START, END)
        assert_equal_to_source(candles, catalog, "coinbase", "BTC/USD", START, END)
        await pool.close()
    finally:
        await asyncio.to_thread(pg.stop)
        shutil.rmtree(root, ignore_errors=True)
