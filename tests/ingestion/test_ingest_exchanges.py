"""Backfill through ccxt from the replay server, for all five exchanges, into the
hypertable: the stored bars equal the recorded bars (real March 2023 data)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc
import numpy as np
import pytest
from tests.ingestion.conftest import MakeIngestion, job_request, ms

from usdcarb.marketdata.reader import read_candles
from usdcarb.replay.data import Catalog
from usdcarb.v1 import common_pb2 as cpb
from usdcarb.v1 import ingestion_pb2 as pb

pytestmark = pytest.mark.integration


async def stored(pool: Any, exchange: str, symbol: str, start: str, end: str,
                 timeframe: str = "1m") -> Any:
    async with pool.acquire() as conn:
        return await read_candles(
            conn, exchange=exchange, symbol=symbol, timeframe=timeframe,
            start=datetime.fromisoformat(start).replace(tzinfo=UTC),
            end=datetime.fromisoformat(end).replace(tzinfo=UTC), table="market_data")


def assert_equal_to_source(candles: Any, catalog: Catalog, exchange: str, symbol: str,
                           start: str, end: str, timeframe: str = "1m") -> None:
    series = catalog.get(exchange, symbol, timeframe)
    assert series is not None
    lo, hi = series.window(ms(start), ms(end))
    assert len(candles) == hi - lo
    np.testing.assert_array_equal(candles.open_time_ms, series.ts_ms[lo:hi])
    for col in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(candles, col), getattr(series, col)[lo:hi])
    assert (candles.provenance == 1).all()


@pytest.mark.parametrize("validation", [False, True], ids=["own-rules", "validation-service"])
@pytest.mark.parametrize(("exchange", "symbol"), [
    ("binance", "USDC/USDT"), ("coinbase", "USDT/USD"), ("okx", "USDC/USDT"),
    ("bybit", "BTC/USDC"),
])
async def test_backfill_stores_exactly_the_recorded_bars(
        make_ingestion: MakeIngestion, catalog: Catalog, exchange: str, symbol: str,
        validation: bool) -> None:
    """Over the depeg (USDC/USDT low 0.822 on 11 March): nothing real is rejected."""
    ing = await make_ingestion(validation=validation)
    start, end = "2023-03-09T00:00:00", "2023-03-14T00:00:00"
    job = await ing.stub.CreateIngestJob(job_request(exchange, symbol, start, end))
    last = await ing.wait(job.name)
    assert last.outcome.result == cpb.Outcome.RESULT_OK, last
    candles = await stored(ing.pool, exchange, symbol, start, end)
    assert_equal_to_source(candles, catalog, exchange, symbol, start, end)
    assert last.job.stats.bars_stored == len(candles)
    assert last.job.stats.bars_quarantined == 0
    assert last.job.progress.fraction == 1.0
    if validation:  # every page really went through the service, which recorded the gaps
        gaps = await ing.quality.fetchval("SELECT count(*) FROM data_gaps")
        expected_gaps = int((np.diff(candles.open_time_ms) > 60_000).sum())
        assert gaps == expected_gaps and (gaps > 0) == (exchange in ("coinbase", "bybit"))


async def test_kraken_incremental_sync_follows_the_replay_clock(
        make_ingestion: MakeIngestion, catalog: Catalog) -> None:
    """Kraken's OHLC serves only its latest 720 bars: the series is kept up to date by
    incremental jobs while the (replay) clock advances; no backfill of old history."""
    ing = await make_ingestion()
    clock0, clock1 = ms("2023-03-11T06:00:00"), ms("2023-03-11T14:00:00")
    ing.replay.clock_ms = clock0

    async def sync() -> Any:
        req = pb.CreateIngestJobRequest(ingest_job=pb.IngestJob(
            series=cpb.SeriesKey(exchange="kraken", symbol="USDC/USD", timeframe="1m"),
            mode=pb.INGEST_MODE_INCREMENTAL))
        job = await ing.stub.CreateIngestJob(req)
        return await ing.wait(job.name)

    first = await sync()
    assert first.outcome.result == cpb.Outcome.RESULT_OK, first
    ing.replay.clock_ms = clock1
    second = await sync()
    assert second.outcome.result == cpb.Outcome.RESULT_OK, second
    start, end = "2023-03-10T18:00:00", "2023-03-11T14:00:00"  # clock0 - 720 min .. clock1
    candles = await stored(ing.pool, "kraken", "USDC/USD", start, end)
    assert_equal_to_source(candles, catalog, "kraken", "USDC/USD", start, end)
    assert first.job.stats.bars_stored + second.job.stats.bars_stored == len(candles)
    # the depeg low (0.874 at 07:15) is in there, stored as recorded
    assert candles.low.min() == pytest.approx(0.874, abs=1e-3)


async def test_kraken_backfill_is_refused_with_the_reason(make_ingestion: MakeIngestion) -> None:
    ing = await make_ingestion()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ing.stub.CreateIngestJob(job_request("kraken", "USDC/USD", "2023-03-09T00:00:00",
                                                   "2023-03-10T00:00:00"))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "latest 720 bars" in (err.value.details() or "")


async def test_reingesting_a_range_changes_nothing(make_ingestion: MakeIngestion) -> None:
    ing = await make_ingestion()
    start, end = "2023-03-10T00:00:00", "2023-03-11T00:00:00"
    first = await ing.wait((await ing.stub.CreateIngestJob(
        job_request("coinbase", "BTC/USD", start, end))).name)
    before = await ing.pool.fetch("SELECT * FROM market_data ORDER BY ts")
    second = await ing.wait((await ing.stub.CreateIngestJob(
        job_request("coinbase", "BTC/USD", start, end))).name)
    after = await ing.pool.fetch("SELECT * FROM market_data ORDER BY ts")
    assert second.outcome.result == cpb.Outcome.RESULT_OK
    assert [tuple(r) for r in after] == [tuple(r) for r in before]  # ingest_time included
    assert second.job.stats.bars_stored == 0
    assert second.job.stats.bars_duplicate == first.job.stats.bars_stored == len(before)


async def test_gaps_are_counted_and_reported_as_events(
        make_ingestion: MakeIngestion, redis_server: Any, catalog: Catalog) -> None:
    from usdcarb.platform.events import STREAM, DomainEvent
    from usdcarb.platform.redis import create_redis

    redis = await create_redis(redis_server.url)
    try:
        start_id = "$"
        last = await redis.xrevrange(STREAM, count=1)
        if last:
            start_id = last[0][0]
        ing = await make_ingestion(redis=redis)
        start, end = "2023-03-10T00:00:00", "2023-03-12T00:00:00"
        job = await ing.stub.CreateIngestJob(job_request("coinbase", "USDT/USD", start, end))
        done = await ing.wait(job.name)
        series = catalog.get("coinbase", "USDT/USD", "1m")
        assert series is not None
        lo, hi = series.window(ms(start), ms(end))
        steps = np.diff(series.ts_ms[lo:hi]) // 60_000 - 1
        assert done.job.stats.gaps_found == int((steps > 0).sum()) > 0
        entries = await redis.xrange(STREAM, min=start_id if start_id != "$" else "-")
        events = [DomainEvent.from_fields(f) for _, f in entries]
        mine = [e for e in events if e.subject == job.name]
        assert {e.type for e in mine} == {"EVENT_TYPE_INGESTION_SUCCEEDED",
                                          "EVENT_TYPE_GAP_DETECTED"}
    finally:
        await redis.aclose()


async def test_with_a_validation_service_its_gap_events_are_the_only_ones(
        make_ingestion: MakeIngestion, redis_server: Any) -> None:
    # One event per fact: the validation service records and announces gaps, so the
    # ingestion job that found them says only that it succeeded.
    from usdcarb.platform.events import STREAM, DomainEvent
    from usdcarb.platform.redis import create_redis

    redis = await create_redis(redis_server.url)
    try:
        last = await redis.xrevrange(STREAM, count=1)
        start_id = last[0][0] if last else "-"
        ing = await make_ingestion(redis=redis, validation=True)
        job = await ing.stub.CreateIngestJob(job_request(
            "coinbase", "USDT/USD", "2023-03-10T00:00:00", "2023-03-12T00:00:00"))
        done = await ing.wait(job.name)
        assert done.job.stats.gaps_found > 0
        entries = await redis.xrange(STREAM, min=start_id)
        mine = [DomainEvent.from_fields(f) for _, f in entries]
        mine = [e for e in mine if e.subject == job.name]
        assert [e.type for e in mine] == ["EVENT_TYPE_INGESTION_SUCCEEDED"]
        assert await ing.quality.fetchval("SELECT count(*) FROM data_gaps") > 0
    finally:
        await redis.aclose()


async def test_an_original_bar_replaces_a_gap_filled_one(make_ingestion: MakeIngestion) -> None:
    ing = await make_ingestion()
    t = datetime(2023, 3, 10, 0, 5, tzinfo=UTC)
    await ing.pool.execute(
        """INSERT INTO market_data (exchange, symbol, timeframe, ts, open, high, low, close,
           volume, provenance, source) VALUES ('binance','USDC/USDT','1m',$1,1,1,1,1,0,2,'kraken')""",
        t)
    await ing.wait((await ing.stub.CreateIngestJob(job_request(
        "binance", "USDC/USDT", "2023-03-10T00:00:00", "2023-03-10T01:00:00"))).name)
    row = await ing.pool.fetchrow("SELECT provenance, source FROM market_data WHERE ts = $1", t)
    assert (row["provenance"], row["source"]) == (1, "binance")


async def test_depeg_lows_are_not_flagged_while_a_planted_spike_is(
        make_ingestion: MakeIngestion, catalog: Catalog) -> None:
    """Through the validation service: the real USDC/USDT depeg (low 0.822 on 11 March
    04:30) is stored untouched; a bar planted at 3x the price is flagged as a spike."""
    ing = await make_ingestion(validation=True)
    start, end = "2023-03-10T00:00:00", "2023-03-13T00:00:00"
    # pages hold 1000 bars: the third starts 2023-03-11 09:20; plant the spike at its bar 100
    spike_ms = ms("2023-03-11T09:20:00") + 100 * 60_000
    ing.replay.set_faults(skip_pages=2, corrupt=1, corrupt_kind="spike", corrupt_index=100)
    job = await ing.stub.CreateIngestJob(job_request("binance", "USDC/USDT", start, end))
    last = await ing.wait(job.name)
    assert last.outcome.result == cpb.Outcome.RESULT_OK
    candles = await stored(ing.pool, "binance", "USDC/USDT", start, end)
    assert candles.low.min() == pytest.approx(0.822)  # the depeg low, stored as recorded
    spikes = await ing.quality.fetch(
        "SELECT bar_time, severity FROM data_validation_issues WHERE rule LIKE '%spike%'")
    times = {int(r["bar_time"].timestamp() * 1000) for r in spikes}
    assert spike_ms in times
    depeg = (ms("2023-03-10T20:00:00"), ms("2023-03-11T09:20:00"))
    assert not [t for t in times if depeg[0] <= t < depeg[1]]
    quarantined = await ing.quality.fetch("SELECT open_time_ms FROM quarantined_bars")
    assert {r["open_time_ms"] for r in quarantined} == {spike_ms}
    series = catalog.get("binance", "USDC/USDT", "1m")
    assert series is not None
    assert len(candles) + len(quarantined) == len(range(*series.window(ms(start), ms(end))))
