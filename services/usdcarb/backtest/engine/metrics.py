"""Figures of a run, from its equity curve and the kernel's round-trip tallies.

Accumulated bar by bar in the kernel (so sweeps need no curves and single runs no
second pass); ``replay_curve`` does the same over a finished curve.
r[i] = equity[i] / equity[i-1] - 1 with equity[-1] = the initial equity; over n bars:
total return = equity[n-1] / initial - 1; annualised = (1 + total)^(ppy / n) - 1;
volatility = std(r, ddof=1)·√ppy (one pass: (Σr² - Σr·mean) / (n - 1)); Sharpe = mean(r) / std(r, ddof=1)·√ppy; Sortino =
mean(r) / √mean(min(r, 0)²)·√ppy; drawdown[i] = 1 - equity[i] / max(initial,
equity[..i]); Calmar = annualised / max drawdown; the drawdown duration runs from the
peak's bar to the bar that regains it (or the last bar). An undefined ratio (no
variance, no loss, no round trip) is 0, except a profit factor with gains and no loss,
which is +inf.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

from .kernel import (
    F_DURMS,
    F_FEES,
    F_GLOSS,
    F_GWIN,
    F_LEG,
    F_MAXDD,
    F_PEAK,
    F_PREV,
    F_REAL,
    F_RTPNL,
    F_SD2,
    F_SLIP,
    F_SR,
    F_SR2,
    F_SUMEQ,
    F_THEO,
    F_TURN,
    F_XFEE,
    S_EXPO,
    S_LEGGED,
    S_MAXDUR,
    S_MFILLED,
    S_NXFER,
    S_PARTIAL,
    S_PEAK_T,
    S_POSTED,
    S_REJ,
    S_RT,
    S_UNDER,
    S_WINS,
)
from .model import F64

NAMES = ("total_return", "annualized_return", "volatility", "sharpe", "sortino", "calmar",
         "max_drawdown", "max_drawdown_duration_s", "win_rate", "profit_factor", "expectancy",
         "round_trips", "avg_round_trip_duration_s", "turnover", "fees_paid", "exposure",
         "total_pnl", "slippage_paid", "theoretical_edge_bps", "realized_edge_bps",
         "capture_rate", "rejected_fills", "transfers", "transfer_fees", "legged_trades",
         "fill_ratio", "partial_fills", "legging")
NM = len(NAMES)
INT_NAMES = frozenset({"round_trips", "rejected_fills", "transfers", "legged_trades",
                       "partial_fills"})
EXTRA_NAMES = ("transfers", "transfer_fees", "legging")


def start_curve(fs: F64, st: npt.NDArray[np.int64], init: float, t0: int) -> None:
    """Set the running curve statistics of a fresh run (before bar 0)."""
    fs[F_PREV] = init if init > 0.0 else 1.0
    fs[F_PEAK] = init
    st[S_PEAK_T] = t0


@njit(cache=True, nogil=True, error_model="numpy")
def replay_curve(equity, time_ms, fs, st):  # type: ignore[no-untyped-def]
    """Accumulate the curve statistics of ``equity`` as the kernel does bar by bar.

    The running figures live in locals for the loop (stored to ``fs``/``st`` on every
    bar, they were loaded again on every bar: the compiler cannot tell the arrays apart).
    """
    prev = fs[F_PREV]
    sr = fs[F_SR]
    sr2 = fs[F_SR2]
    sd2 = fs[F_SD2]
    sum_eq = fs[F_SUMEQ]
    peak = fs[F_PEAK]
    max_dd = fs[F_MAXDD]
    under = st[S_UNDER]
    max_dur = st[S_MAXDUR]
    peak_t = st[S_PEAK_T]
    for i in range(equity.shape[0]):
        eq = equity[i]
        r = eq / prev - 1.0
        prev = eq
        sr += r
        sr2 += r * r
        if r < 0.0:
            sd2 += r * r
        sum_eq += eq
        if eq >= peak:
            if under == 1:
                max_dur = max(max_dur, time_ms[i] - peak_t)
                under = 0
            peak = eq
            peak_t = time_ms[i]
        else:
            under = 1
            max_dd = max(max_dd, 1.0 - eq / peak)
    fs[F_PREV] = prev
    fs[F_SR] = sr
    fs[F_SR2] = sr2
    fs[F_SD2] = sd2
    fs[F_SUMEQ] = sum_eq
    fs[F_PEAK] = peak
    fs[F_MAXDD] = max_dd
    st[S_UNDER] = under
    st[S_MAXDUR] = max_dur
    st[S_PEAK_T] = peak_t


@njit(cache=True, nogil=True, error_model="numpy")
def finalize(fs, st, n, t_last, init, eq_last, ppy):  # type: ignore[no-untyped-def]
    """Return the figures in ``NAMES`` order from a finished run's tallies."""
    out = np.zeros(NM)
    max_dur = st[S_MAXDUR]
    if st[S_UNDER] == 1:
        max_dur = max(max_dur, t_last - st[S_PEAK_T])
    if init > 0.0:
        mean = fs[F_SR] / n
        var = (fs[F_SR2] - fs[F_SR] * mean) / (n - 1) if n > 1 else 0.0
        std = math.sqrt(var) if var > 0.0 else 0.0
        down = math.sqrt(fs[F_SD2] / n)
        total = eq_last / init - 1.0
        ann = (1.0 + total) ** (ppy / n) - 1.0 if 1.0 + total > 0.0 else -1.0
        max_dd = fs[F_MAXDD]
        out[0] = total
        out[1] = ann
        out[2] = std * math.sqrt(ppy)
        out[3] = mean / std * math.sqrt(ppy) if std > 0.0 else 0.0
        out[4] = mean / down * math.sqrt(ppy) if down > 0.0 else 0.0
        out[5] = ann / max_dd if max_dd > 0.0 else 0.0
        out[6] = max_dd
        out[7] = max_dur / 1000.0
    # Without starting capital returns are undefined: only the PnL figures are given.
    rt = st[S_RT]
    out[8] = st[S_WINS] / rt if rt > 0 else 0.0
    if fs[F_GLOSS] > 0.0:
        out[9] = fs[F_GWIN] / fs[F_GLOSS]
    elif fs[F_GWIN] > 0.0:
        out[9] = np.inf
    out[10] = fs[F_RTPNL] / rt if rt > 0 else 0.0
    out[11] = rt
    out[12] = fs[F_DURMS] / rt / 1000.0 if rt > 0 else 0.0
    out[13] = fs[F_TURN] / (fs[F_SUMEQ] / n) if fs[F_SUMEQ] > 0.0 else 0.0
    out[14] = fs[F_FEES]
    out[15] = st[S_EXPO] / n
    out[16] = eq_last - init
    out[17] = fs[F_SLIP]
    out[18] = fs[F_THEO] / rt if rt > 0 else 0.0
    out[19] = fs[F_REAL] / rt if rt > 0 else 0.0
    out[20] = fs[F_REAL] / fs[F_THEO] if fs[F_THEO] != 0.0 else 0.0
    out[21] = st[S_REJ]
    out[22] = st[S_NXFER]
    out[23] = fs[F_XFEE]
    out[24] = st[S_LEGGED]
    out[25] = st[S_MFILLED] / st[S_POSTED] if st[S_POSTED] > 0 else 1.0
    out[26] = st[S_PARTIAL]
    out[27] = fs[F_LEG]
    return out


