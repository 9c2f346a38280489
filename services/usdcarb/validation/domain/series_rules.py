"""Rules on a bar within its series: duplicates, conflicts with stored bars, stale
markets and spikes judged by robust statistics on log returns.

A spike is an isolated one-bar excursion: the jump into the bar is extreme against the
local robust scale of returns (median/MAD over a centred window) AND the next bar
undoes most of it. A jump the following bars keep (a level shift, like the USDC depeg)
or that the other venues make at the same time is a real move, not bad data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from numba import njit

from usdcarb.validation.domain.model import (
    DUPLICATE,
    DUPLICATE_CONFLICT,
    F64,
    I64,
    OUT_OF_ORDER,
    SPIKE,
    SPIKE_UNCONFIRMED,
    STALE,
    STALE_LONG,
    STORED_CONFLICT,
    Bars,
    Finding,
    Provenance,
    Thresholds,
    finding,
    fmt_ms,
)

MAD_TO_SIGMA = 1.4826
T = TypeVar("T", bound=Callable[..., Any])


def _jit(fn: T) -> T:
    """numba-compile a kernel, cached on disk where numba may write (a checkout, or
    NUMBA_CACHE_DIR); on a read-only filesystem without one, compiled at first use."""
    try:
        return njit(cache=True, nogil=True)(fn)  # type: ignore[return-value]
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return njit(nogil=True)(fn)  # type: ignore[return-value]


def duplicates(batch: Bars) -> list[Finding]:
    """Flag bars sharing an open time within the batch (and an out-of-order batch).

    Identical copies: the first is kept and the others quarantined. Copies that
    disagree: every copy is quarantined, since nothing tells which one is right.
    """
    out: list[Finding] = []
    ts = batch.open_time_ms
    if len(ts) < 2:
        return out
    descents = int(np.count_nonzero(np.diff(ts) < 0))
    if descents:
        out.append(finding(OUT_OF_ORDER, -1, int(ts.min()),
                           f"expected ascending open times, got {descents} descents",
                           descents, 0))
    order = np.argsort(ts, kind="stable")
    sts = ts[order]
    same = np.flatnonzero(sts[1:] == sts[:-1])
    if not same.size:
        return out
    starts = same[np.r_[True, same[1:] != same[:-1] + 1]]
    for s in starts:
        e = s + 1
        while e < len(sts) and sts[e] == sts[s]:
            e += 1
        idx = np.sort(order[s:e])
        rows = np.array([batch.row(int(i)) for i in idx])
        identical = all(np.array_equal(rows[0], r, equal_nan=True) for r in rows[1:])
        t = int(sts[s])
        if identical:
            for i in idx[1:]:
                out.append(finding(DUPLICATE, int(i), t,
                                   f"expected one bar at {fmt_ms(t)}, got {len(idx)} "
                                   "identical copies (the first is kept)", len(idx), 1))
        else:
            for i in idx:
                out.append(finding(DUPLICATE_CONFLICT, int(i), t,
                                   f"expected one bar at {fmt_ms(t)}, got {len(idx)} "
                                   f"that disagree; this one is {batch.row(int(i))}",
                                   len(idx), 1))
    return out


def stored_conflicts(batch: Bars, stored: Bars, th: Thresholds) -> list[Finding]:
    """Flag bars that differ from the ORIGINAL bar already stored at the same time."""
    out: list[Finding] = []
    if not len(stored) or not len(batch):
        return out
    sts = stored.open_time_ms
    pos = np.clip(np.searchsorted(sts, batch.open_time_ms), 0, len(sts) - 1)
    hit = (sts[pos] == batch.open_time_ms) & (stored.provenance[pos] == Provenance.ORIGINAL)
    differs = np.zeros(len(batch), bool)
    for name in ("open", "high", "low", "close", "volume"):
        a, b = getattr(batch, name), getattr(stored, name)[pos]
        with np.errstate(invalid="ignore"):
            tol = th.conflict_rel_tol * np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-12)
            differs |= ~(np.abs(a - b) <= tol)
    for i in np.flatnonzero(hit & differs):
        t, j = int(batch.open_time_ms[i]), int(pos[i])
        out.append(finding(STORED_CONFLICT, int(i), t,
                           f"expected the stored bar {stored.row(j)} at {fmt_ms(t)}, "
                           f"got {batch.row(int(i))}", batch.close[i], stored.close[j]))
    return out


def stale_runs(bars: Bars, positions: I64, th: Thresholds) -> list[Finding]:
    """Flag runs of flat (open = high = low = close), zero-volume bars at one price.

    INFO, or WARNING for long runs; never quarantined: Binance emits such bars for
    minutes without trades. One finding per run, at the run's first bar.
    """
    out: list[Finding] = []
    n = len(bars)
    if n == 0:
        return out
    c = bars.close
    flat = (bars.open == c) & (bars.high == c) & (bars.low == c) & (bars.volume == 0)
    cont = np.r_[False, flat[1:] & flat[:-1] & (c[1:] == c[:-1])]  # continues a run
    starts = np.flatnonzero(flat & ~cont)
    breaks = np.r_[np.flatnonzero(~cont), n]
    lengths = breaks[np.searchsorted(breaks, starts, side="right")] - starts
    inside = np.r_[0, np.cumsum(positions >= 0)]  # runs with a bar of the batch count
    keep = (lengths >= th.stale_min_run) & (inside[starts + lengths] > inside[starts])
    for s, length in zip(starts[keep].tolist(), lengths[keep].tolist(), strict=True):
        last = s + length - 1
        rule = STALE_LONG if length >= th.stale_long_run else STALE
        limit = th.stale_long_run if rule is STALE_LONG else th.stale_min_run
        t0, t1 = int(bars.open_time_ms[s]), int(bars.open_time_ms[last])
        out.append(finding(rule, int(positions[s]), t0,
                           f"expected trading activity, got {length} flat zero-volume bars "
                           f"at {float(c[s])!r} from {fmt_ms(t0)} to {fmt_ms(t1)}", length, limit))
    return out


@_jit
def _fenwick_add(tree: I64, i: int, delta: int) -> None:
    i += 1
    while i < tree.shape[0]:
        tree[i] += delta
        i += i & -i


@_jit
def _fenwick_kth(tree: I64, k: int, top: int) -> int:
    """The position (0-based rank) of the (k+1)-th smallest value present."""
    pos = 0
    step = top
    while step:
        nxt = pos + step
        if nxt < tree.shape[0] and tree[nxt] <= k:
            pos = nxt
            k -= tree[nxt]
        step >>= 1
    return pos


@_jit
def _rolling_median(values: F64, window: int, min_periods: int) -> F64:
    n = values.shape[0]
    out = np.full(n, np.nan)
    order = np.argsort(values)  # ranks; NaN (never inserted) anywhere
    rank = np.empty(n, np.int64)
    for r in range(n):
        rank[order[r]] = r
    ranked = values[order]
    tree = np.zeros(n + 1, np.int64)
    top = 1
    while top * 2 <= n:
        top *= 2
    offset = (window - 1) // 2
    lo = hi = nobs = 0
    for i in range(n):
        start, end = max(0, i + 1 + offset - window), min(n, i + 1 + offset)
        while hi < end:
            if values[hi] == values[hi]:
                _fenwick_add(tree, rank[hi], 1)
                nobs += 1
            hi += 1
        while lo < start:
            if values[lo] == values[lo]:
                _fenwick_add(tree, rank[lo], -1)
                nobs -= 1
            lo += 1
        if nobs >= min_periods and nobs > 0:
            mid = nobs // 2
            if nobs % 2:
                out[i] = ranked[_fenwick_kth(tree, mid, top)]
            else:
                out[i] = (ranked[_fenwick_kth(tree, mid, top)]
                          + ranked[_fenwick_kth(tree, mid - 1, top)]) / 2
    return out


def rolling_median(values: F64, window: int, min_periods: int) -> F64:
    """``pd.Series(values).rolling(window, center=True, min_periods=...).median()``,
    exactly (the same windows, NaN and ±inf skipped, the mean of the two middle values
    for an even count), as an order-statistic tree over ranks: O(n log n) with no
    allocation per step, several times faster than pandas' skiplist, and free of the
    GIL."""
    v = np.asarray(values, np.float64)
    v = np.where(np.isinf(v), np.nan, v)
    return np.asarray(_rolling_median(v, int(window), int(min_periods)), np.float64)


def robust_z(returns: F64, windows: tuple[int, ...], min_scale: float) -> F64:
    """Return (r - rolling median) / scale, every window centred.

    The scale is the largest rolling 1.4826 x MAD over ``windows`` of the NONZERO
    returns, floored at ``min_scale``: a thin market repeats its price for minutes
    (Binance emits zero-volume bars), and a MAD over mostly zeros would call every real
    trade an outlier. The long window keeps a calm hour inside a turbulent day (the
    depeg) from looking calm.
    """
    r = np.asarray(returns, np.float64)
    short = min(windows)
    med = rolling_median(r, short, min(5, short))
    moves = np.where(r != 0, r, np.nan)
    scale = np.full(len(r), min_scale)
    for w in windows:
        mp = min(5, w)
        center = rolling_median(moves, w, mp)
        mad = rolling_median(np.abs(moves - center), w, mp)
        scale = np.fmax(scale, MAD_TO_SIGMA * mad)
    return np.asarray((r - med) / scale, np.float64)


def _reach(windows: tuple[int, ...]) -> tuple[int, int]:
    """How far (left, right) ``robust_z``'s value at one row looks: a centred window
    spans ``w - 1 - (w - 1) // 2`` rows back and ``(w - 1) // 2`` ahead, and the MAD's
    window holds medians whose own windows reach as far again."""
    left = max(2 * (w - 1 - (w - 1) // 2) for w in windows)
    right = max(2 * ((w - 1) // 2) for w in windows)
    return left, right


def robust_z_at(returns: F64, at: I64, windows: tuple[int, ...], min_scale: float) -> F64:
    """``robust_z(returns, windows, min_scale)[at]``, computed only over the stretches
    around ``at`` (ascending) that its value depends on: the spike rule needs z only
    where the return is large enough to matter, a few rows of a calm series, so the
    rolling medians run over those stretches instead of the whole series. Exactly equal
    (the same windows over the same values; a stretch reaching an end of the series is
    clipped there, as the whole computation clips its windows)."""
    r = np.asarray(returns, np.float64)
    at = np.asarray(at, np.int64)
    n = len(r)
    if not at.size:
        return np.zeros(0)
    left, right = _reach(windows)
    # Stretches [first - left, last + right] around runs of rows closer than a reach.
    cut = np.flatnonzero(np.diff(at) > left + right) + 1
    firsts, lasts = at[np.r_[0, cut]], at[np.r_[cut - 1, len(at) - 1]]
    lo, hi = np.maximum(firsts - left, 0), np.minimum(lasts + right + 1, n)
    if int((hi - lo).sum()) >= n:  # the stretches cover the series: compute it once
        return np.asarray(robust_z(r, windows, min_scale)[at], np.float64)
    out = np.empty(len(at))
    done = 0
    for a, b in zip(lo.tolist(), hi.tolist(), strict=True):
        stop = int(np.searchsorted(at, b))
        out[done:stop] = robust_z(r[a:b], windows, min_scale)[at[done:stop] - a]
        done = stop
    return out


def spikes(bars: Bars, positions: I64, th: Thresholds,
           other_returns: F64 | None = None, *, report_context: bool = False
           ) -> list[Finding]:
    """Flag isolated one-bar excursions of the close (see the module docstring).

    ``bars`` is the series with context, ascending, prices valid; ``other_returns[j]``
    is the median log return of the other venues into row j (NaN when unknown).
    With ``report_context``, spikes on context rows are returned too (index -1).
    """
    out: list[Finding] = []
    n = len(bars)
    if n < 3:
        return out
    r = np.diff(np.log(bars.close))
    # z matters only where the move is large enough, and there the scale of the short
    # window alone bounds |z| from above (the full scale is the larger of both windows'):
    # the long window's medians run only around the few rows that bound lets through.
    # The same findings as z over the whole series, at a fraction of the cost.
    windows = (th.spike_window, th.spike_long_window)
    moved = np.flatnonzero(np.abs(r) >= th.spike_min_move)
    bound = robust_z_at(r, moved, (min(windows),), th.spike_min_scale)
    maybe = moved[np.abs(bound) > th.spike_z]
    z = np.full(len(r), np.nan)
    z[maybe] = robust_z_at(r, maybe, windows, th.spike_min_scale)
    cand = maybe[np.abs(z[maybe]) > th.spike_z] + 1
    for j in cand:
        pos = int(positions[j])
        if pos < 0 and not report_context:
            continue
        rj, zj, t = float(r[j - 1]), float(z[j - 1]), int(bars.open_time_ms[j])
        if other_returns is not None and np.isfinite(other_returns[j]):
            ro = float(other_returns[j])
            if np.sign(ro) == np.sign(rj) and abs(ro) >= th.spike_revert * abs(rj):
                continue  # the other venues moved too
        if j == n - 1:
            out.append(finding(SPIKE_UNCONFIRMED, pos, t,
                               f"expected |robust z| <= {th.spike_z:g}, got {zj:.1f} "
                               f"({rj:+.2%}) on the last bar, not yet confirmed or reverted",
                               zj, th.spike_z))
            continue
        rn = float(r[j])
        reverts = np.sign(rn) == -np.sign(rj) and abs(rj + rn) <= (1 - th.spike_revert) * abs(rj)
        if reverts:
            out.append(finding(SPIKE, pos, t,
                               f"expected |robust z| <= {th.spike_z:g} or a move the next bars "
                               f"keep, got z {zj:.1f} ({rj:+.2%}) reverted by {rn:+.2%} at "
                               f"{fmt_ms(int(bars.open_time_ms[j + 1]))}", zj, th.spike_z))
    return out
