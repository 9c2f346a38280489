"""Series verdicts, verdict-aware cross-venue checks and the peg-aware implied cross on
the real depeg-week data (pure domain, data read from ../shared)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from usdcarb.validation.domain.implied_cross import implied_cross, pair_legs
from usdcarb.validation.domain.model import MINUTE_MS, Bars, Thresholds
from usdcarb.validation.domain.validate import validate_stored
from usdcarb.validation.domain.verdicts import (
    VerdictKind,
    alias_spans,
    is_primary,
    overall,
    series_spans,
    stale_spans,
    suspect_spans,
    usable_bars,
)

from .conftest import real_frame

pytestmark = pytest.mark.unit
TH = Thresholds()
M = MINUTE_MS
REAL = ["binance_btcusdc", "binance_btcusdt", "binance_usdcusdt", "coinbase_btcusd",
        "coinbase_btcusdt", "coinbase_usdtusd", "kraken_btcusd", "kraken_btcusdc",
        "kraken_btcusdt", "kraken_usdcusd", "kraken_usdtusd", "bybit_btcusdc"]


def ms(text: str) -> int:
    return int(pd.Timestamp(text, tz="UTC").value // 1_000_000)


def bars_of(frame: pd.DataFrame) -> Bars:
    return Bars.of(*(frame[c].to_numpy() for c in (
        "open_time_ms", "open", "high", "low", "close", "volume")))


def real(name: str) -> Bars:
    return bars_of(real_frame(name))


def frozen(frame: pd.DataFrame, start: str, end: str) -> pd.DataFrame:
    """A copy of a real series frozen at its last price before ``start`` with zero volume."""
    out = frame.copy()
    span = (out.open_time_ms >= ms(start)) & (out.open_time_ms < ms(end))
    price = float(out.close[out.open_time_ms < ms(start)].iloc[-1])
    out.loc[span, ["open", "high", "low", "close"]] = price
    out.loc[span, "volume"] = 0.0
    return out


@pytest.mark.parametrize("name", REAL)
def test_no_real_series_is_stale_and_none_is_an_alias_of_another(name: str) -> None:
    bars = real(name)
    assert stale_spans(bars, M, TH) == []
    venue = name.split("_")[0]
    same_venue = {(venue, n): real(n) for n in REAL if n.startswith(venue) and n != name}
    assert alias_spans(bars, M, (venue, name), same_venue, TH) == []


def test_a_frozen_copy_of_a_real_series_is_stale_over_the_frozen_span() -> None:
    df = frozen(real_frame("kraken_btcusd"), "2023-03-12 00:00", "2023-03-15 00:00")
    spans = stale_spans(bars_of(df), M, TH)
    assert len(spans) == 1
    s = spans[0]
    assert s.kind == VerdictKind.STALE
    assert (s.start_ms, s.end_ms) == (ms("2023-03-12 00:00"), ms("2023-03-15 00:00"))
    assert "flat zero-volume bars" in s.reason
    assert overall(spans, ms("2023-03-01"), ms("2023-03-12")) == VerdictKind.USABLE
    assert overall(spans, ms("2023-03-13"), ms("2023-03-14")) == VerdictKind.STALE


def test_a_usd_book_served_under_a_usdc_symbol_is_an_alias_of_the_usd_book() -> None:
    usd = real("kraken_btcusd")
    spans = alias_spans(usd, M, ("kraken", "BTC/USDC"),
                        {("kraken", "BTC/USD"): usd, ("kraken", "BTC/USDT"): real("kraken_btcusdt")},
                        TH)
    assert [(s.kind, s.twin) for s in spans] == [(VerdictKind.ALIASED, "kraken:BTC/USD")]
    assert spans[0].match_ratio == 1.0
    assert (spans[0].start_ms, spans[0].end_ms) == (ms("2023-03-01"),
                                                     int(usd.open_time_ms[-1]) + M)
    # The USD book is the primary of the two: it is never the alias.
    assert is_primary(("kraken", "BTC/USD"), ("kraken", "BTC/USDC"))
    assert alias_spans(usd, M, ("kraken", "BTC/USD"), {("kraken", "BTC/USDC"): usd}, TH) == []


def test_an_alias_over_part_of_the_range_has_that_span() -> None:
    usd, usdc = real_frame("kraken_btcusd"), real_frame("kraken_btcusdc")
    mixed = pd.concat([usdc[usdc.open_time_ms < ms("2023-03-08")],
                       usd[usd.open_time_ms >= ms("2023-03-08")]])
    spans = alias_spans(bars_of(mixed), M, ("kraken", "BTC/USDC"),
                        {("kraken", "BTC/USD"): bars_of(usd)}, TH)
    assert len(spans) == 1
    assert (spans[0].start_ms, spans[0].end_ms) == (ms("2023-03-08"),
                                                     int(usd.open_time_ms.iloc[-1]) + M)


def test_suspect_spans_merge_nearby_flags() -> None:
    t = ms("2023-03-10")
    spans = suspect_spans([t, t + 2 * M, t + 100 * M], M, TH)
    assert [(s.start_ms, s.end_ms, s.bars) for s in spans] == [
        (t, t + 3 * M, 2), (t + 100 * M, t + 101 * M, 1)]
    ordered = series_spans(Bars.empty(), M, ("x", "A/B"), {}, [t], TH)
    assert [s.kind for s in ordered] == [VerdictKind.SUSPECT]


def test_usable_bars_drop_stale_and_aliased_spans_only() -> None:
    df = frozen(real_frame("kraken_btcusd"), "2023-03-12 00:00", "2023-03-13 00:00")
    bars = bars_of(df)
    spans = stale_spans(bars, M, TH) + suspect_spans([ms("2023-03-02")], M, TH)
    kept = usable_bars(bars, spans)
    t = kept.open_time_ms
    assert not ((t >= ms("2023-03-12")) & (t < ms("2023-03-13"))).any()
    assert ms("2023-03-02") in set(t.tolist())  # suspect bars stay usable


def _deviation_times(own: Bars, other: Bars, start: str, end: str) -> set[int]:
    _, findings = validate_stored(own, tf_ms=M, now_ms=ms("2024-01-01"), start_ms=ms(start),
                                  end_ms=ms(end), others={"other": other}, th=TH)
    return {f.bar_time_ms for f in findings if f.rule == "cross.deviation"}


def test_two_venue_deviation_names_only_the_venue_with_the_bad_bar() -> None:
    bad_t = ms("2023-03-07 12:00")
    binance = real_frame("binance_btcusdc")
    row = binance.open_time_ms == bad_t
    binance.loc[row, ["open", "high", "low", "close"]] *= 1.06
    binance_bars, bybit = bars_of(binance), real("bybit_btcusdc")
    window = ("2023-03-07 06:00", "2023-03-07 18:00")
    assert bad_t in _deviation_times(binance_bars, bybit, *window)
    assert bad_t not in _deviation_times(bybit, binance_bars, *window)


def test_implied_cross_from_real_kraken_legs_flags_a_planted_divergence_not_the_depeg() -> None:
    usdc, usdt = real("kraken_usdcusd"), real("kraken_usdtusd")
    assert pair_legs("USDC/USDT") == ("USDC/USD", "USDT/USD")
    assert pair_legs("BTC/USDT") is None
    # Kraken's own implied USDC/USDT, as a direct series, agrees with itself through
    # the depeg (it fell to about 0.87 on 2023-03-11): nothing is flagged ...
    common, i, j = np.intersect1d(usdc.open_time_ms, usdt.open_time_ms, return_indices=True)
    cross = usdc.close[i] / usdt.close[j]
    direct = Bars.of(common, cross, cross, cross, cross, usdc.volume[i])
    assert cross.min() < 0.9
    positions = np.arange(len(direct), dtype=np.int64)
    assert implied_cross(direct, positions, [(usdc, usdt)], TH) == []
    # ... while one print 3 % away from the implied cross on a calm day is.
    k = int(np.searchsorted(common, ms("2023-03-06 12:00")))
    planted = direct.close.copy()
    planted[k] *= 0.97
    bad = Bars.of(common, planted, np.maximum(planted, cross), np.minimum(planted, cross),
                  planted, usdc.volume[i])
    found = implied_cross(bad, positions, [(usdc, usdt)], TH)
    assert [f.bar_time_ms for f in found] == [int(common[k])]
    assert "implied cross" in found[0].message


def test_binance_usdc_usdt_against_kraken_implied_cross_spares_the_depeg() -> None:
    binance = real("binance_usdcusdt")
    found = implied_cross(binance, np.arange(len(binance), dtype=np.int64),
                          [(real("kraken_usdcusd"), real("kraken_usdtusd"))], TH)
    times = {f.bar_time_ms for f in found}
    # The depeg (10-14 March) is not bad data, its lows (0.822 at 2023-03-11 04:30) included;
    # the real flash print of 212 USDC at 0.8997 on a calm 3 March is.
    assert not any(ms("2023-03-10") <= t < ms("2023-03-14") for t in times)
    assert ms("2023-03-03 01:47") in times
