"""The hold baseline, figures in excess of it, and the attribution of PnL to its sources.

Hold baseline: the run's initial balances, never traded, marked at the same prices the
run is marked at; its equity per bar is summed exactly as the kernel sums equity
(quote cash, then each pricing series' coefficient times its mark in series order, then the
inversely priced ones), so a run that never trades has equity equal to its baseline bit
for bit.

Excess curve: ``X[i] = initial equity + (equity[i] - baseline[i])``, whose figures (per-bar
returns, Sharpe, volatility, drawdown) are computed as the run's own (``metrics``). When
the baseline is constant (no initial balance in an asset other than the quote asset) the
excess curve is the equity curve itself and its figures are the run's. Excess PnL is
``equity[n-1] - baseline[n-1]`` and excess return is that over initial equity.

Attribution of total PnL, each part a signed contribution:
inventory revaluation = ``baseline[n-1] - initial equity``; fees, slippage and transfer
fees = minus what was paid (valued when paid, as ``fees_paid``); legging = the kernel's
legging tally (legs.py); trading PnL = total - all of those: the spreads captured and the
revaluation of whatever trading holds. A run that never trades has trading PnL 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from .kernel import F_PEAK, F_PREV, NF, NS, S_PEAK_T
from .loop import _coefs
from .metrics import NAMES, as_dict, finalize, replay_curve
from .model import F64

# excess figures, in this order
XNAMES = ("excess_pnl", "excess_return", "excess_sharpe", "excess_max_drawdown",
          "excess_volatility")
XN = len(XNAMES)
_I_TOTAL_PNL = NAMES.index("total_pnl")
_I_SHARPE = NAMES.index("sharpe")
_I_MAXDD = NAMES.index("max_drawdown")
_I_VOL = NAMES.index("volatility")


@njit(cache=True, nogil=True, error_model="numpy")
def baseline_curve(L, bal0, marks0, qcash0, out):  # type: ignore[no-untyped-def]
    """Write the hold baseline's equity per bar into ``out``."""
    nser = L.closes.shape[0]
    nr = L.r_from.shape[0]
    coef = np.zeros(nser)
    coefi = np.zeros(nser)
    _coefs(L, bal0, np.zeros(nr), np.full(nr, -1, np.int64), coef, coefi)
    marks = marks0.copy()
    for i in range(out.shape[0]):
        for s in range(nser):
            c = L.closes[s, i]
            if c == c:
                marks[s] = c
        eq = qcash0
        for s in range(nser):
            eq += coef[s] * marks[s]
        for s in range(nser):
            if coefi[s] != 0.0:
                eq += coefi[s] / marks[s]
        out[i] = eq


@njit(cache=True, nogil=True, error_model="numpy")
def excess_figures(equity, baseline, init, time_ms, ppy):  # type: ignore[no-untyped-def]
    """Figures (``XNAMES``) of the excess curve of ``equity`` over ``baseline``."""
    n = equity.shape[0]
    fs = np.zeros(NF)
    st = np.zeros(NS, np.int64)
    fs[F_PREV] = init if init > 0.0 else 1.0
    fs[F_PEAK] = init
    st[S_PEAK_T] = time_ms[0]
    x = np.empty(n)
    for i in range(n):
        x[i] = init + (equity[i] - baseline[i])
    replay_curve(x, time_ms, fs, st)
    vec = finalize(fs, st, n, time_ms[n - 1], init, x[n - 1], ppy)
    out = np.zeros(XN)
    out[0] = equity[n - 1] - baseline[n - 1]
    out[1] = out[0] / init if init > 0.0 else 0.0
    out[2] = vec[3]
    out[3] = vec[6]
    out[4] = vec[2]
    return out


def excess_of_own(vec: F64, init: float) -> F64:
    """Excess figures when the baseline is constant: the run's own (see module doc)."""
    out = np.zeros(XN)
    out[0] = vec[_I_TOTAL_PNL]
    out[1] = out[0] / init if init > 0.0 else 0.0
    out[2] = vec[_I_SHARPE]
    out[3] = vec[_I_MAXDD]
    out[4] = vec[_I_VOL]
    return out


def constant(lay: Any, bal0: F64) -> bool:
    """True when the hold baseline never moves: no initial balance outside the quote asset."""
    return not any(bal0[s] != 0.0 for s in lay.nonq)


def hold_figures(baseline: F64 | None, init: float, n: int, time_ms: Any, ppy: float,
                 venues: list[str]) -> dict[str, Any]:
    """The hold baseline's own figures (``None``: constant at ``init``)."""
    fs = np.zeros(NF)
    st = np.zeros(NS, np.int64)
    fs[F_PREV] = init if init > 0.0 else 1.0
    fs[F_PEAK] = init
    st[S_PEAK_T] = int(time_ms[0])
    last = init
    if baseline is not None:
        replay_curve(baseline, time_ms, fs, st)
        last = float(baseline[-1])
    vec = finalize(fs, st, n, int(time_ms[-1]), init, last, ppy)
    figures = as_dict(vec, dict.fromkeys(venues, 0.0))
    figures["attribution"] = attribution(vec, init, last)
    for name, value in zip(XNAMES, (0.0, 0.0, 0.0, 0.0, 0.0), strict=True):
        figures[name] = value
    return figures


def attribution(vec: F64, init: float, baseline_end: float) -> dict[str, float]:
    """PnL attribution (PnlAttribution field names) of a run's figure vector."""
    total = float(vec[_I_TOTAL_PNL])
    reval = float(baseline_end) - float(init)
    # 0.0 - x, not -x: no negative zero (jsonb stores it as 0, so a stored result would
    # differ from the streamed one)
    fees = 0.0 - float(vec[NAMES.index("fees_paid")])
    slip = 0.0 - float(vec[NAMES.index("slippage_paid")])
    xfer = 0.0 - float(vec[NAMES.index("transfer_fees")])
    leg = float(vec[NAMES.index("legging")])
    trading = total - reval - fees - slip - xfer - leg
    return {"trading_pnl": trading, "inventory_revaluation": reval, "fees": fees,
            "slippage": slip, "transfer_costs": xfer, "legging": leg, "total_pnl": total}


def with_excess(figures: dict[str, Any], xvec: F64, vec: F64, init: float,
                baseline_end: float) -> dict[str, Any]:
    """``figures`` with the excess figures and the attribution added."""
    for name, value in zip(XNAMES, xvec, strict=True):
        figures[name] = float(value)
    figures["attribution"] = attribution(vec, init, baseline_end)
    return figures


__all__ = ["XN", "XNAMES", "attribution", "baseline_curve", "constant", "excess_figures",
           "excess_of_own", "hold_figures", "with_excess"]
