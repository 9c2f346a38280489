"""Gaps: runs of missing bars on a timeframe grid, and how to fill them.

A gap is filled from the same market on another venue at the same timeframe, or by
aggregating a finer timeframe of the same venue; every filled bar carries its
provenance (FILLED_FROM_VENUE / FILLED_FROM_TIMEFRAME) and its source ("kraken",
"binance:1m"). Source bars are copied as they are (volume included: it is the source
venue's volume, which the provenance makes explicit) and only if they pass the per-bar
rules.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from usdcarb.validation.domain.bar_rules import check_bars
from usdcarb.validation.domain.model import I64, Bars, Provenance, Severity, Thresholds


class GapState(enum.StrEnum):
    """State of a gap (names match usdcarb.v1.GapState)."""

    OPEN = "GAP_STATE_OPEN"
    PARTIALLY_FILLED = "GAP_STATE_PARTIALLY_FILLED"
    FILLED = "GAP_STATE_FILLED"
    UNFILLABLE = "GAP_STATE_UNFILLABLE"


@dataclass(frozen=True)
class GapRun:
    """Missing bars opening in [start_ms, end_ms)."""

    start_ms: int
    end_ms: int
    missing: int


def detect_gaps(times: I64, tf_ms: int, *, start_ms: int | None = None,
                end_ms: int | None = None) -> list[GapRun]:
    """Return the runs of grid times missing from ``times`` (ascending, unique, aligned).

    Without ``start_ms``/``end_ms`` only interior runs count (between present bars);
    with them, leading and trailing runs up to the range's grid edges count too.
    """
    t = np.asarray(times, np.int64)
    if start_ms is not None:
        lo = -(-start_ms // tf_ms) * tf_ms  # first grid time >= start
        t = t[t >= lo]
        t = np.r_[lo - tf_ms, t]
    if end_ms is not None:
        hi = -(-end_ms // tf_ms) * tf_ms  # first grid time >= end: a virtual bar there
        t = t[t < hi]
        t = np.r_[t, hi]
    if len(t) < 2:
        return []
    step = np.diff(t)
    at = np.flatnonzero(step > tf_ms)
    return [GapRun(int(t[i] + tf_ms), int(t[i + 1]), int(step[i] // tf_ms - 1)) for i in at]


def aggregate(fine: Bars, tf_ms: int) -> Bars:
    """Aggregate finer bars into ``tf_ms`` bars (first open, max high, min low, last close,
    summed volume); a bucket exists when at least one finer bar is in it."""
    if not len(fine):
        return Bars.empty()
    bucket = fine.open_time_ms - fine.open_time_ms % tf_ms
    starts = np.r_[0, np.flatnonzero(np.diff(bucket)) + 1]
    ends = np.r_[starts[1:], len(bucket)]
    return Bars.of(
        bucket[starts], fine.open[starts], np.maximum.reduceat(fine.high, starts),
        np.minimum.reduceat(fine.low, starts), fine.close[ends - 1],
        np.add.reduceat(fine.volume, starts),
    )


@dataclass(frozen=True)
class FillSource:
    """Bars on the target timeframe offered for filling, labelled for provenance."""

    label: str  # "kraken" or "binance:1m"
    provenance: Provenance
    bars: Bars


@dataclass(frozen=True)
class GapToFill:
    """A recorded gap: its range, missing count and bars filled before."""

    key: int
    start_ms: int
    end_ms: int
    missing: int
    filled_before: int


@dataclass(frozen=True)
class GapOutcome:
    """What filling did to one gap."""

    key: int
    filled_now: int
    sources: tuple[str, ...]
    state: GapState


@dataclass(frozen=True)
class FillPlan:
    """Bars to write (with a source label per bar) and the outcome per gap."""

    bars: Bars
    labels: tuple[str, ...]
    outcomes: tuple[GapOutcome, ...]


def gap_state(missing: int, filled: int, still_missing: int) -> GapState:
    """Return the state of a gap of ``missing`` bars with ``filled`` filled in total."""
    if still_missing == 0:
        return GapState.FILLED
    if filled > 0:
        return GapState.PARTIALLY_FILLED
    return GapState.UNFILLABLE


def plan_fill(gaps: Sequence[GapToFill], present: I64, tf_ms: int,
              sources: Sequence[FillSource], th: Thresholds, now_ms: int) -> FillPlan:
    """Pick, for each missing bar of each gap, the first source (in order) that has a
    valid bar at that time."""
    usable = [_valid(s, tf_ms, th, now_ms) for s in sources]
    chosen: list[Bars] = []
    labels: list[str] = []
    outcomes: list[GapOutcome] = []
    for gap in gaps:
        grid = np.arange(gap.start_ms, gap.end_ms, tf_ms, dtype=np.int64)
        missing = grid[~np.isin(grid, present)]
        used: list[str] = []
        filled = 0
        for src, bars in zip(sources, usable, strict=True):
            if not missing.size:
                break
            take = np.isin(bars.open_time_ms, missing)
            if not take.any():
                continue
            picked = bars.take(take)
            picked = Bars(picked.open_time_ms, picked.open, picked.high, picked.low,
                          picked.close, picked.volume,
                          np.full(len(picked), src.provenance, np.uint8))
            chosen.append(picked)
            labels += [src.label] * len(picked)
            used.append(src.label)
            filled += len(picked)
            missing = missing[~np.isin(missing, picked.open_time_ms)]
        total = gap.filled_before + filled
        outcomes.append(GapOutcome(gap.key, filled, tuple(used),
                                   gap_state(gap.missing, total, int(missing.size))))
    if not chosen:
        return FillPlan(Bars.empty(), (), tuple(outcomes))
    bars = Bars(*(np.concatenate([getattr(b, f) for b in chosen]) for f in (
        "open_time_ms", "open", "high", "low", "close", "volume", "provenance")))
    return FillPlan(bars, tuple(labels), tuple(outcomes))


def _valid(src: FillSource, tf_ms: int, th: Thresholds, now_ms: int) -> Bars:
    """Keep the source bars that pass every ERROR per-bar rule (unique times)."""
    bars = src.bars
    if not len(bars):
        return bars
    bad = {f.index for f in check_bars(bars, tf_ms, now_ms, th) if f.severity == Severity.ERROR}
    # Only bars the source venue itself produced: never a fill of a fill.
    keep = bars.provenance == Provenance.ORIGINAL
    if bad:
        keep[list(bad)] = False
    keep &= np.r_[True, np.diff(bars.open_time_ms) > 0]
    return bars.take(keep)
