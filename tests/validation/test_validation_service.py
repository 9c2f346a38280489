"""ValidationService over gRPC (in-process server) against real PostgreSQL and Redis."""

from __future__ import annotations

import math
from typing import Any

import grpc
import numpy as np
import pandas as pd
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from usdcarb.platform.events import STREAM, DomainEvent
from usdcarb.platform.redis import create_redis
from usdcarb.v1 import common_pb2 as cpb
from usdcarb.v1 import validation_pb2 as pb
from usdcarb.validation.main import RedisEvents

from .conftest import Env
from .helpers import batch_of, time_range

pytestmark = pytest.mark.integration

M = 60_000
T0 = 1_678_406_400_000  # 2023-03-10T00:00Z
KEY = cpb.SeriesKey(exchange="binance", symbol="USDC/USDT", timeframe="1m")


def frame(n: int, start: int = T0, price: float = 1.0, step: int = M) -> pd.DataFrame:
    rng = np.random.default_rng(n)
    close = price * np.exp(np.cumsum(rng.normal(0, 2e-4, n)))
    return pd.DataFrame({"open_time_ms": start + step * np.arange(n), "open": close,
                         "high": close * 1.0002, "low": close * 0.9998, "close": close,
                         "volume": np.full(n, 3.0)})


def violations(err: grpc.aio.AioRpcError) -> dict[str, str]:
    status = rpc_status.from_call(err)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            detail.Unpack(br)
            return {v.field: v.description for v in br.field_violations}
    raise AssertionError("no BadRequest detail")


async def invalid(call: Any) -> dict[str, str]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return violations(info.value)


def malformed() -> pd.DataFrame:
    f = frame(12)
    f.loc[1, "close"] = math.nan
    f.loc[2, "volume"] = -1.0
    f.loc[3, ["high", "low"]] = [0.5, 1.5]
    f.loc[4, "open_time_ms"] += 1234
    f.loc[5, "open_time_ms"] = T0 + 20_000_000 * M  # far in the future
    return pd.concat([f, f.iloc[[7]]], ignore_index=True)  # 12: a duplicate of row 7


async def test_validate_candles_quarantines_every_malformed_bar_with_its_reason(env: Env) -> None:
    got = await env.stub.ValidateCandles(
        pb.ValidateCandlesRequest(batch=batch_of(KEY, malformed()), record=True))
    assert got.accepted_count == 7 and got.quarantined_count == 6
    assert [i for i, ok in enumerate(got.accepted) if not ok] == [1, 2, 3, 4, 5, 12]
    listed = await env.stub.ListQuarantinedBars(pb.ListQuarantinedBarsRequest(
        filter=pb.SeriesFilter(exchange="binance")))
    rules = {b.open_time_ms: list(b.rules) for b in listed.bars}
    f = malformed()
    assert rules == {
        int(f.open_time_ms[1]): ["bar.non_finite"], int(f.open_time_ms[2]): ["bar.negative"],
        int(f.open_time_ms[3]): ["bar.high_below_low", "bar.high_below_body",
                                 "bar.low_above_body"],
        int(f.open_time_ms[4]): ["bar.misaligned"], int(f.open_time_ms[5]): ["bar.future"],
        int(f.open_time_ms[7]): ["series.duplicate"]}
    nan_bar = next(b for b in listed.bars if b.open_time_ms == int(f.open_time_ms[1]))
    assert math.isnan(nan_bar.close) and nan_bar.reason == "expected a finite close, got nan"
    # Re-validating the same page records nothing twice.
    await env.stub.ValidateCandles(
        pb.ValidateCandlesRequest(batch=batch_of(KEY, malformed()), record=True))
    assert await env.quality.fetchval("SELECT count(*) FROM quarantined_bars") == 6
    issues = await env.stub.ListValidationIssues(pb.ListValidationIssuesRequest(page_size=100))
    assert len(issues.issues) == await env.quality.fetchval(
        "SELECT count(*) FROM data_validation_issues") == 9  # 8 ERROR + out of order
    # The quarantined bars make the series SUSPECT there: one verdict change, not two.
    assert [e.type for e in env.events.events] == ["EVENT_TYPE_DATA_ISSUE",
                                                   "EVENT_TYPE_GAP_DETECTED",
                                                   "EVENT_TYPE_SERIES_VERDICT_CHANGED"]
    assert env.events.events[0].data["count"] == 8
    assert env.events.events[2].data["after"] == "SERIES_VERDICT_KIND_SUSPECT"
    # The rejected bars left a hole in what will be stored: bars 1-5 are missing.
    gaps = await env.stub.ListGaps(pb.ListGapsRequest())
    assert [(g.range.start_time.ToMilliseconds(), g.missing_bars) for g in gaps.gaps] == [
        (T0 + M, 5)]


