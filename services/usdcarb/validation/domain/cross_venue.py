"""Rules across venues: deviation from the other venues' median, and clock skew.

The deviation rule compares a bar's close with the median close of the other venues
at the same open time, relative to the *local* level of that spread (the median log
deviation of its neighbouring bars, excluding itself, with a rolling MAD as scale): during the depeg week venues drifted apart for hours
(Binance.US BTC/USDC vs Bybit reached about 11 %), which is real dispersion, while a
bad bar is a one-bar departure from the local spread.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping

import numpy as np
import numpy.typing as npt
import pandas as pd

from usdcarb.validation.domain.model import (
    CLOCK_SKEW,
    DEVIATION,
    F64,
    I64,
    Bars,
    Finding,
    Mask,
    Thresholds,
    finding,
    fmt_ms,
)
from usdcarb.validation.domain.series_rules import MAD_TO_SIGMA


def aligned_closes(times: I64, others: Mapping[str, Bars]) -> F64:
    """Return a (venues x times) matrix of other venues' closes at ``times`` (NaN if absent)."""
    out = np.full((len(others), len(times)), np.nan)
    for k, bars in enumerate(others.values()):
        if not len(bars):
            continue
        pos = np.clip(np.searchsorted(bars.open_time_ms, times), 0, len(bars) - 1)
        hit = bars.open_time_ms[pos] == times
        out[k, hit] = bars.close[pos[hit]]
    return out


