"""Series verdicts through the service, on the real depeg-week data read from ../shared:
a planted stale market and a planted alias get their verdicts (span, twin, ratio), are
published, and are ignored by gap filling and the cross-venue reference; the genuine
depeg lows are not flagged by any new rule."""

from __future__ import annotations

import asyncio

import grpc
import pandas as pd
import pytest

from usdcarb.v1 import common_pb2 as cpb
from usdcarb.v1 import validation_pb2 as pb

from .conftest import Env, real_frame
from .helpers import batch_of, time_range

pytestmark = pytest.mark.integration

MARCH = time_range("2023-03-01", "2023-03-22")
FROZEN = ("2023-03-05 00:00", "2023-03-08 00:00")  # Kraken has real gaps there
M = 60_000


def ms(text: str) -> int:
    return int(pd.Timestamp(text, tz="UTC").value // 1_000_000)


def key(exchange: str, symbol: str) -> cpb.SeriesKey:
    return cpb.SeriesKey(exchange=exchange, symbol=symbol, timeframe="1m")


def frozen(frame: pd.DataFrame, start: str, end: str) -> pd.DataFrame:
    """A real series frozen at its last price before ``start`` with zero volume."""
    out = frame.copy()
    span = (out.open_time_ms >= ms(start)) & (out.open_time_ms < ms(end))
    price = float(out.close[out.open_time_ms < ms(start)].iloc[-1])
    out.loc[span, ["open", "high", "low", "close"]] = price
    out.loc[span, "volume"] = 0.0
    return out


def spans(v: pb.SeriesVerdict) -> list[tuple[int, int, int]]:
    return [(s.verdict, s.range.start_time.ToMilliseconds(), s.range.end_time.ToMilliseconds())
            for s in v.spans]


async def test_a_planted_stale_market_is_stale_over_its_span_and_never_a_fill_source(
    env: Env
) -> None:
    kraken, coinbase = real_frame("kraken_btcusd"), real_frame("coinbase_btcusd")
    # "okx" BTC/USD: Coinbase's real series, frozen for three days with zero volume.
    await env.load("okx", "BTC/USD", frozen(coinbase, *FROZEN))
    await env.load("kraken", "BTC/USD", kraken)
    stale = key("okx", "BTC/USD")
    await env.stub.ValidateRange(pb.ValidateRangeRequest(series=stale, range=MARCH))
    got = await env.stub.GetSeriesVerdict(pb.GetSeriesVerdictRequest(series=stale))
    assert got.verdict == pb.SERIES_VERDICT_KIND_STALE
    assert (pb.SERIES_VERDICT_KIND_STALE, ms(FROZEN[0]), ms(FROZEN[1])) in spans(got)
    span = next(s for s in got.spans if s.verdict == pb.SERIES_VERDICT_KIND_STALE)
    assert span.bars > 3 * 1440 - 100 and "flat zero-volume bars" in span.reason
    before = await env.stub.GetSeriesVerdict(pb.GetSeriesVerdictRequest(
        series=stale, range=time_range("2023-03-01", "2023-03-05")))
    assert before.verdict != pb.SERIES_VERDICT_KIND_STALE
    changed = [e for e in env.events.events if e.type == "EVENT_TYPE_SERIES_VERDICT_CHANGED"]
    assert len(changed) == 1 and changed[0].severity == "SEVERITY_WARNING"
    assert changed[0].data["after"] == "SERIES_VERDICT_KIND_STALE"
    assert [a["start_ms"] for a in changed[0].data["added"]
            if a["verdict"] == "SERIES_VERDICT_KIND_STALE"] == [ms(FROZEN[0])]
    # Recomputing without change publishes nothing.
    await env.stub.ValidateRange(pb.ValidateRangeRequest(series=stale, range=MARCH))
    assert len([e for e in env.events.events
                if e.type == "EVENT_TYPE_SERIES_VERDICT_CHANGED"]) == 1

    # Kraken's real gaps are filled from the other venue outside its stale span only.
    own = key("kraken", "BTC/USD")
    await env.stub.ValidateRange(pb.ValidateRangeRequest(series=own, range=MARCH))
    holes = set(range(ms("2023-03-01"), ms("2023-03-22"), M)) - set(kraken.open_time_ms)
    inside = {t for t in holes if ms(FROZEN[0]) <= t < ms(FROZEN[1])}
    assert inside  # real gaps of Kraken in the frozen days
    filled = await env.stub.FillGaps(pb.FillGapsRequest(series=own))
    rows = await env.market.fetch(
        f"SELECT (extract(epoch FROM ts) * 1000)::bigint AS t, source FROM {env.table} "
        "WHERE exchange = 'kraken' AND provenance <> 1")
    got = {r["t"] for r in rows}
    assert filled.bars_filled == len(got) > 0
    assert not got & inside and got <= holes - inside
    assert {r["source"] for r in rows} == {"okx"}

    # The cross-venue reference leaves the stale span out: Kraken's real moves over the
    # three frozen days raise no deviation against a frozen price.
    checked = await env.stub.ValidateRange(pb.ValidateRangeRequest(
        series=own, range=time_range(*FROZEN), cross_venue=True))
    assert not [f for f in checked.findings if f.rule == "cross.deviation"]


async def test_a_usd_book_served_under_a_usdc_symbol_is_an_alias_and_counts_for_nothing(
    env: Env
) -> None:
    usd = real_frame("kraken_btcusd")
    await env.load("kraken", "BTC/USD", usd)
    await env.load("kraken", "BTC/USDC", usd)  # the planted alias
    await env.load("binance", "BTC/USDC", real_frame("binance_btcusdc"))
    bybit = real_frame("bybit_btcusdc")
    await env.load("bybit", "BTC/USDC", bybit)
    alias = key("kraken", "BTC/USDC")
    await env.stub.ValidateRange(pb.ValidateRangeRequest(series=alias, range=MARCH))
    got = await env.stub.GetSeriesVerdict(pb.GetSeriesVerdictRequest(series=alias))
    assert got.verdict == pb.SERIES_VERDICT_KIND_ALIASED
    aliased = [s for s in got.spans if s.verdict == pb.SERIES_VERDICT_KIND_ALIASED]
    assert len(aliased) == 1
    assert (aliased[0].twin.exchange, aliased[0].twin.symbol) == ("kraken", "BTC/USD")
    assert aliased[0].match_ratio == 1.0
    assert aliased[0].range.start_time.ToMilliseconds() == ms("2023-03-01")
    assert "identical to kraken:BTC/USD" in aliased[0].reason
    # The twin, the original book, stays usable.
    await env.stub.ValidateRange(pb.ValidateRangeRequest(series=key("kraken", "BTC/USD"),
                                                         range=MARCH))
    twin = await env.stub.GetSeriesVerdict(pb.GetSeriesVerdictRequest(
        series=key("kraken", "BTC/USD")))
    assert pb.SERIES_VERDICT_KIND_ALIASED not in {s.verdict for s in twin.spans}
    event = next(e for e in env.events.events if e.type == "EVENT_TYPE_SERIES_VERDICT_CHANGED")
    assert event.data["added"][0]["twin"] == "kraken:BTC/USD"

    # Bybit's real gaps are filled from Binance.US, never from the alias asked first.
    own = key("bybit", "BTC/USDC")
    await env.stub.ValidateRange(pb.ValidateRangeRequest(series=own, range=MARCH))
    filled = await env.stub.FillGaps(pb.FillGapsRequest(series=own, sources=[
        pb.FillSource(exchange="kraken"), pb.FillSource(exchange="binance")]))
    assert filled.bars_filled == 208
    assert {s for g in filled.gaps for s in g.filled_from} == {"binance"}


async def test_the_real_depeg_is_not_flagged_by_any_new_rule(env: Env) -> None:
    for name, (venue, symbol) in {
        "binance_usdcusdt": ("binance", "USDC/USDT"), "kraken_usdcusd": ("kraken", "USDC/USD"),
        "kraken_usdtusd": ("kraken", "USDT/USD"), "coinbase_usdtusd": ("coinbase", "USDT/USD"),
    }.items():
        await env.load(venue, symbol, real_frame(name))
    depeg = time_range("2023-03-10", "2023-03-14")
    for venue, symbol in (("binance", "USDC/USDT"), ("kraken", "USDC/USD"),
                          ("kraken", "USDT/USD"), ("coinbase", "USDT/USD")):
        got = await env.stub.ValidateRange(pb.ValidateRangeRequest(
            series=key(venue, symbol), range=depeg, cross_venue=True))
        assert not [f for f in got.findings if f.rule == "cross.implied_cross"], (venue, symbol)
        verdict = await env.stub.GetSeriesVerdict(pb.GetSeriesVerdictRequest(
            series=key(venue, symbol), range=depeg))
        assert verdict.verdict in (pb.SERIES_VERDICT_KIND_USABLE,
                                   pb.SERIES_VERDICT_KIND_SUSPECT), (venue, symbol)
        # The lows (Binance.US 0.822 at 04:30, Kraken 0.874 at 07:15 on the 11th) are in
        # no span at all.
        for low in (ms("2023-03-11 04:30"), ms("2023-03-11 07:15")):
            assert not [s for s in verdict.spans if s.range.start_time.ToMilliseconds() <= low
                        < s.range.end_time.ToMilliseconds()], (venue, symbol, low)
    # The real flash print on calm 3 March (212 USDC sold at 0.8997) is flagged.
    calm = await env.stub.ValidateRange(pb.ValidateRangeRequest(
        series=key("binance", "USDC/USDT"), range=time_range("2023-03-03", "2023-03-04"),
        cross_venue=True))
    assert ms("2023-03-03 01:47") in {f.bar_time.ToMilliseconds() for f in calm.findings
                                      if f.rule == "cross.implied_cross"}


async def test_the_quality_report_carries_verdicts_and_their_history_api_and_cli(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    usd = real_frame("kraken_btcusd")
    await env.load("kraken", "BTC/USD", usd)
    await env.load("kraken", "BTC/USDC", usd)  # the planted alias
    alias = key("kraken", "BTC/USDC")
    await env.stub.ValidateRange(pb.ValidateRangeRequest(series=alias, range=MARCH))
    report = await env.stub.GetQualitySummary(pb.GetQualitySummaryRequest(
        series=alias, range=MARCH))
    assert report.verdict == pb.SERIES_VERDICT_KIND_ALIASED
    assert [(s.verdict, s.twin.symbol) for s in report.verdict_spans] == [
        (pb.SERIES_VERDICT_KIND_ALIASED, "BTC/USD")]
    assert [(c.change, c.span.verdict) for c in report.verdict_history] == [
        ("added", pb.SERIES_VERDICT_KIND_ALIASED)]
    assert report.open_gaps > 0 and report.filled_gaps == 0 and report.unfilled_gaps == 0
    filled = await env.stub.FillGaps(pb.FillGapsRequest(series=alias))
    assert filled.bars_filled == 0  # no other venue has BTC/USDC: every gap is unfillable
    after = await env.stub.GetQualitySummary(pb.GetQualitySummaryRequest(
        series=alias, range=MARCH))
    assert after.unfilled_gaps == report.open_gaps

    from usdcarb.platform.testing import bearer
    from usdcarb.validation.cli import main as data

    token = bearer("users/viewer", ("viewer",))[0][1].removeprefix("Bearer ")
    code = await asyncio.to_thread(data, [
        "quality", "--exchange", "kraken", "--symbol", "BTC/USDC", "--start", "2023-03-01",
        "--end", "2023-03-22", "--gateway", f"http://{env.address}", "--token", token])
    out = capsys.readouterr().out
    assert code == 1  # aliased: not an independent price
    assert out.splitlines()[1] == "verdict: ALIASED"
    assert "twin kraken:BTC/USD (100.0%)" in out
    assert f"{after.unfilled_gaps} unfilled" in out
    assert "added ALIASED 2023-03-01T00:00Z" in out


async def test_gaps_are_repaired_by_policy_as_recorded_pages_reveal_them(env: Env) -> None:
    own = real_frame("coinbase_usdtusd")
    own = own[(own.open_time_ms >= ms("2023-03-10")) & (own.open_time_ms < ms("2023-03-12"))]
    other = real_frame("kraken_usdtusd")
    await env.load("kraken", "USDT/USD", other)
    series = key("coinbase", "USDT/USD")
    assert (await env.stub.GetGapPolicy(pb.GetGapPolicyRequest(series=series))).policy == \
        pb.GAP_POLICY_OFF
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await env.stub.SetGapPolicy(pb.SetGapPolicyRequest(gap_policy=pb.SeriesGapPolicy(
            series=series, policy=pb.GAP_POLICY_FINER_TIMEFRAME, finer_timeframe="5m")))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    set_ = await env.stub.SetGapPolicy(pb.SetGapPolicyRequest(gap_policy=pb.SeriesGapPolicy(
        series=series, policy=pb.GAP_POLICY_BEST_VENUE)))
    assert set_.policy == pb.GAP_POLICY_BEST_VENUE and set_.HasField("update_time")

    for start in range(0, len(own), 300):  # as ingestion does: validate, then store
        page = own.iloc[start:start + 300]
        got = await env.stub.ValidateCandles(pb.ValidateCandlesRequest(
            batch=batch_of(series, page), record=True))
        await env.load("coinbase", "USDT/USD", page[list(got.accepted)])
    times = set(own.open_time_ms.tolist())
    interior = set(range(min(times), max(times), M)) - times
    fillable = interior & set(other.open_time_ms.tolist())
    assert fillable
    rows = await env.market.fetch(
        f"SELECT (extract(epoch FROM ts) * 1000)::bigint AS t, provenance, source "
        f"FROM {env.table} WHERE exchange = 'coinbase' AND provenance <> 1")
    assert {r["t"] for r in rows} == fillable
    assert {(r["provenance"], r["source"]) for r in rows} == {(2, "kraken")}