async def test_validate_candles_without_record_writes_nothing(env: Env) -> None:
    got = await env.stub.ValidateCandles(pb.ValidateCandlesRequest(batch=batch_of(KEY,
                                                                                  malformed())))
    assert got.quarantined_count == 6
    assert await env.quality.fetchval("SELECT count(*) FROM quarantined_bars") == 0
    assert await env.quality.fetchval("SELECT count(*) FROM data_validation_issues") == 0


async def test_le_bytes_layout_is_read_like_packed(env: Env) -> None:
    f = malformed()
    cols = cpb.CandleColumns(
        open_time_ms=f.open_time_ms.to_numpy("<i8").tobytes(),
        **{c: f[c].to_numpy("<f8").tobytes() for c in ("open", "high", "low", "close",
                                                        "volume")})
    got = await env.stub.ValidateCandles(pb.ValidateCandlesRequest(
        batch=cpb.CandleBatch(series=KEY, columns=cols, count=len(f))))
    packed = await env.stub.ValidateCandles(pb.ValidateCandlesRequest(batch=batch_of(KEY, f)))
    assert list(got.accepted) == list(packed.accepted)
    assert [x.rule for x in got.findings] == [x.rule for x in packed.findings]


async def test_bad_requests_are_invalid_argument_with_field_violations(env: Env) -> None:
    s = env.stub
    assert "batch" in await invalid(s.ValidateCandles(pb.ValidateCandlesRequest()))
    short = batch_of(KEY, frame(5))
    del short.close[-1]
    assert "batch.close" in await invalid(s.ValidateCandles(pb.ValidateCandlesRequest(
        batch=short)))
    bad_key = cpb.SeriesKey(exchange="", symbol="USDC/USDT", timeframe="7m")
    v = await invalid(s.ValidateCandles(pb.ValidateCandlesRequest(
        batch=batch_of(bad_key, frame(3)))))
    assert set(v) == {"batch.series.exchange", "batch.series.timeframe"}
    cols = cpb.CandleColumns(open_time_ms=b"\x00" * 7)
    assert "batch.columns.open_time_ms" in await invalid(s.ValidateCandles(
        pb.ValidateCandlesRequest(batch=cpb.CandleBatch(series=KEY, columns=cols))))
    assert "range" in await invalid(s.ValidateRange(pb.ValidateRangeRequest(series=KEY)))
    backwards = time_range("2023-03-02", "2023-03-01")
    assert "range.end_time" in await invalid(s.ValidateRange(pb.ValidateRangeRequest(
        series=KEY, range=backwards)))
    assert "page_token" in await invalid(s.ListGaps(pb.ListGapsRequest(page_token="junk")))
    assert "page_size" in await invalid(s.ListQuarantinedBars(
        pb.ListQuarantinedBarsRequest(page_size=-1)))
    assert "filter.timeframe" in await invalid(s.ListValidationIssues(
        pb.ListValidationIssuesRequest(filter=pb.SeriesFilter(timeframe="2m"))))
    assert "sources[0].timeframe" in await invalid(s.FillGaps(pb.FillGapsRequest(
        series=KEY, sources=[pb.FillSource(timeframe="5m")])))
    assert "sources[0].exchange" in await invalid(s.FillGaps(pb.FillGapsRequest(
        series=KEY, sources=[pb.FillSource(exchange="binance")])))
    assert "series.symbol" in await invalid(s.GetQualitySummary(pb.GetQualitySummaryRequest(
        series=cpb.SeriesKey(exchange="binance", timeframe="1m"))))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await s.GetQualitySummary(pb.GetQualitySummaryRequest(series=KEY))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_listings_page_with_tokens_bound_to_their_filters(env: Env) -> None:
    f = frame(60)
    holes = f.drop(index=[5, 6, 20, 33, 34, 35, 50])
    await env.load("binance", "USDC/USDT", holes)
    got = await env.stub.ValidateRange(pb.ValidateRangeRequest(
        series=KEY, range=time_range("2023-03-10 00:00", "2023-03-10 01:00")))
    assert got.bars_checked == 53
    assert [g.missing_bars for g in got.gaps] == [2, 1, 3, 1]
    seen: list[str] = []
    token = ""
    for _ in range(10):
        page = await env.stub.ListGaps(pb.ListGapsRequest(
            filter=pb.SeriesFilter(exchange="binance"), page_size=3, page_token=token))
        seen += [g.name for g in page.gaps]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == 4 == len(set(seen))
    starts = [g.range.start_time.ToMilliseconds() for g in got.gaps]
    listed = await env.stub.ListGaps(pb.ListGapsRequest(filter=pb.SeriesFilter(
        exchange="binance")))
    assert [g.range.start_time.ToMilliseconds() for g in listed.gaps] == starts[::-1]
    first = await env.stub.ListGaps(pb.ListGapsRequest(page_size=1))
    assert "page_token" in await invalid(env.stub.ListGaps(pb.ListGapsRequest(
        page_size=1, page_token=first.next_page_token, state=pb.GAP_STATE_FILLED)))
    overlapping = await env.stub.ListGaps(pb.ListGapsRequest(filter=pb.SeriesFilter(
        range=time_range("2023-03-10 00:30", "2023-03-10 00:40"))))
    assert [g.missing_bars for g in overlapping.gaps] == [3]
    open_only = await env.stub.ListGaps(pb.ListGapsRequest(state=pb.GAP_STATE_FILLED))
    assert not open_only.gaps
    assert [e.type for e in env.events.events] == ["EVENT_TYPE_GAP_DETECTED"]


