"""Execution beyond all-or-nothing taker fills: independent legs and maker orders (numba).

The default execution (every leg of an order together, at one bar's closes, as taker
fills) runs ``loop.run_range``. Any other execution model runs ``run_range_legs`` here: a
plain per-bar loop with the same signals (``loop._signal_pair``), fills
(``kernel._group``), transfers, equity and curve statistics. Spread and peg kinds only
(``layout.build_plan`` refuses a triangular loop).

Orders. A signal on bar ``t`` asks each leg ``k`` to go from its position to
``target·sign_k·quantity``: one leg order of the difference (side and quantity), due at
``t + fill delay + latency_k`` (``latency_k`` = the venue's latency_bars +
ceil(latency_ms / bar length)). No new signal is looked for while an order works.

Independent legs (``leg_mode`` "independent"), taker orders: on the first bar at or after
its due bar where its market has a close, a leg fills ``min(remaining, cap·volume)``
(``cap`` its venue's participation cap; 0 = no cap, the whole remainder; no volume = 0)
at that close plus slippage (``_group`` of one leg: balances, rebalancing, rejections as
for a group). What that attempt leaves is *missing*, and the one-leg policy acts on later
bars of the leg's market:
- hedge: the next bar fills the whole remainder, without the cap (a refused fill is tried
  again on the next bar);
- retry: each of the next ``retry_bars`` bars fills under the cap; if still short, give up;
- unwind: give up at once.
Once no leg is waiting for its first attempt and none is still retrying, a leg that gave
up ends the order: every leg's filled quantity above the least-filled leg's is reversed
(a taker fill without cap on the next bar of its market, tried again while refused) and
the rest is cancelled.

Maker orders (``order_type`` "maker"): each leg is a limit at its market's close on the
signal bar. From its due bar to ``due + maker_timeout_bars`` a bar whose close trades
through the limit (strictly below a buy's, above a sell's) fills it at the limit, no
slippage, maker fee (with independent legs, under the cap, partially if need be). A leg
not filled by then is missing (independent legs: the one-leg policy, its hedge and
retries as taker fills) or, with all-or-nothing legs, the order (filled only on a bar
where every leg trades through, whole) is dropped. Fill ratio = maker legs filled in
full / maker legs posted.

Legging. The order's *reference bar* is the bar of its first fill; a taker order's
reference price per leg is its market's mark on that bar, a maker order's the limit. Each
fill adds ``side·quantity·(reference - basis)`` in the quote asset to the legging tally
(``F_LEG``, a signed contribution: negative is a loss), the basis being the fill bar's
close for taker fills and the limit for maker fills; so fills on the reference bar and
maker fills add 0, and late legs, hedges, retries and unwinds add what the price moved
against them. An order is *legged* when something filled and not every leg filled in full
on the reference bar (a later bar, a partial fill, or a remainder given up).

An order ends when no leg has anything left. A position that ends flat closes the round
trip (an opening order unwound to nothing is a round trip too, of theoretical edge 0); one
that does not stays held.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .kernel import (
    F_DURMS,
    F_ENTRY_EDGE,
    F_ENTRY_NOTIONAL,
    F_ENTRY_PX,
    F_LEG,
    F_MAXDD,
    F_PEAK,
    F_PEND_EDGE,
    F_PREV,
    F_QCASH,
    F_SD2,
    F_SR,
    F_SR2,
    F_SUMEQ,
    MAX_LEGS_PER_BAR,
    S_DUE,
    S_ENTRYBAR,
    S_EXPO,
    S_HELD,
    S_LASTFILL,
    S_LEGGED,
    S_MAXDUR,
    S_MFILLED,
    S_NTR,
    S_PARTIAL,
    S_PEAK_T,
    S_PENDING,
    S_POSTED,
    S_REJ,
    S_SIGBAR,
    S_TARGET,
    S_UNDER,
    _close_trip,
    _group,
    _open_trip,
    _val,
)
from .loop import (
    BEFORE_RANGE,
    NO_SPELL,
    P_ENTRY,
    P_EXIT,
    P_HOLD,
    P_PEG,
    P_QTY,
    P_STOP,
    _coefs,
    _curve_step,
    _longest_spell,
    _signal_pair,
    run_range,
)

# per-leg float state (S[15], [leg, field]) and int state (S[16])
LF_REM, LF_POS, LF_REF, LF_LIMIT, LF_ORDQ = range(5)
NLF = 5
LI_STATE, LI_DUE, LI_LAST, LI_SIDE, LI_LEFT, LI_REFSET = range(6)
NLI = 6
MAXLEG = 3
# leg states
IDLE, WAIT, MISSING, GAVE_UP, UNWIND = range(5)
# layout ints
I_MODE, I_POLICY, I_RETRY, I_ORDER, I_TIMEOUT, I_FILLDELAY = range(3, 9)
POL_HEDGE, POL_RETRY, POL_UNWIND = range(3)
# the working order (S[17]): its reference bar (-1 before its first fill), legged flag
O_REFBAR, O_LEGGED = 0, 1
NORDER = 2


@njit(cache=True, nogil=True, error_model="numpy")
def _fill_leg(L, i, k, qty, side, maker, S, log, T, order):  # type: ignore[no-untyped-def]
    """Fill ``qty`` of leg ``k`` on bar ``i`` (one-leg ``_group``); return True if filled.

    Records the reference bar on the order's first fill, the position and the legging
    tally.
    """
    bal, minbal, _, marks, fs, st, r_amt, r_arr = S[:8]
    g_ser, g_side, g_qty, g_px, g_not, g_fee, dbal = S[8:15]
    lf = S[15]
    s = L.leg_ser[k]
    g_ser[0] = s
    g_side[0] = side
    g_qty[0] = qty
    if maker:
        g_px[0] = lf[k, LF_LIMIT]
    if not _group(L, i, 1, g_ser, g_side, g_qty, g_px, g_not, g_fee, dbal, bal, minbal,
                  marks, fs, st, r_amt, r_arr, fs[F_PEND_EDGE], log, T, maker):
        st[S_REJ] += 1
        return False
    if order[O_REFBAR] < 0:
        order[O_REFBAR] = i
        if L.ints[I_ORDER] == 0:
            for j in range(L.leg_ser.shape[0]):
                lf[j, LF_REF] = marks[L.leg_ser[j]]
    elif i != order[O_REFBAR]:
        order[O_LEGGED] = 1
    basis = lf[k, LF_LIMIT] if maker else L.closes[s, i]
    fs[F_LEG] += side * qty * (lf[k, LF_REF] - basis) * _val(L, marks, L.ser_quote[s])
    lf[k, LF_POS] += side * qty
    lf[k, LF_REM] -= qty
    if lf[k, LF_REM] < 0.0:
        lf[k, LF_REM] = 0.0
    return True


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _capped(L, k, i, rem):  # type: ignore[no-untyped-def]
    """What leg ``k`` may fill of ``rem`` on bar ``i`` under its participation cap."""
    cap = L.leg_cap[k]
    if cap <= 0.0:
        return rem
    vol = L.vols[L.leg_ser[k], i]
    room = cap * vol if vol > 0.0 else 0.0
    return rem if rem <= room else room


@njit(cache=True, nogil=True, error_model="numpy")
def _new_order(L, P, i, tgt, edge, S, order):  # type: ignore[no-untyped-def]
    """Place the leg orders of a signal on bar ``i``."""
    bal, _, rtbal, _, fs, st = S[:6]
    lf, li = S[15], S[16]
    qty = P[P_QTY]
    maker = L.ints[I_ORDER] == 1
    st[S_TARGET] = tgt
    st[S_PENDING] = 1
    st[S_SIGBAR] = i
    st[S_DUE] = i + L.ints[1]
    fs[F_PEND_EDGE] = edge
    order[O_REFBAR] = -1
    order[O_LEGGED] = 0
    if st[S_HELD] == 0:
        _open_trip(L, bal, rtbal, fs)
    for k in range(L.leg_ser.shape[0]):
        want = tgt * L.leg_sign[k] * qty
        delta = want - lf[k, LF_POS]
        li[k, LI_SIDE] = 1 if delta > 0.0 else -1
        lf[k, LF_REM] = abs(delta)
        lf[k, LF_ORDQ] = abs(delta)
        li[k, LI_STATE] = WAIT if delta != 0.0 else IDLE
        li[k, LI_DUE] = i + L.ints[I_FILLDELAY] + L.leg_lat[k]
        li[k, LI_LEFT] = L.ints[I_RETRY]
        li[k, LI_LAST] = -1
        if maker:
            c = L.closes[L.leg_ser[k], i]
            lf[k, LF_LIMIT] = c
            lf[k, LF_REF] = c
            if delta != 0.0:
                st[S_POSTED] += 1


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _through(side, c, limit):  # type: ignore[no-untyped-def]
    return c < limit if side > 0 else c > limit


@njit(cache=True, nogil=True, error_model="numpy")
def _progress_all_maker(L, i, tradable, S, log, T, order):  # type: ignore[no-untyped-def]
    """All-or-nothing maker order: every leg through its limit on one bar, or expiry."""
    fs, st = S[4], S[5]
    g_ser, g_side, g_qty, g_px = S[8], S[9], S[10], S[11]
    lf, li = S[15], S[16]
    due = st[S_DUE]
    if i < due:
        return False
    if i > due + L.ints[I_TIMEOUT]:
        _end_order(L, i, S, order)     # expired: nothing filled
        return False
    if not tradable:
        return False
    n = L.leg_ser.shape[0]
    m = 0
    for k in range(n):
        if lf[k, LF_REM] == 0.0:
            continue
        s = L.leg_ser[k]
        if not _through(li[k, LI_SIDE], L.closes[s, i], lf[k, LF_LIMIT]):
            return False
        g_ser[m] = s
        g_side[m] = li[k, LI_SIDE]
        g_qty[m] = lf[k, LF_REM]
        g_px[m] = lf[k, LF_LIMIT]
        m += 1
    bal, minbal, _, marks = S[:4]
    r_amt, r_arr = S[6], S[7]
    if not _group(L, i, m, g_ser, g_side, g_qty, g_px, S[12], S[13], S[14], bal, minbal,
                  marks, fs, st, r_amt, r_arr, fs[F_PEND_EDGE], log, T, True):
        st[S_REJ] += 1
        _end_order(L, i, S, order)
        return False
    order[O_REFBAR] = i
    for k in range(n):
        if lf[k, LF_REM] > 0.0:
            st[S_MFILLED] += 1
            lf[k, LF_POS] += li[k, LI_SIDE] * lf[k, LF_REM]
            lf[k, LF_REM] = 0.0
        li[k, LI_STATE] = IDLE
    _end_order(L, i, S, order)
    return True


@njit(cache=True, nogil=True, error_model="numpy")
def _progress_independent(L, i, S, log, T, order):  # type: ignore[no-untyped-def]
    """Advance each leg of the working order on bar ``i``; return True if anything filled."""
    st = S[5]
    lf, li = S[15], S[16]
    n = L.leg_ser.shape[0]
    maker = L.ints[I_ORDER] == 1
    policy = L.ints[I_POLICY]
    acted = False
    for k in range(n):
        state = li[k, LI_STATE]
        if state == IDLE or state == GAVE_UP:
            continue
        s = L.leg_ser[k]
        c = L.closes[s, i]
        present = c == c
        side = li[k, LI_SIDE]
        if state == WAIT:
            due = li[k, LI_DUE]
            if i < due:
                continue
            if maker:
                last = due + L.ints[I_TIMEOUT]
                if i <= last:
                    if present and _through(side, c, lf[k, LF_LIMIT]):
                        rem = lf[k, LF_REM]
                        q = _capped(L, k, i, rem)
                        if q > 0.0 and _fill_leg(L, i, k, q, side, True, S, log, T, order):
                            acted = True
                            if q < rem:
                                st[S_PARTIAL] += 1
                                order[O_LEGGED] = 1
                            if lf[k, LF_REM] == 0.0:
                                li[k, LI_STATE] = IDLE
                                st[S_MFILLED] += 1
                    continue
                # expired after bar ``last``: missing from this bar on
                li[k, LI_LAST] = last
                li[k, LI_STATE] = GAVE_UP if policy == POL_UNWIND else MISSING
                order[O_LEGGED] = 1
                state = li[k, LI_STATE]
                if state == GAVE_UP:
                    continue
            else:
                if not present:
                    continue
                rem = lf[k, LF_REM]
                q = _capped(L, k, i, rem)
                filled = q > 0.0 and _fill_leg(L, i, k, q, side, False, S, log, T, order)
                acted = acted or filled
                if filled and q < rem:
                    st[S_PARTIAL] += 1
                li[k, LI_LAST] = i
                if lf[k, LF_REM] == 0.0:
                    li[k, LI_STATE] = IDLE
                else:
                    order[O_LEGGED] = 1
                    li[k, LI_STATE] = GAVE_UP if policy == POL_UNWIND else MISSING
                continue
        if state == MISSING:
            if i <= li[k, LI_LAST] or not present:
                continue
            rem = lf[k, LF_REM]
            li[k, LI_LAST] = i
            if policy == POL_HEDGE:
                if _fill_leg(L, i, k, rem, side, False, S, log, T, order):
                    acted = True
                    li[k, LI_STATE] = IDLE
                continue
            q = _capped(L, k, i, rem)
            li[k, LI_LEFT] -= 1
            if q > 0.0 and _fill_leg(L, i, k, q, side, False, S, log, T, order):
                acted = True
                if q < rem:
                    st[S_PARTIAL] += 1
            if lf[k, LF_REM] == 0.0:
                li[k, LI_STATE] = IDLE
            elif li[k, LI_LEFT] <= 0:
                li[k, LI_STATE] = GAVE_UP
            continue
        if state == UNWIND:
            if i <= li[k, LI_LAST] or not present:
                continue
            if _fill_leg(L, i, k, lf[k, LF_REM], side, False, S, log, T, order):
                acted = True
                li[k, LI_STATE] = IDLE
            else:
                li[k, LI_LAST] = i
    # A leg that gave up ends the order once no leg waits for its first attempt or retries.
    gave_up = False
    busy = False
    for k in range(n):
        if li[k, LI_STATE] == GAVE_UP:
            gave_up = True
        elif li[k, LI_STATE] == WAIT or li[k, LI_STATE] == MISSING:
            busy = True
    if gave_up and not busy:
        least = np.inf
        for k in range(n):
            least = min(least, lf[k, LF_ORDQ] - lf[k, LF_REM])
        for k in range(n):
            excess = lf[k, LF_ORDQ] - lf[k, LF_REM] - least
            if excess > 0.0:
                li[k, LI_STATE] = UNWIND
                li[k, LI_SIDE] = -li[k, LI_SIDE]
                lf[k, LF_REM] = excess
                li[k, LI_LAST] = i
            else:
                li[k, LI_STATE] = IDLE
                lf[k, LF_REM] = 0.0
    done = True
    for k in range(n):
        if li[k, LI_STATE] != IDLE:
            done = False
    if done:
        _end_order(L, i, S, order)
    return acted


@njit(cache=True, nogil=True, error_model="numpy")
def _end_order(L, i, S, order):  # type: ignore[no-untyped-def]
    """The order has nothing left: settle the position and the round trip."""
    bal, _, rtbal, marks, fs, st = S[:6]
    lf, li = S[15], S[16]
    n = L.leg_ser.shape[0]
    st[S_PENDING] = 0
    for k in range(n):
        li[k, LI_STATE] = IDLE
        lf[k, LF_REM] = 0.0
    if order[O_REFBAR] < 0:
        return                       # nothing filled: the order is dropped
    if order[O_LEGGED] == 1:
        st[S_LEGGED] += 1
    st[S_LASTFILL] = i
    flat = True
    for k in range(n):
        if lf[k, LF_POS] != 0.0:
            flat = False
    edge = fs[F_PEND_EDGE]
    if st[S_HELD] == 0:
        s0 = L.leg_ser[0]
        notional = lf[0, LF_ORDQ] * lf[0, LF_REF] * _val(L, marks, L.ser_quote[s0])
        if flat:
            _close_trip(L, i, bal, rtbal, marks, fs, st, 0.0, notional)
            return
        st[S_HELD] = st[S_TARGET]
        st[S_ENTRYBAR] = order[O_REFBAR]
        fs[F_ENTRY_EDGE] = edge
        fs[F_ENTRY_NOTIONAL] = notional
        fs[F_ENTRY_PX] = lf[0, LF_REF]
        return
    if flat:
        _close_trip(L, i, bal, rtbal, marks, fs, st, fs[F_ENTRY_EDGE] - edge,
                    fs[F_ENTRY_NOTIONAL])
        fs[F_DURMS] += L.time_ms[i] - L.time_ms[st[S_ENTRYBAR]]
        st[S_HELD] = 0


@njit(cache=True, nogil=True, error_model="numpy")
def run_range_legs(L, P, start, end, S, equity, exposure, drawdown, log, T):  # type: ignore[no-untyped-def]
    """``loop.run_range`` for the other execution models (same contract and state)."""
    bal, _, _, marks, fs, st, r_amt, r_arr = S[:8]
    lf = S[15]
    order = S[17]
    closes = L.closes
    leg_ser = L.leg_ser
    ser_quote = L.ser_quote
    slot_vser = L.slot_vser
    slot_vinv = L.slot_vinv
    kind = L.ints[0]
    independent = L.ints[I_MODE] == 1
    nser = closes.shape[0]
    nleg = L.leg_ser.shape[0]
    nroutes = L.r_to.shape[0]
    cap = T.bar.shape[0]
    curves = equity.shape[0] > 0
    coef = np.zeros(nser)
    coefi = np.zeros(nser)
    _coefs(L, bal, r_amt, r_arr, coef, coefi)
    time_ms = L.time_ms
    prev = fs[F_PREV]
    sr = fs[F_SR]
    sr2 = fs[F_SR2]
    sd2 = fs[F_SD2]
    peak = fs[F_PEAK]
    max_dd = fs[F_MAXDD]
    sum_eq = fs[F_SUMEQ]
    peak_t0 = st[S_PEAK_T]
    peak_i = BEFORE_RANGE
    max_dur = st[S_MAXDUR]
    under = st[S_UNDER] == 1
    dd = 1.0 - prev / peak if under else 0.0
    stop = end
    for i in range(max(start, 0), end):
        if log and st[S_NTR] + MAX_LEGS_PER_BAR > cap:
            stop = i
            break
        changed = False
        for r in range(nroutes):
            if r_arr[r] >= 0 and r_arr[r] <= i:
                bal[L.r_to[r]] += r_amt[r]
                r_amt[r] = 0.0
                r_arr[r] = -1
                changed = True
        tradable = True
        for s in range(nser):
            c = closes[s, i]
            if c == c:
                marks[s] = c
            elif s < nleg:
                tradable = False
        # A working order may change balances even when nothing fills (a rebalancing
        # transfer started for a refused leg is in flight): fold them in again after it.
        if st[S_PENDING] == 1:
            changed = True
            if independent:
                _progress_independent(L, i, S, log, T, order)
            else:
                _progress_all_maker(L, i, tradable, S, log, T, order)
        if st[S_PENDING] == 0 and tradable:
            held = st[S_HELD]
            fired, tgt, edge = _signal_pair(kind, closes[0, i], closes[nleg - 1, i], held,
                                            i - st[S_ENTRYBAR], fs[F_ENTRY_PX], P[P_ENTRY],
                                            P[P_EXIT], P[P_HOLD], P[P_PEG], P[P_STOP])
            if fired:
                _new_order(L, P, i, tgt, edge, S, order)
                changed = True
                if independent:
                    _progress_independent(L, i, S, log, T, order)
                else:
                    _progress_all_maker(L, i, tradable, S, log, T, order)
        if changed:
            _coefs(L, bal, r_amt, r_arr, coef, coefi)
        eq = fs[F_QCASH]
        for s in range(nser):
            eq += coef[s] * marks[s]
        for s in range(nser):
            if coefi[s] != 0.0:
                eq += coefi[s] / marks[s]
        if curves:
            equity[i] = eq
        (prev, sr, sr2, sd2, peak, peak_i, under, dd, max_dd,
         ended) = _curve_step(eq, i, prev, sr, sr2, sd2, peak, peak_i, under, dd, max_dd)
        if ended != NO_SPELL:
            max_dur = _longest_spell(max_dur, time_ms, i, ended, peak_t0)
        sum_eq += eq
        if curves:
            drawdown[i] = dd
        gross = 0.0
        holding = False
        for k in range(nleg):
            pos = lf[k, LF_POS]
            if pos != 0.0:
                holding = True
                # _val inlined on hoisted arrays: passing the layout tuple costs a
                # reference count per member, per call
                s = leg_ser[k]
                v = slot_vser[ser_quote[s]]
                vq = 1.0 if v < 0 else (1.0 / marks[v] if slot_vinv[ser_quote[s]] == 1
                                        else marks[v])
                gross += abs(pos) * marks[s] * vq
        if holding:
            st[S_EXPO] += 1
        if curves:
            exposure[i] = gross / eq if holding and eq > 0.0 else 0.0
    fs[F_PREV] = prev
    fs[F_SR] = sr
    fs[F_SR2] = sr2
    fs[F_SD2] = sd2
    fs[F_PEAK] = peak
    fs[F_MAXDD] = max_dd
    fs[F_SUMEQ] = sum_eq
    st[S_PEAK_T] = peak_t0 if peak_i == BEFORE_RANGE else time_ms[peak_i]
    st[S_MAXDUR] = max_dur
    st[S_UNDER] = 1 if under else 0
    return stop


@njit(cache=True, nogil=True, error_model="numpy")
def simulate(L, P, start, end, S, equity, exposure, drawdown, log, T):  # type: ignore[no-untyped-def]
    """Run bars ``[start, end)`` with the plan's execution model."""
    if L.ints[I_MODE] == 0 and L.ints[I_ORDER] == 0:
        return run_range(L, P, start, end, S, equity, exposure, drawdown, log, T)
    return run_range_legs(L, P, start, end, S, equity, exposure, drawdown, log, T)

__all__ = ["MAXLEG", "NLF", "NLI", "NORDER", "run_range_legs", "simulate"]