def utilization(slots: tuple[tuple[str, str], ...], init: F64, lim: F64,
                minbal: F64) -> dict[str, float]:
    """Peak share of each venue's starting inventory used, the largest over its assets.

    An asset's available inventory is its initial balance above its limit (above 0 when
    it has none); assets with none available are skipped; the share is at least 0.
    """
    out: dict[str, float] = {}
    for k, (venue, _) in enumerate(slots):
        floor = lim[k] if np.isfinite(lim[k]) else 0.0
        avail = init[k] - floor
        share = max(0.0, (init[k] - minbal[k]) / avail) if avail > 0 else 0.0
        out[venue] = max(out.get(venue, 0.0), float(share))
    return out


def as_dict(vec: F64, util: dict[str, float]) -> dict[str, Any]:
    """Return the BacktestMetrics-named figures (ints as int); extras are left out."""
    out: dict[str, Any] = {}
    for name, value in zip(NAMES, vec, strict=True):
        if name in EXTRA_NAMES:
            continue
        out[name] = int(value) if name in INT_NAMES else float(value)
    out["inventory_utilization"] = util
    return out


def extras(vec: F64) -> dict[str, float]:
    """Return the figures that have no BacktestMetrics field."""
    return {name: float(vec[NAMES.index(name)]) for name in EXTRA_NAMES}