async def test_issue_listing_filters_by_severity_and_rule(env: Env) -> None:
    f = frame(40)
    f.loc[10:30, ["open", "high", "low", "close"]] = 1.0
    f.loc[10:30, "volume"] = 0.0  # a stale run: INFO
    f.loc[35, "close"] = math.nan  # ERROR
    await env.stub.ValidateCandles(pb.ValidateCandlesRequest(batch=batch_of(KEY, f),
                                                             record=True))
    every = await env.stub.ListValidationIssues(pb.ListValidationIssuesRequest())
    assert {i.finding.rule for i in every.issues} == {"series.stale", "bar.non_finite"}
    errors = await env.stub.ListValidationIssues(pb.ListValidationIssuesRequest(
        min_severity=cpb.SEVERITY_ERROR))
    assert [i.finding.rule for i in errors.issues] == ["bar.non_finite"]
    stale = await env.stub.ListValidationIssues(pb.ListValidationIssuesRequest(
        rule="series.stale"))
    assert [(i.finding.value, i.name.startswith("validationIssues/")) for i in
            stale.issues] == [(21.0, True)]
    assert stale.issues[0].series == KEY


async def test_fill_from_a_finer_timeframe_of_the_same_venue(env: Env) -> None:
    five = cpb.SeriesKey(exchange="kraken", symbol="BTC/USD", timeframe="5m")
    coarse = frame(24, step=5 * M, price=20_000).drop(index=[7, 8])
    fine = frame(120, price=20_000)
    await env.load("kraken", "BTC/USD", coarse, timeframe="5m")
    await env.load("kraken", "BTC/USD", fine, timeframe="1m")
    found = await env.stub.ValidateRange(pb.ValidateRangeRequest(
        series=five, range=time_range("2023-03-10 00:00", "2023-03-10 02:00")))
    assert [g.missing_bars for g in found.gaps] == [2]
    filled = await env.stub.FillGaps(pb.FillGapsRequest(
        series=five, sources=[pb.FillSource(timeframe="1m")]))
    assert filled.bars_filled == 2
    assert [(g.state, list(g.filled_from)) for g in filled.gaps] == [
        (pb.GAP_STATE_FILLED, ["kraken:1m"])]
    rows = await env.market.fetch(
        f"SELECT open, high, low, close, volume, provenance, source FROM {env.table} "
        "WHERE timeframe = '5m' AND provenance <> 1 ORDER BY ts")
    window = fine.iloc[35:40]
    assert (rows[0]["open"], rows[0]["close"]) == (window.open.iloc[0], window.close.iloc[-1])
    assert rows[0]["high"] == window.high.max() and rows[0]["volume"] == 15.0
    assert {(r["provenance"], r["source"]) for r in rows} == {(3, "kraken:1m")}
    summary = await env.stub.GetQualitySummary(pb.GetQualitySummaryRequest(series=five))
    assert (summary.expected_bars, summary.original_bars, summary.filled_bars) == (24, 22, 2)
    assert summary.open_gaps == 0 and summary.coverage == 1.0


async def test_an_unfillable_gap_says_so(env: Env) -> None:
    await env.load("binance", "USDC/USDT", frame(30).drop(index=[10, 11]))
    await env.stub.ValidateRange(pb.ValidateRangeRequest(
        series=KEY, range=time_range("2023-03-10 00:00", "2023-03-10 00:30")))
    got = await env.stub.FillGaps(pb.FillGapsRequest(series=KEY))  # no other venue
    assert [(g.state, g.filled_bars) for g in got.gaps] == [(pb.GAP_STATE_UNFILLABLE, 0)]
    assert got.bars_filled == 0


async def test_domain_events_reach_the_redis_stream(redis_server: Any) -> None:
    redis = await create_redis(redis_server.url)
    try:
        before = await redis.xlen(STREAM)
        await RedisEvents(redis).publish(DomainEvent(
            type="EVENT_TYPE_GAP_DETECTED", source="validation", subject="gaps/1",
            summary="1 gap", severity="SEVERITY_WARNING", data={"count": 1}))
        assert await redis.xlen(STREAM) == before + 1
        (_, fields), = (await redis.xrevrange(STREAM, count=1))
        assert DomainEvent.from_fields(fields).subject == "gaps/1"
    finally:
        await redis.aclose()