def _nanmedian(matrix: F64) -> F64:
    if matrix.shape[0] == 0:
        return np.full(matrix.shape[1], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.asarray(np.nanmedian(matrix, axis=0), np.float64)


def median_close(times: I64, others: Mapping[str, Bars]) -> F64:
    """Return the median close of the other venues at each time (NaN where none has a bar)."""
    return _nanmedian(aligned_closes(times, others))


def median_returns(times: I64, others: Mapping[str, Bars]) -> F64:
    """Return, per row j, the median over venues of log(close[t_j] / close[t_{j-1}])."""
    out = np.full(len(times), np.nan)
    if len(times) < 2 or not others:
        return out
    now = aligned_closes(times[1:], others)
    prev = aligned_closes(times[:-1], others)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[1:] = _nanmedian(np.log(now / prev))
    return out


def departures(d: F64, *, neighbours: int, window: int, z: float, min_dev: float,
               min_scale: float, long_window: int = 0,
               block_scale: bool = False) -> tuple[F64, F64, F64]:
    """Judge a log spread ``d`` against its local level: return (base, excess, limit).

    The local level comes from the neighbours alone, on each side: a bar is judged
    against the side it agrees with best, so a step in the spread (one venue repricing)
    is not a bad bar, while a one-bar departure is far from both sides. A bar departs
    when ``excess`` > ``limit`` (NaN where the spread is unknown). The scale is the
    rolling MAD of the residual over ``window`` (and ``long_window`` when set, so a calm
    hour inside a turbulent day does not look calm), floored at ``min_scale``. With
    ``block_scale`` the rolling median is replaced by the largest median of |residual|
    over the row's block of ``window // 2`` rows and its two neighbours: linear time,
    and never a smaller scale than a calm block next to a turbulent one would give.
    """
    k = neighbours
    shifted = np.full((2 * k, len(d)), np.nan)
    for row, lag in enumerate([*range(-k, 0), *range(1, k + 1)]):
        if lag < 0:
            shifted[row, -lag:] = d[:lag]
        else:
            shifted[row, :-lag] = d[lag:]
    left, right = _median_rows(shifted[:k]), _median_rows(shifted[k:])
    use_left = np.isnan(right) | (np.abs(d - left) <= np.abs(d - right))
    base = np.where(use_left, left, right)
    resid = pd.Series(d - base)
    scale = np.full(len(d), min_scale)
    if block_scale:
        return base, resid.abs().to_numpy(), np.maximum(
            min_dev, z * np.fmax(MAD_TO_SIGMA * _block_mad(resid.abs().to_numpy(), window),
                                 scale))
    for w in (window, long_window) if long_window else (window,):
        mad = resid.abs().rolling(w, center=True, min_periods=min(5, w)).median()
        scale = np.fmax(MAD_TO_SIGMA * mad.to_numpy(), scale)
    excess = np.abs(resid.to_numpy())
    return base, excess, np.maximum(min_dev, z * scale)


def _median_rows(matrix: F64) -> F64:
    """Column medians ignoring NaN (NaN where a column has none), for a few rows: a
    sort along the rows instead of numpy's general nanmedian."""
    if matrix.shape[0] == 0:
        return np.full(matrix.shape[1], np.nan)
    srt = np.sort(matrix, axis=0)  # NaN last
    count = np.isfinite(matrix).sum(axis=0)
    lo = np.clip((count - 1) // 2, 0, None)[None, :]
    hi = np.clip(count // 2, 0, None)[None, :]
    med = (np.take_along_axis(srt, lo, 0) + np.take_along_axis(srt, hi, 0))[0] / 2
    return np.where(count > 0, med, np.nan)


def _block_mad(abs_resid: F64, window: int) -> F64:
    """Per row, the largest NaN-ignoring median of ``abs_resid`` over its block of
    ``window // 2`` rows and the blocks either side (NaN-only blocks give NaN)."""
    n = len(abs_resid)
    b = max(window // 2, 1)
    blocks = -(-n // b)
    padded = np.full(blocks * b, np.nan)
    padded[:n] = abs_resid
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(padded.reshape(blocks, b), axis=1)
    around = np.vstack([med, np.r_[np.nan, med[:-1]], np.r_[med[1:], np.nan]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        best = np.nanmax(around, axis=0)
    return np.asarray(np.repeat(best, b)[:n], np.float64)


def venues_present(times: I64, others: Mapping[str, Bars]) -> npt.NDArray[np.int64]:
    """How many other venues have a bar at each time."""
    return np.asarray(np.isfinite(aligned_closes(times, others)).sum(axis=0), np.int64)


def deviations(bars: Bars, positions: I64, others: Mapping[str, Bars],
               th: Thresholds, *, own_flagged: Mask | None = None,
               other_flagged: Callable[[], Mask] | None = None) -> list[Finding]:
    """Flag closes that leave the local spread to the other venues' median close.

    With a single other venue at a time, a departure is symmetric: it is named on this
    venue unless the other venue's own series rules flag that bar and this venue's do
    not (``own_flagged`` per row of ``bars``; ``other_flagged`` computes the other's,
    only when a single-venue departure needs it), so only the bad venue of two is named.
    """
    out: list[Finding] = []
    if not len(bars) or not others:
        return out
    ref = median_close(bars.open_time_ms, others)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.log(bars.close / ref)
    base, excess, limit = departures(
        d, neighbours=th.deviation_neighbours, window=th.deviation_window,
        z=th.deviation_z, min_dev=th.deviation_min, min_scale=th.deviation_min_scale)
    with np.errstate(invalid="ignore"):
        hit = (excess > limit) & (positions >= 0)
    if other_flagged is not None and hit.any():
        single = venues_present(bars.open_time_ms, others) == 1
        own = own_flagged if own_flagged is not None else np.zeros(len(bars), bool)
        if (hit & single & ~own).any():
            hit &= ~(single & other_flagged() & ~own)
    for j in np.flatnonzero(hit):
        t = int(bars.open_time_ms[j])
        out.append(finding(DEVIATION, int(positions[j]), t,
                           f"expected a close within {limit[j]:.2%} of the local spread "
                           f"({float(base[j]):+.2%}) to the other venues' median "
                           f"{float(ref[j])!r}, got {float(bars.close[j])!r} ({float(d[j]):+.2%})",
                           excess[j], limit[j]))
    return out


def clock_skew(bars: Bars, tf_ms: int, others: Mapping[str, Bars], th: Thresholds,
               *, report_time_ms: int) -> list[Finding]:
    """Flag a venue whose returns line up best with the others' at a nonzero lag.

    Positive lag L: this venue's moves appear L bars after the others' (its clock is
    late). Returns go on the full timeframe grid so a lag is a time offset.
    """
    if len(bars) < 2 or not others:
        return []
    t0, t1 = int(bars.open_time_ms[0]), int(bars.open_time_ms[-1])
    grid = np.arange(t0, t1 + tf_ms, tf_ms, dtype=np.int64)
    own = np.full(len(grid), np.nan)
    own[(bars.open_time_ms - t0) // tf_ms] = bars.close
    ref = median_close(grid, others)
    with np.errstate(invalid="ignore", divide="ignore"):
        r_own, r_ref = np.diff(np.log(own)), np.diff(np.log(ref))
    corr: dict[int, tuple[float, int]] = {}
    k = th.skew_max_lag
    for lag in range(-k, k + 1):
        a = r_own[max(lag, 0): len(r_own) + min(lag, 0)]
        b = r_ref[max(-lag, 0): len(r_ref) + min(-lag, 0)]
        ok = np.isfinite(a) & np.isfinite(b) & ((a != 0) | (b != 0))
        n = int(ok.sum())
        if n < th.skew_min_bars:
            continue
        sa, sb = a[ok].std(), b[ok].std()
        corr[lag] = (float(np.mean((a[ok] - a[ok].mean()) * (b[ok] - b[ok].mean())) / (sa * sb))
                     if sa > 0 and sb > 0 else 0.0, n)
    if 0 not in corr:
        return []
    best = max(corr, key=lambda lag: corr[lag][0])
    c_best, c0 = corr[best][0], corr[0][0]
    if best == 0 or c_best < th.skew_min_corr or c_best - c0 < th.skew_min_gain:
        return []
    return [finding(CLOCK_SKEW, -1, report_time_ms,
                    f"expected returns best aligned with the other venues at lag 0, got lag "
                    f"{best:+d} bars ({best * tf_ms / 1000:+.0f} s; correlation {c_best:.2f} "
                    f"vs {c0:.2f} at lag 0) from {fmt_ms(t0)} to {fmt_ms(t1)}",
                    best * tf_ms, 0.0)]
