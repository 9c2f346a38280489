"""Validation against the real depeg-week data (March 2023), read from ../shared.

Gaps in the Coinbase and Kraken series are found and filled from another venue with
provenance; the USDC/USDT depeg lows on Binance.US are not bad data while a planted
spike is; a planted bad bar on one venue is caught across venues, the real depeg not.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from usdcarb.v1 import common_pb2 as cpb
from usdcarb.v1 import validation_pb2 as pb

from .conftest import Env, real_frame
from .helpers import batch_of, time_range

pytestmark = pytest.mark.integration

MARCH = time_range("2023-03-01", "2023-03-22")
DEPEG = ("2023-03-10 00:00", "2023-03-14 00:00")


def ms(text: str) -> int:
    return int(pd.Timestamp(text, tz="UTC").value // 1_000_000)


def series(exchange: str, symbol: str, timeframe: str = "1m") -> cpb.SeriesKey:
    return cpb.SeriesKey(exchange=exchange, symbol=symbol, timeframe=timeframe)


def grid_missing(frame: pd.DataFrame) -> set[int]:
    grid = set(range(ms("2023-03-01"), ms("2023-03-22"), 60_000))
    return grid - set(frame.open_time_ms.tolist())


@pytest.mark.parametrize(("own", "other", "symbol", "missing"), [
    (("coinbase", "coinbase_usdtusd"), ("kraken", "kraken_usdtusd"), "USDT/USD", 313),
    (("kraken", "kraken_btcusd"), ("coinbase", "coinbase_btcusd"), "BTC/USD", 61),
])
async def test_real_gaps_are_found_and_filled_from_another_venue_with_provenance(
    env: Env, own: tuple[str, str], other: tuple[str, str], symbol: str, missing: int
) -> None:
    own_df, other_df = real_frame(own[1]), real_frame(other[1])
    await env.load(own[0], symbol, own_df)
    await env.load(other[0], symbol, other_df)
    key = series(own[0], symbol)

    found = await env.stub.ValidateRange(pb.ValidateRangeRequest(series=key, range=MARCH))
    assert found.bars_checked == len(own_df)
    assert sum(g.missing_bars for g in found.gaps) == missing
    assert all(g.state == pb.GAP_STATE_OPEN for g in found.gaps)
    again = await env.stub.ValidateRange(pb.ValidateRangeRequest(series=key, range=MARCH))
    assert [g.name for g in again.gaps] == [g.name for g in found.gaps]  # recorded once

    holes = grid_missing(own_df)
    fillable = holes & set(other_df.open_time_ms.tolist())
    dry = await env.stub.FillGaps(pb.FillGapsRequest(series=key, dry_run=True))
    assert dry.bars_filled == len(fillable)
    assert await env.market.fetchval(
        f"SELECT count(*) FROM {env.table} WHERE provenance <> 1") == 0

    filled = await env.stub.FillGaps(pb.FillGapsRequest(series=key))
    assert filled.bars_filled == len(fillable)
    assert sum(g.filled_bars for g in filled.gaps) == len(fillable)
    states = {g.state for g in filled.gaps}
    assert pb.GAP_STATE_FILLED in states
    for g in filled.gaps:
        if g.filled_bars:
            assert list(g.filled_from) == [other[0]]
    rows = await env.market.fetch(
        f"SELECT (extract(epoch FROM ts) * 1000)::bigint AS t, open, high, low, close, volume, "
        f"provenance, source FROM {env.table} WHERE exchange = $1 AND provenance <> 1 "
        "ORDER BY ts", own[0])
    assert {r["t"] for r in rows} == fillable
    assert {(r["provenance"], r["source"]) for r in rows} == {(2, other[0])}
    by_time = other_df.set_index("open_time_ms")
    for r in rows[:50]:
        src = by_time.loc[r["t"]]
        assert (r["open"], r["close"], r["volume"]) == (src.open, src.close, src.volume)

    summary = await env.stub.GetQualitySummary(
        pb.GetQualitySummaryRequest(series=key, range=MARCH))
    assert summary.expected_bars == 30_240
    assert summary.original_bars == len(own_df)
    assert summary.filled_bars == len(fillable)
    assert summary.missing_bars == missing - len(fillable)
    assert summary.coverage == pytest.approx((len(own_df) + len(fillable)) / 30_240)
    refill = await env.stub.FillGaps(pb.FillGapsRequest(series=key))
    assert refill.bars_filled == 0  # nothing new: idempotent


async def test_depeg_lows_are_not_bad_data_but_a_planted_spike_is(env: Env) -> None:
    """Ingest Binance.US USDC/USDT 9-14 March page by page, as ingestion does."""
    df = real_frame("binance_usdcusdt")
    df = df[(df.open_time_ms >= ms("2023-03-09")) & (df.open_time_ms < ms("2023-03-14"))]
    df = df.reset_index(drop=True)
    planted = int(np.flatnonzero(df.open_time_ms == ms("2023-03-09 12:00"))[0])
    for col in ("open", "high", "low", "close"):
        df.loc[planted, col] *= 1.06
    key = series("binance", "USDC/USDT")
    quarantined: list[int] = []
    for start in range(0, len(df), 1000):
        page = df.iloc[start:start + 1000]
        got = await env.stub.ValidateCandles(
            pb.ValidateCandlesRequest(batch=batch_of(key, page), record=True))
        accepted = page[np.array(got.accepted)]
        quarantined += page.open_time_ms[~np.array(got.accepted)].tolist()
        await env.load("binance", "USDC/USDT", accepted)
    assert quarantined == [int(df.open_time_ms[planted])]
    bars = await env.stub.ListQuarantinedBars(pb.ListQuarantinedBarsRequest(
        filter=pb.SeriesFilter(exchange="binance", symbol="USDC/USDT")))
    assert [(b.open_time_ms, list(b.rules)) for b in bars.bars] == [
        (quarantined[0], ["series.spike"])]
    assert bars.bars[0].reason.startswith("expected |robust z| <= 12")

    # The depeg itself (low 0.822 at 04:30 on the 11th) and its real swings: no ERROR.
    checked = await env.stub.ValidateRange(pb.ValidateRangeRequest(
        series=key, range=time_range(*DEPEG)))
    assert checked.bars_checked == 4 * 1440
    assert not [f for f in checked.findings if f.severity == cpb.SEVERITY_ERROR]
    issues = await env.stub.ListValidationIssues(pb.ListValidationIssuesRequest(
        filter=pb.SeriesFilter(exchange="binance", range=time_range(*DEPEG)),
        min_severity=cpb.SEVERITY_WARNING, page_size=1000))
    assert not [i for i in issues.issues if i.finding.rule.startswith("series.spike")]
    low = await env.market.fetchval(
        f"SELECT low FROM {env.table} WHERE exchange = 'binance' AND ts = $1",
        datetime(2023, 3, 11, 4, 30, tzinfo=UTC))
    assert low == pytest.approx(0.822)
    # The planted bar left a one-bar gap, recorded when the next page came in.
    gaps = await env.stub.ListGaps(pb.ListGapsRequest(
        filter=pb.SeriesFilter(exchange="binance", symbol="USDC/USDT")))
    assert [(g.range.start_time.ToMilliseconds(), g.missing_bars) for g in gaps.gaps] == [
        (quarantined[0], 1)]
    assert [e.type for e in env.events.events].count("EVENT_TYPE_DATA_ISSUE") == 1


async def test_cross_venue_deviation_catches_a_planted_bar_not_the_real_depeg(env: Env) -> None:
    frames = {v: real_frame(f"{v}_btcusdc") for v in ("binance", "kraken", "bybit")}
    bad_time = ms("2023-03-11 06:30")
    binance = frames["binance"].copy()
    row = binance.open_time_ms == bad_time
    for col in ("open", "high", "low", "close"):
        binance.loc[row, col] *= 1.10
    frames["binance"] = binance
    for venue, frame in frames.items():
        await env.load(venue, "BTC/USDC", frame)
    got = await env.stub.ValidateRange(pb.ValidateRangeRequest(
        series=series("binance", "BTC/USDC"), range=time_range(*DEPEG), cross_venue=True))
    deviations = [f for f in got.findings if f.rule == "cross.deviation"]
    assert [f.bar_time.ToMilliseconds() for f in deviations] == [bad_time]
    assert deviations[0].severity == cpb.SEVERITY_WARNING
    assert not [f for f in got.findings if f.rule == "cross.clock_skew"]
    for venue in ("kraken", "bybit"):  # the real dispersion on the other venues: no flag
        other = await env.stub.ValidateRange(pb.ValidateRangeRequest(
            series=series(venue, "BTC/USDC"), range=time_range(*DEPEG), cross_venue=True))
        assert not [f for f in other.findings if f.rule == "cross.deviation"
                    and f.bar_time.ToMilliseconds() != bad_time]

