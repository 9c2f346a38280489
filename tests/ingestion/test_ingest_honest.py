"""Honest ingestion outcomes, driving the worker directly against the replay server
(real March 2023 data): cursors follow the exchange's (replay) clock, a job the exchange
answers with nothing ends FAILED, an empty range ends SUCCEEDED with a warning, a
re-run reports what was already stored, and markets come from the exchange's own list
(ccxt load_markets) with an unknown one refused before any job exists."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from tests.ingestion.conftest import ms

from usdcarb.ingestion.app import IngestionApp
from usdcarb.ingestion.markets import MarketDirectory
from usdcarb.ingestion.model import JobRecord
from usdcarb.ingestion.store import IngestStore
from usdcarb.ingestion.validation import AcceptAll
from usdcarb.ingestion.worker import Worker, WorkerConfig
from usdcarb.platform.errors import InvalidArgument
from usdcarb.replay.server import ReplayServer

pytestmark = pytest.mark.integration
M = 60_000


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class Runner:
    def __init__(self, pool: Any, replay: ReplayServer) -> None:
        self.store = IngestStore(pool)
        self.worker = Worker(self.store, AcceptAll(), WorkerConfig(
            replay_url=replay.url, rate_limit_scale=0.0, lease_s=5.0, retry_base_s=0.01,
            retry_max_s=0.05, retry_attempts=3))

    async def run(self, exchange: str, symbol: str, *, mode: str = "INGEST_MODE_BACKFILL",
                  start: str | None = None, end: str | None = None) -> JobRecord:
        job = await self.store.create_job(
            exchange=exchange, symbol=symbol, timeframe="1m", mode=mode,
            start=utc(start) if start else None, end=utc(end) if end else None,
            creator="test", request_id="")
        claimed = await self.store.claim_job(self.worker.owner, 5.0)
        assert claimed is not None and claimed.id == job.id
        await self.worker.run_job(claimed)
        return await self.store.get_job(job.id)


@pytest.fixture
async def runner(service_pool: Any, replay: ReplayServer) -> Any:
    r = Runner(await service_pool("ingestion"), replay)
    yield r
    await r.worker.stop()


def cursor_ms(job: JobRecord) -> int:
    assert job.cursor_time is not None
    return int(job.cursor_time.timestamp() * 1000)


async def test_a_kraken_incremental_cursor_stays_within_the_replay_clock(
        runner: Runner, replay: ReplayServer) -> None:
    clock0, clock1 = ms("2023-03-11T06:00:00"), ms("2023-03-11T14:00:00")
    replay.clock_ms = clock0
    first = await runner.run("kraken", "USDC/USD", mode="INGEST_MODE_INCREMENTAL")
    assert first.state == "JOB_STATE_SUCCEEDED", first
    assert clock0 - 5 * M <= cursor_ms(first) < clock0  # not 2026, this machine's clock
    replay.clock_ms = clock1
    second = await runner.run("kraken", "USDC/USD", mode="INGEST_MODE_INCREMENTAL")
    assert second.state == "JOB_STATE_SUCCEEDED", second
    assert clock1 - 5 * M <= cursor_ms(second) < clock1
    newest = await runner.store._pool.fetchval(
        "SELECT max(ts) FROM market_data WHERE exchange = 'kraken'")
    assert int(newest.timestamp() * 1000) < clock1
    # Nothing new at the same clock: the range is empty, a success with a warning.
    third = await runner.run("kraken", "USDC/USD", mode="INGEST_MODE_INCREMENTAL")
    assert third.state == "JOB_STATE_SUCCEEDED", third
    assert "warning: nothing to fetch" in third.progress["message"]
    assert third.cursor_time is None  # nothing fetched: no cursor moved at all


async def test_an_exchange_answering_empty_pages_ends_the_job_failed(runner: Runner) -> None:
    # February 2023 was not recorded: every page of the range comes back empty.
    job = await runner.run("coinbase", "BTC/USD", start="2023-02-10T00:00:00",
                           end="2023-02-10T12:00:00")
    assert job.state == "JOB_STATE_FAILED", job
    assert job.error is not None and job.error["code"] == 5  # NOT_FOUND
    assert job.error["message"].startswith("expected bars of coinbase BTC/USD 1m in ")
    assert job.error["message"].endswith("got none from the exchange")
    assert job.stats["requests"] > 1 and job.stats["bars_fetched"] == 0


async def test_a_range_after_the_exchange_clock_is_empty_not_failed(
        runner: Runner, replay: ReplayServer) -> None:
    replay.clock_ms = ms("2023-03-10T00:00:00")
    job = await runner.run("binance", "USDC/USDT", start="2023-03-12T00:00:00",
                           end="2023-03-13T00:00:00")
    assert job.state == "JOB_STATE_SUCCEEDED", job
    assert "warning: nothing to fetch" in job.progress["message"]
    assert job.stats["requests"] == 1  # the server time only


async def test_a_rerun_reports_the_bars_already_stored(runner: Runner) -> None:
    span = {"start": "2023-03-10T00:00:00", "end": "2023-03-10T06:00:00"}
    first = await runner.run("binance", "USDC/USDT", **span)
    assert first.state == "JOB_STATE_SUCCEEDED"
    assert first.progress["message"].startswith("done: 360 new bars stored, already stored: 0")
    again = await runner.run("binance", "USDC/USDT", **span)
    assert again.state == "JOB_STATE_SUCCEEDED"
    assert again.progress["message"].startswith("done: 0 new bars stored, already stored: 360")


async def test_markets_come_from_load_markets_and_an_unknown_one_is_refused_up_front(
        service_pool: Any, replay: ReplayServer) -> None:
    store = IngestStore(await service_pool("ingestion"))
    directory = MarketDirectory(replay_url=replay.url)
    app = IngestionApp(store, markets=directory)
    # Coinbase's recorded markets, listed by its own products endpoint (ids as Coinbase's).
    assert await directory.symbols("coinbase") == {
        "BTC/USD": "BTC-USD", "BTC/USDT": "BTC-USDT", "USDT/USD": "USDT-USD"}
    assert (await directory.symbols("kraken"))["BTC/USD"] == "XXBTZUSD"
    with pytest.raises(InvalidArgument) as err:  # in the fixed table, not in its list
        await app.create_job(exchange="coinbase", symbol="USDC/USD", timeframe="1m",
                             mode="INGEST_MODE_BACKFILL", start=utc("2023-03-10T00:00:00"),
                             end=utc("2023-03-11T00:00:00"), creator="users/t", request_id="")
    assert [v.field for v in err.value.field_violations] == ["ingest_job.series.symbol"]
    assert "a market of coinbase (BTC/USD, BTC/USDT, USDT/USD)" in str(err.value)
    job = await app.create_job(exchange="coinbase", symbol="BTC/USD", timeframe="1m",
                               mode="INGEST_MODE_BACKFILL", start=utc("2023-03-10T00:00:00"),
                               end=utc("2023-03-11T00:00:00"), creator="users/t",
                               request_id="")
    assert job.state == "JOB_STATE_QUEUED"
