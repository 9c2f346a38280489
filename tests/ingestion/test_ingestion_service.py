"""IngestionService RPCs in-process against real PostgreSQL: jobs, markets, candles, CLI."""

from __future__ import annotations

import io

import grpc
import numpy as np
import pytest
from tests.ingestion.conftest import MakeIngestion, job_request, ts

from usdcarb.ingestion import cli
from usdcarb.platform.testing import bearer
from usdcarb.v1 import common_pb2 as cpb
from usdcarb.v1 import ingestion_pb2 as pb

pytestmark = pytest.mark.integration

START, END = "2023-03-10T00:00:00", "2023-03-10T12:00:00"
SERIES = cpb.SeriesKey(exchange="binance", symbol="USDC/USDT", timeframe="1m")
RANGE = cpb.TimeRange(start_time=ts(START + "+00:00"), end_time=ts(END + "+00:00"))


async def test_list_exchanges_and_markets_with_coverage(make_ingestion: MakeIngestion) -> None:
    ing = await make_ingestion()
    exchanges = (await ing.stub.ListExchanges(pb.ListExchangesRequest())).exchanges
    by_name = {e.name: e for e in exchanges}
    assert set(by_name) == {f"exchanges/{x}" for x in ("binance", "coinbase", "kraken", "okx",
                                                       "bybit")}
    assert not by_name["exchanges/kraken"].full_history
    assert by_name["exchanges/binance"].max_bars_per_request == 1000
    await ing.wait((await ing.stub.CreateIngestJob(job_request("binance", "USDC/USDT", START,
                                                               END))).name)
    markets = (await ing.stub.ListMarkets(pb.ListMarketsRequest(
        parent="exchanges/binance", asset="USDC"))).markets
    usdc = {m.symbol: m for m in markets}
    assert set(usdc) == {"BTC/USDC", "USDC/USDT"}
    assert usdc["USDC/USDT"].exchange_symbol == "USDCUSDT"
    assert usdc["USDC/USDT"].stored[0].bar_count == 720
    page1 = await ing.stub.ListMarkets(pb.ListMarketsRequest(parent="exchanges/coinbase",
                                                             page_size=2))
    page2 = await ing.stub.ListMarkets(pb.ListMarketsRequest(
        parent="exchanges/coinbase", page_size=2, page_token=page1.next_page_token))
    assert len(page1.markets) == 2 and page1.next_page_token
    assert not {m.symbol for m in page1.markets} & {m.symbol for m in page2.markets}


