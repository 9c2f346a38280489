"""Run every rule: over a batch about to be stored, or over a stored range."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from usdcarb.validation.domain.bar_rules import check_bars
from usdcarb.validation.domain.cross_venue import clock_skew, deviations, median_returns
from usdcarb.validation.domain.implied_cross import implied_cross
from usdcarb.validation.domain.model import (
    I64,
    Bars,
    Finding,
    Mask,
    Severity,
    Thresholds,
)
from usdcarb.validation.domain.series_rules import (
    duplicates,
    spikes,
    stale_runs,
    stored_conflicts,
)

_SEVERITY_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


@dataclass(frozen=True)
class Verdict:
    """Which bars of a batch are accepted, and every finding (ERROR ones quarantine)."""

    accepted: Mask
    findings: tuple[Finding, ...]

    def errors_by_index(self) -> dict[int, list[Finding]]:
        """Return the ERROR findings of each rejected bar, the first rule first."""
        out: dict[int, list[Finding]] = {}
        for f in self.findings:
            if f.severity == Severity.ERROR and f.index >= 0:
                out.setdefault(f.index, []).append(f)
        return out


def _ordered(findings: list[Finding]) -> tuple[Finding, ...]:
    return tuple(sorted(findings, key=lambda f: (f.index, _SEVERITY_ORDER[f.severity])))


def _rejected(findings: list[Finding], n: int) -> Mask:
    bad = np.zeros(n, bool)
    idx = [f.index for f in findings if f.severity == Severity.ERROR and f.index >= 0]
    bad[idx] = True
    return bad


def series_checks(series: Bars, positions: I64, *, tf_ms: int, others: Mapping[str, Bars],
                  th: Thresholds, report_time_ms: int,
                  legs: Sequence[tuple[Bars, Bars]] = ()) -> list[Finding]:
    """Stale runs, spikes, with other venues deviation and clock skew, and with the legs
    of a stablecoin pair's implied cross (numerator, denominator) the implied cross.

    ``series`` is ascending with unique times and valid prices; ``positions[j]`` is the
    index reported for row j, -1 for context rows (judged, but not reported on).
    """
    findings = stale_runs(series, positions, th)
    other_returns = median_returns(series.open_time_ms, others) if others else None
    own_spikes = spikes(series, positions, th, other_returns, report_context=True)
    findings += [f for f in own_spikes if f.index >= 0]
    if others:
        own_flagged = other_flagged = None
        if len(others) == 1:
            # Two venues: a departure is named on the one whose own rules flag it.
            own_flagged = np.isin(series.open_time_ms, [f.bar_time_ms for f in own_spikes])
            other = next(iter(others.values()))
            other_flagged = lambda: _spiked(series.open_time_ms, other, th)  # noqa: E731
        findings += deviations(series, positions, others, th, own_flagged=own_flagged,
                               other_flagged=other_flagged)
        findings += clock_skew(series, tf_ms, others, th, report_time_ms=report_time_ms)
    if legs:
        findings += implied_cross(series, positions, legs, th)
    return findings


def _spiked(times: I64, other: Bars, th: Thresholds) -> Mask:
    """Which of ``times`` the other venue's own spike rule flags on its bars."""
    ok = other.take(_valid_prices(other))
    flagged = spikes(ok, np.arange(len(ok), dtype=np.int64), th)
    return np.isin(times, [f.bar_time_ms for f in flagged])


def validate_batch(batch: Bars, *, tf_ms: int, now_ms: int, stored: Bars | None = None,
                   others: Mapping[str, Bars] | None = None,
                   th: Thresholds | None = None,
                   legs: Sequence[tuple[Bars, Bars]] = ()) -> Verdict:
    """Validate bars about to be stored against the stored bars around them.

    ``stored`` holds this series' stored bars around the batch (context for conflicts and
    spikes); ``others`` the same market on other venues, for the cross-venue rules.
    """
    th = th or Thresholds()
    n = len(batch)
    stored = stored if stored is not None else Bars.empty()
    findings = check_bars(batch, tf_ms, now_ms, th)
    findings += duplicates(batch)
    findings += stored_conflicts(batch, stored, th)
    ok_idx = np.flatnonzero(~_rejected(findings, n))
    if ok_idx.size:
        ok_idx = ok_idx[np.argsort(batch.open_time_ms[ok_idx], kind="stable")]
        series, positions = _with_context(batch, ok_idx, stored)
        findings += series_checks(series, positions, tf_ms=tf_ms, others=others or {}, th=th,
                                  report_time_ms=int(batch.open_time_ms[ok_idx[0]]), legs=legs)
    return Verdict(~_rejected(findings, n), _ordered(findings))


def _with_context(batch: Bars, ok_idx: I64, stored: Bars) -> tuple[Bars, I64]:
    fresh = batch.take(ok_idx)
    if not len(stored):  # nothing around it (an import into an empty range): as it is
        return fresh, ok_idx.astype(np.int64)
    keep = ~np.isin(stored.open_time_ms, fresh.open_time_ms) & _valid_prices(stored)
    ctx = stored.take(keep)
    ts = np.r_[ctx.open_time_ms, fresh.open_time_ms]
    order = np.argsort(ts, kind="stable")
    pos = np.r_[np.full(len(ctx), -1, np.int64), ok_idx.astype(np.int64)][order]
    merged = Bars(*(np.r_[getattr(ctx, f), getattr(fresh, f)][order] for f in (
        "open_time_ms", "open", "high", "low", "close", "volume", "provenance")))
    return merged, pos


def _valid_prices(bars: Bars) -> Mask:
    with np.errstate(invalid="ignore"):
        return np.asarray(np.isfinite(bars.close) & (bars.close > 0), bool)


def validate_stored(bars: Bars, *, tf_ms: int, now_ms: int, start_ms: int, end_ms: int,
                    others: Mapping[str, Bars] | None = None,
                    th: Thresholds | None = None,
                    legs: Sequence[tuple[Bars, Bars]] = ()) -> tuple[int, tuple[Finding, ...]]:
    """Run every rule over stored bars; report on those in [start_ms, end_ms).

    ``bars`` may extend beyond the range as context. Indices count the bars in range.
    Return the number of bars checked and the findings.
    """
    th = th or Thresholds()
    inside = (bars.open_time_ms >= start_ms) & (bars.open_time_ms < end_ms)
    checked = int(inside.sum())
    findings = check_bars(bars.take(inside), tf_ms, now_ms, th)
    valid = _valid_prices(bars)
    series = bars.take(valid)
    positions = np.where(inside, np.cumsum(inside) - 1, -1).astype(np.int64)[valid]
    if checked:
        first = int(bars.open_time_ms[inside][0])
        findings += series_checks(series, positions, tf_ms=tf_ms, others=others or {}, th=th,
                                  report_time_ms=first, legs=legs)
    return checked, _ordered(findings)
