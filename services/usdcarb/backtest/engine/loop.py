"""The bar loop and the three strategy kinds' signal and execution rules (numba).

Signals (strict inequalities, spread-arb-v1 for the spread):
- cross-exchange spread: s = (b - a) / a; flat and s > entry → +1 (buy A, sell B), flat
  and s < -entry → -1; in a position, |s| < exit or held maxHoldingBars → 0. No flips.
  Edge at signal: s·side in bps.
- peg reversion: d = (p - peg) / peg; flat and d < -entry → +1 (buy), d > entry → -1
  (sell); in a position, exit once the remaining edge -d·side < exit (back within
  exitBps of the peg, or past it), at the stop loss (adverse move from the entry bar's
  close beyond stopLossBps) or after maxHoldingBars. Edge at signal: -d·side in bps.
- triangular: for both directions of the loop, gross = product of conversion rates at
  the closes; signal when gross·Π(1 - fee) - 1 > minEdgeBps (the better direction),
  no new signal before ``last fill + cooldownBars``. The loop spends ``notional`` of the
  start asset leg by leg and is a round trip of its own. Edge at signal: gross - 1 in bps.

Round trip PnL: the change of quote cash plus the change of the other balances at the
closing bar's prices between just before the open and just after the unwind.
Theoretical edge of a round trip: entry edge minus exit edge (spread, peg) or the loop's
gross edge; realised edge: PnL over the first open leg's notional, in bps.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .kernel import (
    F_DURMS,
    F_ENTRY_EDGE,
    F_ENTRY_NOTIONAL,
    F_ENTRY_PX,
    F_FEES,
    F_GLOSS,
    F_GWIN,
    F_MAXDD,
    F_PEAK,
    F_PEND_EDGE,
    F_PREV,
    F_QCASH,
    F_REAL,
    F_RTPNL,
    F_RTQ0,
    F_SD2,
    F_SLIP,
    F_SR,
    F_SR2,
    F_SUMEQ,
    F_THEO,
    F_TURN,
    K_SPREAD,
    K_TRI,
    MAX_LEGS_PER_BAR,
    S_DUE,
    S_ENTRYBAR,
    S_EXPO,
    S_HELD,
    S_LASTFILL,
    S_MAXDUR,
    S_NTR,
    S_PEAK_T,
    S_PEND_DIR,
    S_PENDING,
    S_REJ,
    S_RT,
    S_SIGBAR,
    S_TARGET,
    S_UNDER,
    S_WINS,
    _close_trip,
    _group,
    _impact,
    _open_trip,
    _val,
)

P_ENTRY, P_EXIT, P_QTY, P_HOLD, P_PEG, P_STOP = range(6)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _signal_pair(kind, a, b, held, held_bars, entry_px, entry, exit_, hold, peg,  # type: ignore[no-untyped-def]
                 stop_thr):
    """Spread (closes a, b) or peg (close a) signal; return (fired, target, edge in bps).

    Scalars in, scalars out: it runs on every tradable bar, and arrays or tuples passed
    to a helper each cost reference counting per bar.
    """
    if kind == K_SPREAD:
        # Most bars are far from both thresholds: a multiplication proves it without the
        # division (margins of 1e-9 dwarf the rounding of either side), and bars near a
        # threshold are decided by the exact (b - a) / a, as spread-arb-v1 defines it.
        d = b - a
        if held == 0:
            if a > 0.0 and abs(d) <= entry * a * (1.0 - 1e-9):
                return False, 0, 0.0
            spread = d / a
            if spread > entry:
                return True, 1, spread * 1e4
            if spread < -entry:
                return True, -1, -spread * 1e4
            return False, 0, 0.0
        if not (hold > 0 and held_bars >= hold) and a > 0.0 and abs(d) >= exit_ * a * (
                1.0 + 1e-9):
            return False, 0, 0.0
        spread = d / a
        if abs(spread) < exit_ or (hold > 0 and held_bars >= hold):
            return True, 0, spread * held * 1e4
        return False, 0, 0.0
    d = (a - peg) / peg
    if held == 0:
        if d < -entry:
            return True, 1, -d * 1e4
        if d > entry:
            return True, -1, d * 1e4
        return False, 0, 0.0
    stop = stop_thr > 0 and held * (a - entry_px) / entry_px < -stop_thr
    is_old = hold > 0 and held_bars >= hold
    if -d * held < exit_ or stop or is_old:
        return True, 0, -d * held * 1e4
    return False, 0, 0.0


# ``peak_i`` before any bar of a range: the peak's time is the state's S_PEAK_T.
BEFORE_RANGE = -1
NO_SPELL = -2


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _curve_step(eq, i, prev, sr, sr2, sd2, peak, peak_i, under, dd, max_dd):  # type: ignore[no-untyped-def]
    """One bar (``i``) of the running curve statistics (see metrics.py); scalars in and out.

    Equity often does not move (flat, or marks unchanged): then r is exactly 0 and the
    drawdown is unchanged, so the two divisions are skipped. Scalars only: an array
    passed to an inlined helper costs reference counting on every call.

    The peak is tracked as a bar index, not a time: reading the time column on every bar
    would be a third stream of memory per bar, for a figure (the longest spell under
    water) needed only when a spell ends. ``ended`` is the peak bar of a spell that ends
    on this bar (the caller adds its duration), or ``NO_SPELL``.
    """
    ended = NO_SPELL
    if eq != prev:
        r = eq / prev - 1.0
        prev = eq
        sr += r
        sr2 += r * r
        q = r if r < 0.0 else 0.0   # a select, not a branch: adding 0.0 changes nothing
        sd2 += q * q
        if eq >= peak:
            if under:
                ended = peak_i
                under = False
            peak = eq
            peak_i = i
            dd = 0.0
        else:
            under = True
            dd = 1.0 - eq / peak
            max_dd = max(max_dd, dd)
    elif not under:
        peak_i = i   # still at the peak
    return prev, sr, sr2, sd2, peak, peak_i, under, dd, max_dd, ended


@njit(cache=True, nogil=True, error_model="numpy")
def _longest_spell(max_dur, time_ms, i, ended, peak_t0):  # type: ignore[no-untyped-def]
    """The longest spell under water, now that one from peak bar ``ended`` ends at ``i``.

    Called only when a spell ends (rare), so it may take the time column."""
    start = peak_t0 if ended == BEFORE_RANGE else time_ms[ended]
    return max(max_dur, time_ms[i] - start)


@njit(cache=True, nogil=True, error_model="numpy")
def _signal_loop(closes, tri_ser, tri_side, ser_fee, P, i, delay, fs, st):  # type: ignore[no-untyped-def]
    """Triangular signal on tradable bar ``i``, none pending."""
    if i < st[S_LASTFILL] + P[P_HOLD]:
        return
    best = -1
    best_net = 0.0
    best_gross = 0.0
    for d in range(2):
        gross = 1.0
        net = 1.0
        for k in range(3):
            s = tri_ser[d, k]
            c = closes[s, i]
            rate = 1.0 / c if tri_side[d, k] > 0 else c
            gross *= rate
            net *= rate * (1.0 - ser_fee[s])
        if net - 1.0 > P[P_ENTRY] and (best < 0 or net > best_net):
            best = d
            best_net = net
            best_gross = gross
    if best < 0:
        return
    st[S_PEND_DIR] = best
    st[S_TARGET] = 1
    st[S_PENDING] = 1
    st[S_DUE] = i + delay
    st[S_SIGBAR] = i
    fs[F_PEND_EDGE] = (best_gross - 1.0) * 1e4


@njit(cache=True, nogil=True, error_model="numpy")
def _execute(L, P, i, S, log, T):  # type: ignore[no-untyped-def]
    """Execute the pending triangular order at bar ``i``'s closes.

    Called (not inlined) by run_range: the spread and peg kinds' fill is written out in
    run_range (with ``_pass`` for a group a balance limit stops), and a second inlined
    copy of the fill code would cost compile time (each run of a fresh clone pays it).
    """
    bal, minbal, rtbal, marks, fs, st, r_amt, r_arr = S[:8]
    g_ser, g_side, g_qty, g_px, g_not, g_fee, dbal = S[8:15]
    st[S_PENDING] = 0
    edge = fs[F_PEND_EDGE]
    d = st[S_PEND_DIR]
    amt = P[P_QTY]
    for k in range(3):
        s = L.tri_ser[d, k]
        g_ser[k] = s
        g_side[k] = L.tri_side[d, k]
        c = L.closes[s, i]
        f = L.ser_fee[s]
        if g_side[k] > 0:
            sl = L.ser_slip[s]
            if L.ser_imp[s] > 0.0:
                sl = sl + _impact(L.ser_imp[s], amt / c, L.vols[s, i])
            qty = amt / (c * (1.0 + sl) * (1.0 + f))
            g_qty[k] = qty
            amt = qty
        else:
            g_qty[k] = amt
            sl = L.ser_slip[s]
            if L.ser_imp[s] > 0.0:
                sl = sl + _impact(L.ser_imp[s], amt, L.vols[s, i])
            px = c * (1.0 - sl)
            amt = amt * px - amt * px * f
    _open_trip(L, bal, rtbal, fs)
    if not _group(L, i, 3, g_ser, g_side, g_qty, g_px, g_not, g_fee, dbal, bal, minbal,
                  marks, fs, st, r_amt, r_arr, edge, log, T, False):
        st[S_REJ] += 1
        return
    notional = P[P_QTY] * _val(L, marks, L.tri_start[0])
    _close_trip(L, i, bal, rtbal, marks, fs, st, edge, notional)
    st[S_LASTFILL] = i


@njit(cache=True, nogil=True, error_model="numpy")
def _pass(L, P, i, S, log, T, unwind, side, edge):  # type: ignore[no-untyped-def]
    """One pass of a spread or peg order at bar ``i``: the unwind (``unwind``) or the open.

    Fill the legs at ``side`` whole through ``_group`` (balance limits, rebalancing), or
    count the rejection and return False. run_range calls it (not inlined) for a group
    its written-out fill finds a balance limit would stop; the unwind, then the open.
    """
    bal, minbal, rtbal, marks, fs, st, r_amt, r_arr = S[:8]
    g_ser, g_side, g_qty, g_px, g_not, g_fee, dbal = S[8:15]
    n = L.leg_ser.shape[0]
    for k in range(n):
        g_ser[k] = L.leg_ser[k]
        g_side[k] = side * L.leg_sign[k]
        g_qty[k] = P[P_QTY]
    if not unwind:
        _open_trip(L, bal, rtbal, fs)
    if not _group(L, i, n, g_ser, g_side, g_qty, g_px, g_not, g_fee, dbal, bal, minbal,
                  marks, fs, st, r_amt, r_arr, edge, log, T, False):
        st[S_REJ] += 1
        return False
    if unwind:
        _close_trip(L, i, bal, rtbal, marks, fs, st, fs[F_ENTRY_EDGE] - edge,
                    fs[F_ENTRY_NOTIONAL])
        fs[F_DURMS] += L.time_ms[i] - L.time_ms[st[S_ENTRYBAR]]
        st[S_HELD] = 0
        return True
    st[S_HELD] = side
    st[S_ENTRYBAR] = i
    fs[F_ENTRY_EDGE] = edge
    fs[F_ENTRY_NOTIONAL] = g_not[0] * _val(L, marks, L.ser_quote[g_ser[0]])
    fs[F_ENTRY_PX] = L.closes[g_ser[0], i]
    return True


@njit(cache=True, nogil=True, error_model="numpy")
def _coefs(L, bal, r_amt, r_arr, coef, coefi):  # type: ignore[no-untyped-def]
    """Fold balances into per-series valuation coefficients (after any balance change).

    equity = quote cash + Σ_series coef·mark + coefi / mark. With one slot per pricing
    series (the usual case) coef is that slot's balance exactly, so equity is summed in
    slot order as cash + posA·markA + posB·markB.
    """
    coef[:] = 0.0
    coefi[:] = 0.0
    for j in range(L.nonq.shape[0]):
        s = L.nonq[j]
        if L.slot_vinv[s] == 1:
            coefi[L.slot_vser[s]] += bal[s]
        else:
            coef[L.slot_vser[s]] += bal[s]
    for r in range(L.r_from.shape[0]):
        if L.r_isq[r] == 0 and r_arr[r] >= 0:
            s = L.r_to[r]
            if L.slot_vinv[s] == 1:
                coefi[L.slot_vser[s]] += r_amt[r]
            else:
                coef[L.slot_vser[s]] += r_amt[r]


@njit(cache=True, nogil=True, error_model="numpy")
def run_range(L, P, start, end, S, equity, exposure, drawdown, log, T):  # type: ignore[no-untyped-def]
    """Simulate bars ``[start, end)``; return the bar it stopped at (``end`` when done).

    It stops early only when logging and the trade buffers could overflow on the next
    bar; the caller grows them and resumes from the returned bar with the same state.
    Curves are written when ``equity`` has a slot per bar (sweeps pass empty arrays);
    the curve statistics behind the metrics are accumulated either way.
    """
    bal, minbal, rtbal, marks, fs, st, r_amt, r_arr = S[:8]
    g_ser, g_side, g_qty, g_px, g_not, g_fee, dbal = S[8:15]
    t_bar, t_ser, t_side, t_qty, t_px, t_fee, t_slip, t_rt, t_sig, t_edge = T
    # Only arrays are used on every bar, hoisted out of the named tuples: passing a
    # tuple to a helper costs a reference count per member, per bar.
    closes = L.closes
    ser_quote = L.ser_quote
    slot_vser = L.slot_vser
    slot_vinv = L.slot_vinv
    tri_ser = L.tri_ser
    tri_side = L.tri_side
    ser_fee = L.ser_fee
    ser_base = L.ser_base
    ser_slip = L.ser_slip
    slot_isq = L.slot_isq
    leg_ser = L.leg_ser
    leg_sign = L.leg_sign
    nonq = L.nonq
    r_to = L.r_to
    r_isq = L.r_isq
    kind = L.ints[0]
    delay = L.ints[1]
    nser = len(closes)
    nleg = L.leg_ser.shape[0]      # legs are series 0 .. nleg-1
    nroutes = L.r_to.shape[0]
    qty = P[P_QTY]
    cap = T.bar.shape[0]
    coef = np.zeros(nser)
    coefi = np.zeros(nser)
    _coefs(L, bal, r_amt, r_arr, coef, coefi)
    any_inv = False
    for s in range(nser):
        any_inv = any_inv or coefi[s] != 0.0
    # Hot state lives in locals; it is written back before, and read again after,
    # anything that reads or changes the state arrays (execution, a loop signal).
    pending = st[S_PENDING]
    due = st[S_DUE]
    held = st[S_HELD]
    entry_bar = st[S_ENTRYBAR]
    entry_px = fs[F_ENTRY_PX]
    qcash = fs[F_QCASH]
    c_a = closes[0]
    c_b = closes[nleg - 1]
    c_1 = closes[1 if nser > 1 else 0]
    m0 = marks[0]
    m1 = marks[1 if nser > 1 else 0]
    p_entry = P[P_ENTRY]
    p_exit = P[P_EXIT]
    p_hold = P[P_HOLD]
    p_peg = P[P_PEG]
    p_stop = P[P_STOP]
    room = (not log) or st[S_NTR] + MAX_LEGS_PER_BAR <= cap
    curves = equity.shape[0] > 0
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
    if start < 0:   # lets the compiler drop negative-index handling on every access
        start = 0
    # One loop-invariant flag guards the rare features (buffers nearly full, transfers,
    # inverse pricing): four predictable branches per bar cost more.
    slow = (not room) or nroutes > 0 or any_inv
    # The fast path: without the rare features, on a spread or peg with at most two
    # series, a bar where nothing is due and no signal fires only moves the marks and the
    # curve; the inner loop below runs those bars with nothing else live, and hands the
    # first bar that acts to the general body, which then simulates it from the start.
    # Same expressions in the same order as the general body: the same results.
    two = nser > 1
    leg2 = nleg > 1
    spread = kind == K_SPREAD and leg2
    # pricing of each leg's quote asset, for the exposure (legs are series 0 .. nleg-1)
    v0 = slot_vser[ser_quote[0]]
    inv0 = slot_vinv[ser_quote[0]] == 1
    v1 = slot_vser[ser_quote[1 if leg2 else 0]]
    inv1 = slot_vinv[ser_quote[1 if leg2 else 0]] == 1
    fast = (not slow) and kind != K_TRI and nser <= 2
    # The common fill (spread or peg legs at the close plus slippage) is written out
    # below with the arrays hoisted above: inside a helper, even an inlined one, each
    # array read from the tuples (or passed in) costs an atomic reference count up and
    # down on every fill, which was half of the run's time at ~80k fills. The same
    # expressions in the same order as _pass, _group, _open_trip and _close_trip. With
    # balance limits (every service backtest: an unset minimum is 0) it first checks,
    # as _short does, whether the group would take a slot below its limit; only then
    # does the group go through _pass (rebalancing, rejection). The triangular kind
    # goes through _execute.
    plain = kind != K_TRI
    limits = L.ints[2] == 1
    slot_lim = L.slot_lim
    ser_imp = L.ser_imp
    vols = L.vols
    i = start
    while i < end:
        if fast:
            expo = 0
            k0 = coef[0]
            k1 = coef[1] if two else 0.0
            while i < end:
                u = np.uint64(i)   # an unsigned index: no negative-index handling
                ca = c_a[u]
                c1 = c_1[u]
                if ca == ca and (c1 == c1 or not leg2):      # tradable
                    if pending == 1:
                        if i >= due:
                            break
                    elif spread:
                        # _signal_pair's own early returns, verbatim: any bar they do not
                        # settle goes to the general body.
                        d = c1 - ca
                        if held == 0:
                            if not (ca > 0.0 and abs(d) <= p_entry * ca * (1.0 - 1e-9)):
                                break
                        elif (p_hold > 0 and i - entry_bar >= p_hold) or not (
                                ca > 0.0 and abs(d) >= p_exit * ca * (1.0 + 1e-9)):
                            break
                    else:
                        fired, _, _ = _signal_pair(kind, ca, c_b[i], held, i - entry_bar,
                                                   entry_px, p_entry, p_exit, p_hold, p_peg,
                                                   p_stop)
                        if fired:
                            break
                if ca == ca:
                    m0 = ca
                if two and c1 == c1:
                    m1 = c1
                eq = qcash + k0 * m0
                if two:
                    eq += k1 * m1
                if curves:
                    equity[u] = eq
                (prev, sr, sr2, sd2, peak, peak_i, under, dd, max_dd,
                 ended) = _curve_step(eq, i, prev, sr, sr2, sd2, peak, peak_i, under, dd,
                                      max_dd)
                if ended != NO_SPELL:
                    max_dur = _longest_spell(max_dur, time_ms, i, ended, peak_t0)
                sum_eq += eq
                if held != 0:
                    expo += 1
                if curves:
                    drawdown[u] = dd
                    if held == 0:
                        exposure[u] = 0.0
                    else:   # as in the general body, marks in registers
                        mv = m0 if v0 == 0 else m1
                        vq = 1.0 if v0 < 0 else (1.0 / mv if inv0 else mv)
                        gross = 0.0
                        gross += qty * m0 * vq
                        if leg2:
                            mv = m0 if v1 == 0 else m1
                            vq = 1.0 if v1 < 0 else (1.0 / mv if inv1 else mv)
                            gross += qty * m1 * vq
                        exposure[u] = gross / eq if eq > 0.0 else 0.0
                i += 1
            st[S_EXPO] += expo
            if i >= end:
                break
        if slow and not room:
            stop = i
            break
        if slow and nroutes > 0:
            arrived = False
            for r in range(nroutes):
                if r_arr[r] >= 0 and r_arr[r] <= i:
                    bal[L.r_to[r]] += r_amt[r]
                    r_amt[r] = 0.0
                    r_arr[r] = -1
                    arrived = True
            if arrived:
                _coefs(L, bal, r_amt, r_arr, coef, coefi)
                any_inv = False
                for s in range(nser):
                    any_inv = any_inv or coefi[s] != 0.0
        # The first two series' marks live in registers (m0, m1), synced to ``marks``
        # around anything that reads it.
        tradable = True
        c = c_a[i]
        if c == c:
            m0 = c
        else:
            tradable = False
        if nser > 1:
            c = c_1[i]
            if c == c:
                m1 = c
            elif nleg > 1:
                tradable = False
        if nser > 2:
            for s in range(2, nser):
                c = closes[s, i]
                if c == c:
                    marks[s] = c
                elif s < nleg:
                    tradable = False
        if tradable:
            acted = False
            # At most two passes: a due order executes, then (nothing pending) the
            # strategy looks for a signal, whose order executes on this bar if it is due
            # at once (fill "same"). One site for the written-out fill, not two: each
            # is a copy of the fill code to compile.
            looked = False
            while True:
                if pending == 1 and i >= due:
                    marks[0] = m0
                    marks[nser - 1 if nser < 2 else 1] = m1 if nser > 1 else m0
                    if plain:
                        st[S_PENDING] = 0
                        edge = fs[F_PEND_EDGE]
                        tgt = st[S_TARGET]
                        hx = st[S_HELD]
                        for unwind in (True, False):
                            side = -hx if unwind else tgt
                            if side == 0:
                                continue
                            for k in range(nleg):
                                g_ser[k] = leg_ser[k]
                                g_side[k] = side * leg_sign[k]
                                g_qty[k] = qty
                            if not unwind:
                                for s in range(bal.shape[0]):
                                    rtbal[s] = bal[s]
                                fs[F_RTQ0] = fs[F_QCASH]
                            for k in range(nleg):
                                s = g_ser[k]
                                c = closes[s, i]
                                sl = ser_slip[s]
                                if ser_imp[s] > 0.0:
                                    sl = sl + _impact(ser_imp[s], g_qty[k], vols[s, i])
                                px = c * (1.0 + sl) if g_side[k] > 0 else c * (1.0 - sl)
                                g_px[k] = px
                                g_not[k] = g_qty[k] * px
                                g_fee[k] = g_not[k] * ser_fee[s]
                            if limits:
                                # _short's test, same expressions in the same order
                                short = False
                                for k in range(nleg):
                                    s = g_ser[k]
                                    q = ser_quote[s]
                                    b = ser_base[s]
                                    dbal[q] -= g_side[k] * g_not[k] + g_fee[k]
                                    dbal[b] += g_side[k] * g_qty[k]
                                    if bal[q] + dbal[q] < slot_lim[q]:
                                        short = True
                                    elif bal[b] + dbal[b] < slot_lim[b]:
                                        short = True
                                for k in range(nleg):
                                    dbal[ser_quote[g_ser[k]]] = 0.0
                                    dbal[ser_base[g_ser[k]]] = 0.0
                                if short:
                                    if _pass(L, P, i, S, log, T, unwind, side, edge):
                                        continue
                                    break
                            for k in range(nleg):
                                s = g_ser[k]
                                sd = g_side[k]
                                qs = ser_quote[s]
                                bs = ser_base[s]
                                notional = g_not[k]
                                fee = g_fee[k]
                                bal[qs] -= sd * notional + fee
                                bal[bs] += sd * g_qty[k]
                                if slot_isq[qs] == 1:
                                    fs[F_QCASH] -= sd * notional + fee
                                elif slot_isq[bs] == 1:
                                    fs[F_QCASH] += sd * g_qty[k]
                                v = slot_vser[qs]
                                vq = 1.0 if v < 0 else (1.0 / marks[v] if slot_vinv[qs] == 1
                                                        else marks[v])
                                fs[F_FEES] += fee * vq
                                sp = g_qty[k] * abs(g_px[k] - closes[s, i])
                                fs[F_SLIP] += sp * vq
                                fs[F_TURN] += notional * vq
                                minbal[qs] = min(minbal[qs], bal[qs])
                                minbal[bs] = min(minbal[bs], bal[bs])
                                if log:
                                    j = st[S_NTR]
                                    t_bar[j] = i
                                    t_ser[j] = s
                                    t_side[j] = sd
                                    t_qty[j] = g_qty[k]
                                    t_px[j] = g_px[k]
                                    t_fee[j] = fee
                                    t_slip[j] = sp
                                    t_rt[j] = st[S_RT] + 1
                                    t_sig[j] = st[S_SIGBAR]
                                    t_edge[j] = edge
                                st[S_NTR] += 1
                            if unwind:
                                theo = fs[F_ENTRY_EDGE] - edge
                                rt_not = fs[F_ENTRY_NOTIONAL]
                                pnl = fs[F_QCASH] - fs[F_RTQ0]
                                for jj in range(nonq.shape[0]):
                                    s = nonq[jj]
                                    v = slot_vser[s]
                                    vq = 1.0 if v < 0 else (1.0 / marks[v] if slot_vinv[s] == 1
                                                            else marks[v])
                                    pnl += (bal[s] - rtbal[s]) * vq
                                st[S_RT] += 1
                                fs[F_RTPNL] += pnl
                                if pnl > 0.0:
                                    st[S_WINS] += 1
                                    fs[F_GWIN] += pnl
                                else:
                                    fs[F_GLOSS] -= pnl
                                fs[F_THEO] += theo
                                fs[F_REAL] += pnl / rt_not * 1e4 if rt_not != 0.0 else 0.0
                                fs[F_DURMS] += time_ms[i] - time_ms[st[S_ENTRYBAR]]
                                st[S_HELD] = 0
                                continue
                            st[S_HELD] = tgt
                            st[S_ENTRYBAR] = i
                            fs[F_ENTRY_EDGE] = edge
                            s = ser_quote[g_ser[0]]
                            v = slot_vser[s]
                            vq = 1.0 if v < 0 else (1.0 / marks[v] if slot_vinv[s] == 1
                                                    else marks[v])
                            fs[F_ENTRY_NOTIONAL] = g_not[0] * vq
                            fs[F_ENTRY_PX] = closes[g_ser[0], i]
                    else:
                        _execute(L, P, i, S, log, T)
                    acted = True
                    pending = 0
                    held = st[S_HELD]
                    entry_bar = st[S_ENTRYBAR]
                    entry_px = fs[F_ENTRY_PX]
                if looked or pending == 1:
                    break
                looked = True
                if kind == K_TRI:
                    _signal_loop(closes, tri_ser, tri_side, ser_fee, P, i, delay, fs, st)
                    pending = st[S_PENDING]
                else:
                    fired, tgt, edge = _signal_pair(kind, c_a[i], c_b[i], held,
                                                    i - entry_bar, entry_px, p_entry, p_exit,
                                                    p_hold, p_peg, p_stop)
                    if fired:
                        st[S_TARGET] = tgt
                        st[S_PENDING] = 1
                        st[S_SIGBAR] = i
                        st[S_DUE] = i + delay
                        fs[F_PEND_EDGE] = edge
                        pending = 1
                if pending == 1:
                    due = st[S_DUE]
            if acted:
                # _coefs written out (a call with the layout tuple costs a reference
                # count per member)
                coef[:] = 0.0
                coefi[:] = 0.0
                for jj in range(nonq.shape[0]):
                    s = nonq[jj]
                    if slot_vinv[s] == 1:
                        coefi[slot_vser[s]] += bal[s]
                    else:
                        coef[slot_vser[s]] += bal[s]
                for r in range(nroutes):
                    if r_isq[r] == 0 and r_arr[r] >= 0:
                        s = r_to[r]
                        if slot_vinv[s] == 1:
                            coefi[slot_vser[s]] += r_amt[r]
                        else:
                            coef[slot_vser[s]] += r_amt[r]
                held = st[S_HELD]
                entry_bar = st[S_ENTRYBAR]
                entry_px = fs[F_ENTRY_PX]
                qcash = fs[F_QCASH]
                room = (not log) or st[S_NTR] + MAX_LEGS_PER_BAR <= cap
                any_inv = False
                for s in range(nser):
                    any_inv = any_inv or coefi[s] != 0.0
                slow = (not room) or nroutes > 0 or any_inv
                fast = (not slow) and kind != K_TRI and nser <= 2
        eq = qcash + coef[0] * m0
        if nser > 1:
            eq += coef[1] * m1
        if nser > 2:
            for s in range(2, nser):
                eq += coef[s] * marks[s]
        if slow and any_inv:
            marks[0] = m0
            marks[nser - 1 if nser < 2 else 1] = m1 if nser > 1 else m0
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
        if held != 0:
            st[S_EXPO] += 1
        if held != 0 and curves:
            marks[0] = m0
            marks[nser - 1 if nser < 2 else 1] = m1 if nser > 1 else m0
            gross = 0.0
            for k in range(nleg):
                v = slot_vser[ser_quote[k]]
                vq = 1.0 if v < 0 else (1.0 / marks[v] if slot_vinv[ser_quote[k]] == 1
                                        else marks[v])
                gross += qty * marks[k] * vq
            exposure[i] = gross / eq if eq > 0.0 else 0.0
        elif curves:
            exposure[i] = 0.0
        i += 1
    marks[0] = m0
    marks[nser - 1 if nser < 2 else 1] = m1 if nser > 1 else m0
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


__all__ = ["F_QCASH", "run_range"]