async def test_bad_jobs_are_refused_with_field_violations(make_ingestion: MakeIngestion) -> None:
    ing = await make_ingestion(worker_concurrency=0)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ing.stub.CreateIngestJob(job_request("binance", "DOGE/EUR", START, END,
                                                   timeframe="7m"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ingest_job.series.symbol" in (err.value.details() or "")
    assert "ingest_job.series.timeframe" in (err.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ing.stub.CreateIngestJob(job_request("binance", "USDC/USDT", END, START))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_request_id_is_idempotent_and_jobs_list_and_cancel(
        make_ingestion: MakeIngestion) -> None:
    ing = await make_ingestion(worker_concurrency=0)  # jobs stay queued
    a = await ing.stub.CreateIngestJob(job_request("binance", "USDC/USDT", START, END,
                                                   request_id="r1"))
    again = await ing.stub.CreateIngestJob(job_request("binance", "USDC/USDT", START, END,
                                                       request_id="r1"))
    b = await ing.stub.CreateIngestJob(job_request("okx", "USDC/USDT", START, END))
    assert again.name == a.name and a.state == cpb.JOB_STATE_QUEUED
    listed = await ing.stub.ListIngestJobs(pb.ListIngestJobsRequest(page_size=1))
    assert [j.name for j in listed.ingest_jobs] == [b.name] and listed.next_page_token
    rest = await ing.stub.ListIngestJobs(pb.ListIngestJobsRequest(
        page_size=1, page_token=listed.next_page_token))
    assert [j.name for j in rest.ingest_jobs] == [a.name]
    only_okx = await ing.stub.ListIngestJobs(pb.ListIngestJobsRequest(exchange="okx"))
    assert [j.name for j in only_okx.ingest_jobs] == [b.name]
    cancelled = await ing.stub.CancelIngestJob(pb.CancelIngestJobRequest(name=a.name))
    assert cancelled.state == cpb.JOB_STATE_CANCELLED
    last = await ing.wait(a.name)
    assert last.outcome.result == cpb.Outcome.RESULT_CANCELLED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ing.stub.GetIngestJob(pb.GetIngestJobRequest(name="ingestJobs/nope"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_watch_streams_progress_then_the_outcome(make_ingestion: MakeIngestion) -> None:
    ing = await make_ingestion()
    ing.replay.set_faults(latency_ms=60)  # ~15 pages of 300 bars: about a second of work
    job = await ing.stub.CreateIngestJob(job_request("coinbase", "BTC/USD", "2023-03-10T00:00:00",
                                                     "2023-03-13T00:00:00"))
    events = [e async for e in ing.stub.WatchIngestJob(pb.WatchIngestJobRequest(name=job.name))]
    assert [e.HasField("outcome") for e in events][-1] and not any(
        e.HasField("outcome") for e in events[:-1])
    seqs = [e.sequence for e in events]
    assert seqs == sorted(set(seqs)) and len(events) >= 3
    fractions = [e.job.progress.fraction for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    resumed = [e async for e in ing.stub.WatchIngestJob(
        pb.WatchIngestJobRequest(name=job.name, after_sequence=seqs[-2]))]
    assert [e.sequence for e in resumed] == [seqs[-1]]


async def test_get_candles_in_both_layouts_and_stream_them(make_ingestion: MakeIngestion) -> None:
    ing = await make_ingestion()
    await ing.wait((await ing.stub.CreateIngestJob(job_request("binance", "USDC/USDT", START,
                                                               END))).name)
    packed = await ing.stub.GetCandles(pb.GetCandlesRequest(series=SERIES, range=RANGE))
    raw = await ing.stub.GetCandles(pb.GetCandlesRequest(
        series=SERIES, range=RANGE, layout=cpb.COLUMN_LAYOUT_LE_BYTES, include_provenance=True))
    assert packed.count == raw.count == 720
    np.testing.assert_array_equal(np.frombuffer(raw.columns.close, "<f8"), packed.close)
    np.testing.assert_array_equal(np.frombuffer(raw.columns.open_time_ms, "<i8"),
                                  packed.open_time_ms)
    assert set(np.frombuffer(raw.columns.provenance, np.uint8)) == {1}
    assert list(raw.sources) == ["binance"]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ing.stub.GetCandles(pb.GetCandlesRequest(series=SERIES, range=RANGE, max_bars=100))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "StreamCandles" in (err.value.details() or "")
    messages = [m async for m in ing.stub.StreamCandles(pb.StreamCandlesRequest(
        series=SERIES, range=RANGE, batch_size=200))]
    assert messages[-1].outcome.result == cpb.Outcome.RESULT_OK
    streamed = np.concatenate([m.batch.close for m in messages[:-1]])
    np.testing.assert_array_equal(streamed, packed.close)
    assert max(m.batch.count for m in messages[:-1]) <= 200


async def test_cli_backfill_draws_progress_until_the_outcome(
        make_ingestion: MakeIngestion) -> None:
    ing = await make_ingestion()
    out = io.StringIO()
    args = cli.parse_args(["--exchange", "binance", "--symbol", "USDC/USDT", "--start",
                           "2023-03-10", "--end", "2023-03-10T06:00", "--gateway",
                           f"http://{ing.address}",  # a plaintext in-process server
                           "--token", bearer("users/cli", ("trader",))[0][1].removeprefix(
                               "Bearer ")])
    assert await cli.backfill(args, out) == 0
    text = out.getvalue()
    assert "ingestJobs/" in text and "100.0%" in text and "succeeded" in text
    assert "360 stored" in text
