"""Follow jobs (INGEST_MODE_FOLLOW) against the replay server with its clock advancing:
the bars closing from the job's start on (or its start_time, if later; not the history
before) are stored bar by bar through ccxt, exactly as recorded; the job survives a
restart of the service (another follower takes it over once its lease expires, and
fetches the bars that closed meanwhile); a job with an end time ends SUCCEEDED; a
cancelled job stops asking the exchange anything (issue 18)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from tests.ingestion.conftest import MakeIngestion, ts
from tests.ingestion.test_ingest_exchanges import assert_equal_to_source, stored
from tests.testkit import eventually

from usdcarb.ingestion.follow import FollowConfig, next_wait_s
from usdcarb.replay.data import Catalog
from usdcarb.replay.server import ReplayServer
from usdcarb.v1 import common_pb2 as cpb
from usdcarb.v1 import ingestion_pb2 as pb

pytestmark = pytest.mark.integration

T0 = int(datetime(2023, 3, 10, 12, tzinfo=UTC).timestamp() * 1000)
MIN = 60_000


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).replace(tzinfo=None).isoformat()


def follow_request(exchange: str, start_ms: int, end_ms: int | None = None) -> Any:
    rng = cpb.TimeRange(start_time=ts(datetime.fromtimestamp(start_ms / 1000, UTC)))
    if end_ms is not None:
        rng.end_time.CopyFrom(ts(datetime.fromtimestamp(end_ms / 1000, UTC)))
    return pb.CreateIngestJobRequest(ingest_job=pb.IngestJob(
        series=cpb.SeriesKey(exchange=exchange, symbol="BTC/USDC", timeframe="1m"),
        mode=pb.INGEST_MODE_FOLLOW, range=rng))


async def caught_up(pool: Any, catalog: Catalog, exchange: str, start_ms: int,
                    end_ms: int) -> None:
    async def check() -> bool:
        got = await stored(pool, exchange, "BTC/USDC", iso(start_ms), iso(end_ms))
        assert_equal_to_source(got, catalog, exchange, "BTC/USDC", iso(start_ms),
                               iso(end_ms))
        return True

    await eventually(check, within_s=120, interval=0.1)


async def latest(pool: Any, exchange: str) -> int | None:
    value = await pool.fetchval("SELECT max(ts) FROM market_data WHERE exchange = $1",
                                exchange)
    return None if value is None else int(value.timestamp() * 1000)


def test_cadence_waits_for_the_next_close_unless_a_poll_interval_is_set() -> None:
    cadence = FollowConfig(poll_s=0.0, settle_s=2.0)
    assert next_wait_s(cadence, tf_ms=MIN, exchange_now_ms=T0 + 45_000, elapsed_s=1.0) == 16.0
    assert next_wait_s(cadence, tf_ms=MIN, exchange_now_ms=T0 + 59_500, elapsed_s=3.0) == 2.0
    assert next_wait_s(FollowConfig(poll_s=0.05), tf_ms=MIN, exchange_now_ms=T0,
                       elapsed_s=0.0) == 0.05


async def test_follow_job_keeps_up_with_the_clock_survives_a_restart_and_stops_on_cancel(
        make_ingestion: MakeIngestion, replay: ReplayServer, catalog: Catalog) -> None:
    replay.clock_ms = T0
    first = await make_ingestion(follow_poll_s=0.05, lease_s=1.5)
    job = await first.stub.CreateIngestJob(follow_request("binance", T0 - 30 * MIN))
    bounded = await first.stub.CreateIngestJob(follow_request("bybit", T0 + 5 * MIN,
                                                              T0 + 10 * MIN))
    assert job.mode == pb.INGEST_MODE_FOLLOW and job.state == cpb.JOB_STATE_QUEUED

    async def started() -> bool:   # from the exchange's now: the past is a backfill's
        got = await first.stub.GetIngestJob(pb.GetIngestJobRequest(name=job.name))
        return got.cursor_time.ToMilliseconds() == T0 - MIN

    await eventually(started, within_s=60)
    assert await latest(first.pool, "binance") is None
    for step in range(1, 4):   # the exchange's clock advances: the new bars follow
        replay.clock_ms = T0 + step * 5 * MIN
        await caught_up(first.pool, catalog, "binance", T0, replay.clock_ms)
    got = await first.stub.GetIngestJob(pb.GetIngestJobRequest(name=job.name))
    assert got.state == cpb.JOB_STATE_RUNNING   # caught up, and still following
    assert got.cursor_time.ToMilliseconds() == replay.clock_ms - MIN
    holder = await first.pool.fetchval("SELECT lease_owner FROM ingest_jobs WHERE id = $1",
                                       job.name.split("/")[1])
    assert holder == first.follower.owner   # the follow worker's, not a regular slot's

    # The bounded job ended once the exchange's clock passed its end time.
    done = await first.wait(bounded.name)
    assert done.job.state == cpb.JOB_STATE_SUCCEEDED and done.job.stats.bars_stored == 5
    await caught_up(first.pool, catalog, "bybit", T0 + 5 * MIN, T0 + 10 * MIN)
    assert await latest(first.pool, "bybit") == T0 + 9 * MIN

    # The service restarts: its follower stops and hands the job over (its lease ends at
    # once), another process takes it over.
    await first.follower.stop()
    assert await first.pool.fetchval(
        "SELECT lease_until <= now() FROM ingest_jobs WHERE id = $1", job.name.split("/")[1])
    second = await make_ingestion(pool=first.pool, follow_poll_s=0.05, lease_s=60)
    replay.clock_ms = T0 + 40 * MIN

    async def taken_over() -> bool:
        owner = await first.pool.fetchval("SELECT lease_owner FROM ingest_jobs WHERE id = $1",
                                          job.name.split("/")[1])
        return bool(owner == second.follower.owner)

    await eventually(taken_over, within_s=120)
    await caught_up(first.pool, catalog, "binance", T0, replay.clock_ms)

    # Cancelled: the job stops, and nothing asks the exchange anything after that.
    cancelled = await second.stub.CancelIngestJob(pb.CancelIngestJobRequest(name=job.name))
    assert cancelled.state == cpb.JOB_STATE_CANCELLED
    await eventually(lambda: second.follower.running() == [], within_s=60)
    before = dict(replay.stats.requests)
    replay.clock_ms = T0 + 50 * MIN
    await asyncio.sleep(0.5)   # ten poll intervals
    assert dict(replay.stats.requests) == before
    last = await stored(first.pool, "binance", "BTC/USDC", iso(T0), iso(T0 + 50 * MIN))
    assert int(last.open_time_ms[-1]) == T0 + 39 * MIN
