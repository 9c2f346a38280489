"""Every validation rule on small arrays (pure domain, no I/O)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from usdcarb.validation.domain.gaps import (
    FillSource,
    GapState,
    GapToFill,
    aggregate,
    detect_gaps,
    plan_fill,
)
from usdcarb.validation.domain.model import Bars, Provenance, Severity, Thresholds
from usdcarb.validation.domain.quality import GapCount, summarize
from usdcarb.validation.domain.validate import validate_batch, validate_stored

pytestmark = pytest.mark.unit

M = 60_000
T0 = 1_678_406_400_000  # 2023-03-10T00:00Z
NOW = T0 + 10_000 * M


def flat(n: int, price: float = 1.0, start: int = T0, volume: float = 10.0) -> Bars:
    ts = start + M * np.arange(n)
    p = np.full(n, price)
    return Bars.of(ts, p, p * 1.0001, p * 0.9999, p, np.full(n, volume))


def with_row(bars: Bars, i: int, **values: float) -> Bars:
    cols = {f: getattr(bars, f).copy() for f in ("open_time_ms", "open", "high", "low",
                                                  "close", "volume")}
    for k, v in values.items():
        cols[k][i] = v
    return Bars.of(**cols)


def errors(bars: Bars, **kw: object) -> dict[int, list[str]]:
    verdict = validate_batch(bars, tf_ms=M, now_ms=NOW, **kw)  # type: ignore[arg-type]
    return {i: [f.rule for f in fs] for i, fs in verdict.errors_by_index().items()}


@pytest.mark.parametrize(("values", "rule", "reason"), [
    ({"close": math.nan}, "bar.non_finite", "expected a finite close, got nan"),
    ({"volume": math.inf}, "bar.non_finite", "expected a finite volume, got inf"),
    ({"volume": -1.0}, "bar.negative", "expected volume >= 0, got -1.0"),
    ({"low": -0.5}, "bar.negative", "expected low >= 0, got -0.5"),
    ({"open": 0.0, "low": 0.0}, "bar.zero_price", "expected a positive open, got 0.0"),
    ({"high": 0.9, "low": 1.1}, "bar.high_below_low", "expected high >= low 1.1, got high 0.9"),
    ({"high": 0.99995}, "bar.high_below_body", "expected high >= max(open, close) 1.0"),
    ({"low": 1.00005}, "bar.low_above_body", "expected low <= min(open, close) 1.0"),
    ({"open_time_ms": T0 + 5 * M + 1234}, "bar.misaligned", "expected an open time on the"),
    ({"open_time_ms": NOW + 2 * M}, "bar.future", "expected an open time <= now"),
])
def test_each_malformed_bar_is_quarantined_with_its_reason(
    values: dict[str, float], rule: str, reason: str
) -> None:
    bars = with_row(flat(20), 5, **values)
    verdict = validate_batch(bars, tf_ms=M, now_ms=NOW)
    assert not verdict.accepted[5]
    assert verdict.accepted.sum() == 19
    first = verdict.errors_by_index()[5]
    assert rule in [f.rule for f in first]
    hit = next(f for f in first if f.rule == rule)
    assert hit.severity == Severity.ERROR and hit.message.startswith(reason), hit.message


def test_identical_duplicates_keep_the_first_and_conflicting_ones_are_all_quarantined() -> None:
    base = flat(6)
    ts = np.r_[base.open_time_ms, base.open_time_ms[2], base.open_time_ms[4]]
    close = np.r_[base.close, base.close[2], base.close[4] * 1.01]
    bars = Bars.of(ts, np.r_[base.open, base.open[2], base.open[4]],
                   np.r_[base.high, base.high[2], 1.02], np.r_[base.low, base.low[2], 0.99],
                   close, np.r_[base.volume, base.volume[2], base.volume[4]])
    got = errors(bars)
    assert got == {6: ["series.duplicate"], 4: ["series.duplicate_conflict"],
                   7: ["series.duplicate_conflict"]}
    verdict = validate_batch(bars, tf_ms=M, now_ms=NOW)
    assert any(f.rule == "series.out_of_order" and f.severity == Severity.INFO
               for f in verdict.findings)


def test_a_bar_differing_from_the_stored_original_is_a_conflict_but_a_resend_is_not() -> None:
    stored = flat(30)
    resend = stored.take(np.arange(10, 20))
    assert errors(resend, stored=stored) == {}
    changed = with_row(resend, 3, close=1.00001)
    assert errors(changed, stored=stored) == {3: ["series.stored_conflict"]}


def test_incomplete_bar_is_a_warning_not_quarantined() -> None:
    bars = flat(3, start=NOW - 2 * M + 1 - (NOW - 2 * M + 1) % M)
    verdict = validate_batch(bars, tf_ms=M, now_ms=bars.open_time_ms[-1] + M // 2)
    assert verdict.accepted.all()
    assert [f.rule for f in verdict.findings] == ["bar.incomplete"]


def test_stale_zero_volume_runs_are_info_or_warning_never_quarantined() -> None:
    live = flat(20)
    dead = flat(300, start=T0 + 20 * M, volume=0.0)
    dead = Bars.of(dead.open_time_ms, dead.close, dead.close, dead.close, dead.close,
                   dead.volume)
    short = Bars.of(dead.open_time_ms[:12], dead.open[:12], dead.high[:12], dead.low[:12],
                    dead.close[:12], dead.volume[:12])
    verdict = validate_batch(short, tf_ms=M, now_ms=NOW, stored=live)
    assert verdict.accepted.all()
    assert [(f.rule, f.severity, f.value) for f in verdict.findings] == [
        ("series.stale", Severity.INFO, 12.0)]
    verdict = validate_batch(dead, tf_ms=M, now_ms=NOW)
    assert verdict.accepted.all()
    assert [(f.rule, f.severity) for f in verdict.findings] == [
        ("series.stale_long", Severity.WARNING)]


def noisy(n: int, seed: int = 7, scale: float = 2e-4, start_price: float = 1.0) -> Bars:
    rng = np.random.default_rng(seed)
    close = start_price * np.exp(np.cumsum(rng.normal(0, scale, n)))
    open_ = np.r_[close[0], close[:-1]]
    return Bars.of(T0 + M * np.arange(n), open_, np.maximum(open_, close) * 1.0001,
                   np.minimum(open_, close) * 0.9999, close, np.full(n, 5.0))


def scaled(bars: Bars, rows: slice | int, factor: float) -> Bars:
    cols = [bars.open.copy(), bars.high.copy(), bars.low.copy(), bars.close.copy()]
    for c in cols:
        c[rows] *= factor
    return Bars.of(bars.open_time_ms, *cols, bars.volume)


def test_an_isolated_excursion_that_reverts_is_a_spike() -> None:
    bars = scaled(noisy(400), 200, 1.08)
    verdict = validate_batch(bars, tf_ms=M, now_ms=NOW)
    spikes = [f for f in verdict.findings if f.rule == "series.spike"]
    assert [f.index for f in spikes] == [200]
    assert spikes[0].severity == Severity.ERROR and spikes[0].value > spikes[0].threshold
    assert not verdict.accepted[200] and verdict.accepted.sum() == 399


def test_a_level_shift_kept_by_the_next_bars_is_not_a_spike() -> None:
    bars = scaled(noisy(400), slice(200, None), 0.85)  # a depeg-like drop that stays
    verdict = validate_batch(bars, tf_ms=M, now_ms=NOW)
    assert not [f for f in verdict.findings if f.rule.startswith("series.spike")]
    assert verdict.accepted.all()


def test_a_move_the_other_venues_make_too_is_not_a_spike() -> None:
    own = scaled(noisy(400), 200, 1.08)
    other = scaled(noisy(400, seed=8), 200, 1.07)
    verdict = validate_batch(own, tf_ms=M, now_ms=NOW, others={"kraken": other})
    assert not [f for f in verdict.findings if f.rule == "series.spike"]


def test_a_jump_on_the_last_bar_is_a_warning_until_the_next_bar_decides() -> None:
    bars = scaled(noisy(300), 299, 1.08)
    verdict = validate_batch(bars, tf_ms=M, now_ms=NOW)
    assert verdict.accepted.all()
    assert [(f.rule, f.index) for f in verdict.findings] == [("series.spike_unconfirmed", 299)]


def test_cross_venue_deviation_flags_one_bad_bar_not_a_persistent_spread() -> None:
    ref = noisy(600, seed=1, scale=1e-3, start_price=20_000)
    other = scaled(noisy(600, seed=2, scale=1e-4), slice(None), 1.0)
    other = Bars.of(ref.open_time_ms, ref.open * other.close, ref.high * other.close * 1.001,
                    ref.low * other.close * 0.999, ref.close * other.close, ref.volume)
    # a persistent 8 % premium from bar 300 on (real dispersion), one 6 % bad bar at 150
    own = scaled(scaled(ref, slice(300, None), 1.08), 150, 1.06)
    verdict = validate_batch(own, tf_ms=M, now_ms=NOW, others={"a": other, "b": ref})
    dev = [f for f in verdict.findings if f.rule == "cross.deviation"]
    assert [f.index for f in dev] == [150]
    assert dev[0].severity == Severity.WARNING


def test_clock_skew_is_the_lag_with_the_best_alignment() -> None:
    ref = noisy(2000, seed=3, scale=1e-3)
    late = Bars.of(ref.open_time_ms + 2 * M, ref.open, ref.high, ref.low, ref.close,
                   ref.volume)
    _, found = validate_stored(late, tf_ms=M, now_ms=NOW, start_ms=0, end_ms=NOW,
                               others={"a": ref})
    skew = [f for f in found if f.rule == "cross.clock_skew"]
    assert len(skew) == 1 and skew[0].value == 2 * M and skew[0].index == -1
    _, found = validate_stored(ref, tf_ms=M, now_ms=NOW, start_ms=0, end_ms=NOW,
                               others={"a": noisy(2000, seed=3, scale=1e-3)})
    assert not [f for f in found if f.rule == "cross.clock_skew"]


def test_gaps_are_runs_of_missing_grid_times() -> None:
    ts = T0 + M * np.array([0, 1, 2, 5, 6, 9])
    runs = detect_gaps(ts, M)
    assert [(r.start_ms - T0, r.end_ms - T0, r.missing) for r in runs] == [
        (3 * M, 5 * M, 2), (7 * M, 9 * M, 2)]
    edged = detect_gaps(ts, M, start_ms=T0 - 2 * M, end_ms=T0 + 12 * M)
    assert [(r.start_ms - T0, r.missing) for r in edged] == [
        (-2 * M, 2), (3 * M, 2), (7 * M, 2), (10 * M, 2)]
    assert [r.missing for r in detect_gaps(np.array([], np.int64), M, start_ms=T0,
                                           end_ms=T0 + 5 * M)] == [5]


def test_aggregating_a_finer_timeframe_builds_ohlcv() -> None:
    fine = Bars.of(T0 + M * np.array([0, 1, 2, 3, 5, 6]), [1, 2, 3, 4, 6, 7],
                   [2, 5, 4, 5, 7, 9], [0.5, 1, 2, 3, 5, 6], [2, 3, 4, 5, 7, 8],
                   [1, 1, 1, 1, 2, 2])
    five = aggregate(fine, 5 * M)
    assert five.open_time_ms.tolist() == [T0, T0 + 5 * M]
    assert five.open.tolist() == [1, 6] and five.high.tolist() == [5, 9]
    assert five.low.tolist() == [0.5, 5] and five.close.tolist() == [5, 8]
    assert five.volume.tolist() == [4, 4]


def test_gap_fill_marks_provenance_and_prefers_the_first_source() -> None:
    present = T0 + M * np.array([0, 1, 5])
    a = flat(3, price=1.01, start=T0 + 2 * M)  # has 2, 3, 4
    b = flat(10, price=1.02)  # has everything
    bad_b = with_row(b, 4, close=math.nan)
    gaps = [GapToFill(1, T0 + 2 * M, T0 + 5 * M, 3, 0), GapToFill(2, T0 + 6 * M, T0 + 8 * M,
                                                                   2, 0)]
    plan = plan_fill(gaps, present, M, [
        FillSource("kraken", Provenance.FILLED_FROM_VENUE, a),
        FillSource("coinbase", Provenance.FILLED_FROM_VENUE, bad_b)], Thresholds(), NOW)
    assert plan.bars.open_time_ms.tolist() == [T0 + 2 * M, T0 + 3 * M, T0 + 4 * M,
                                                T0 + 6 * M, T0 + 7 * M]
    assert plan.labels == ("kraken",) * 3 + ("coinbase",) * 2
    assert set(plan.bars.provenance.tolist()) == {Provenance.FILLED_FROM_VENUE}
    assert [(o.key, o.filled_now, o.sources, o.state) for o in plan.outcomes] == [
        (1, 3, ("kraken",), GapState.FILLED), (2, 2, ("coinbase",), GapState.FILLED)]
    partial = plan_fill([GapToFill(3, T0 + 2 * M, T0 + 5 * M, 3, 0)], present, M,
                        [FillSource("x", Provenance.FILLED_FROM_VENUE, bad_b.take(
                            np.array([3, 4])))], Thresholds(), NOW)
    assert partial.outcomes[0].state == GapState.PARTIALLY_FILLED
    none = plan_fill([GapToFill(4, T0 + 2 * M, T0 + 5 * M, 3, 0)], present, M, [],
                     Thresholds(), NOW)
    assert none.outcomes[0].state == GapState.UNFILLABLE and not len(none.bars)


def test_quality_summary_counts_coverage() -> None:
    bars = Bars.of(T0 + M * np.arange(8), [1] * 8, [1] * 8, [1] * 8, [1] * 8,
                   [0, 1, 1, 1, 1, 1, 0, 1], [1, 1, 1, 1, 1, 1, 2, 3])
    s = summarize(bars, tf_ms=M, start_ms=T0, end_ms=T0 + 10 * M, quarantined=1,
                  gaps=[GapCount(GapState.FILLED, 2, 2), GapCount(GapState.OPEN, 2, 0)],
                  issues_by_severity={"SEVERITY_INFO": 1}, issues_by_rule={"x": 1})
    assert (s.expected_bars, s.original_bars, s.filled_bars, s.quarantined_bars) == (10, 6, 2, 1)
    assert (s.open_gaps, s.missing_bars, s.zero_volume_bars) == (1, 2, 2)
    assert s.coverage == pytest.approx(0.8)
