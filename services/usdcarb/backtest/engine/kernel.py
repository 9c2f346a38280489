"""The per-bar simulation kernel (numba), shared by single runs and sweeps.

One bar, in order:
1. transfers due on this bar arrive;
2. marks take this bar's closes where present;
3. on a *tradable* bar (every traded market has a close) a pending order that is due
   executes, then, with no order
   pending, the strategy looks for a signal; an order is due ``delay`` bars after its
   signal (1 + latency for fill "next", latency for "same"), on the first tradable bar
   from then on, at that bar's closes;
4. equity and exposure are recorded.

Executing held → target unwinds first, then opens (spread-arb-v1). Each group of legs
(the unwind, the open, a triangular loop) is filled whole or not at all: when a leg
would take a slot below its limit the engine first tries to rebalance (below), and if
the balance is still short the group is rejected, counted, and the signal dropped.

Rebalancing rule: for each short slot, the first route into it with nothing in flight
whose source holds a surplus (balance above its limit, or above 0 without one, less the
fee) at least the shortfall moves max(shortfall, half the surplus); the fee is taken
from the source. With ``delay_bars`` 0 it arrives at once and the group is checked again;
otherwise it arrives at the start of bar ``now + delay`` and this group is rejected.
In-flight amounts count in equity at the destination's price.

Slippage of a fill: the venue's fixed ``slippage_bps`` plus ``volume_impact_bps`` per 1%
of the bar's volume the fill takes (its quantity in the market's base asset over the
bar's volume), the share capped at 100%: a fill larger than the bar's volume, or on a bar
with no volume (0 or missing, common on thin venues such as Binance.US), is charged the
impact of 100% participation, 100·``volume_impact_bps``. Volume never makes a bar
untradable.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# float state
F_QCASH, F_FEES, F_SLIP, F_TURN, F_RTPNL, F_GWIN, F_GLOSS, F_THEO, F_REAL = range(9)
F_RTQ0, F_ENTRY_EDGE, F_ENTRY_NOTIONAL, F_PEND_EDGE, F_ENTRY_PX, F_XFEE, F_DURMS = range(9, 16)
# running curve statistics (see metrics.py): previous equity, Σr, Σr², Σmin(r,0)², peak,
# max drawdown, Σequity
F_PREV, F_SR, F_SR2, F_SD2, F_PEAK, F_MAXDD, F_SUMEQ = range(16, 23)
# legging: the signed contribution of legging to PnL (independent legs; see legs.py)
F_LEG = 23
NF = 24
# int state
S_HELD, S_TARGET, S_PENDING, S_DUE, S_SIGBAR, S_ENTRYBAR, S_RT, S_WINS, S_REJ = range(9)
S_NTR, S_EXPO, S_LASTFILL, S_NXFER, S_PEND_DIR = range(9, 14)
S_PEAK_T, S_MAXDUR, S_UNDER = range(14, 17)   # time of the peak, longest underwater (ms)
# orders legged (not every leg filled in full on one bar), leg fills short of their order,
# maker legs posted and filled (legs.py)
S_LEGGED, S_PARTIAL, S_POSTED, S_MFILLED = range(17, 21)
NS = 21
MAX_LEGS_PER_BAR = 6
K_SPREAD, K_PEG, K_TRI = 0, 1, 2


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _impact(imp, qty, vol):  # type: ignore[no-untyped-def]
    """Volume impact as a fraction: ``imp`` bps per 1% of ``vol`` taken, capped at 100%.

    No volume (0, negative or NaN) counts as 100% participation.
    """
    part = qty / vol if vol > 0.0 else 1.0
    if not part < 1.0:
        part = 1.0
    return imp * (part * 100.0) / 1e4


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _val(L, marks, s):  # type: ignore[no-untyped-def]
    """Price of one unit of slot ``s``'s asset in the quote asset."""
    v = L.slot_vser[s]
    if v < 0:
        return 1.0
    if L.slot_vinv[s] == 1:
        return 1.0 / marks[v]
    return marks[v]


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _equity(L, bal, marks, fs, r_amt, r_arr):  # type: ignore[no-untyped-def]
    eq = fs[F_QCASH]
    for j in range(L.nonq.shape[0]):
        s = L.nonq[j]
        eq += bal[s] * _val(L, marks, s)
    for r in range(L.r_from.shape[0]):
        if L.r_isq[r] == 0 and r_arr[r] >= 0:
            eq += r_amt[r] * _val(L, marks, L.r_to[r])
    return eq


@njit(cache=True, nogil=True, error_model="numpy")
def _short(L, bal, dbal, n, g_ser, g_side, g_qty, g_not, g_fee):  # type: ignore[no-untyped-def]
    """Find the first slot a leg takes below its limit, legs applied in order.

    Legs run one after another, so each leg needs the balance left by the ones before
    it (a loop cannot spend what its last leg will bring back). Return (slot or -1,
    shortfall); ``dbal`` is left holding the whole group's change (zeroed by the caller).
    """
    short = -1
    need = 0.0
    for k in range(n):
        s = g_ser[k]
        q = L.ser_quote[s]
        b = L.ser_base[s]
        dbal[q] -= g_side[k] * g_not[k] + g_fee[k]
        dbal[b] += g_side[k] * g_qty[k]
        if short < 0:
            if bal[q] + dbal[q] < L.slot_lim[q]:
                short = q
            elif bal[b] + dbal[b] < L.slot_lim[b]:
                short = b
            if short >= 0:
                need = L.slot_lim[short] - bal[short] - dbal[short]
    return short, need


@njit(cache=True, nogil=True, error_model="numpy")
def _rebalance(L, i, t, need, bal, minbal, dbal, marks, fs, st, r_amt, r_arr):  # type: ignore[no-untyped-def]
    """Start one transfer into slot ``t`` covering ``need``; return True if it arrived."""
    for r in range(L.r_from.shape[0]):
        if L.r_to[r] != t or r_arr[r] >= 0:
            continue
        src = L.r_from[r]
        floor = L.slot_lim[src] if np.isfinite(L.slot_lim[src]) else 0.0
        surplus = bal[src] + dbal[src] - floor - L.r_fee[r]
        if surplus < need:
            continue
        amount = max(need, 0.5 * surplus)
        bal[src] -= amount + L.r_fee[r]
        minbal[src] = min(minbal[src], bal[src])
        if L.r_isq[r] == 1:
            fs[F_QCASH] -= L.r_fee[r]
        fs[F_XFEE] += L.r_fee[r] * _val(L, marks, src)
        st[S_NXFER] += 1
        if L.r_delay[r] == 0:
            bal[t] += amount
            return True
        r_amt[r] = amount
        r_arr[r] = i + L.r_delay[r]
        return False
    return False


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _group(L, i, n, g_ser, g_side, g_qty, g_px, g_not, g_fee, dbal,  # type: ignore[no-untyped-def]
           bal, minbal, marks, fs, st, r_amt, r_arr, edge, log, T, maker):
    """Fill legs ``0..n-1`` of a group at bar ``i`` whole, or return False.

    Taker fills (``maker`` False) are priced at the close plus slippage and pay the taker
    fee; maker fills at the limit already in ``g_px``, with no slippage, paying the maker
    fee (legs.py).
    """
    for k in range(n):
        s = g_ser[k]
        if maker:
            g_not[k] = g_qty[k] * g_px[k]
            g_fee[k] = g_not[k] * L.ser_mfee[s]
            continue
        c = L.closes[s, i]
        sl = L.ser_slip[s]
        if L.ser_imp[s] > 0.0:
            sl = sl + _impact(L.ser_imp[s], g_qty[k], L.vols[s, i])
        px = c * (1.0 + sl) if g_side[k] > 0 else c * (1.0 - sl)
        g_px[k] = px
        g_not[k] = g_qty[k] * px
        g_fee[k] = g_not[k] * L.ser_fee[s]
    if L.ints[2] == 1:
        t, need = _short(L, bal, dbal, n, g_ser, g_side, g_qty, g_not, g_fee)
        tries = 0
        while t >= 0 and tries < 4:
            tries += 1
            ok = _rebalance(L, i, t, need, bal, minbal, dbal, marks, fs, st, r_amt, r_arr)
            for k in range(n):
                dbal[L.ser_quote[g_ser[k]]] = 0.0
                dbal[L.ser_base[g_ser[k]]] = 0.0
            if not ok:
                break
            t, need = _short(L, bal, dbal, n, g_ser, g_side, g_qty, g_not, g_fee)
        for k in range(n):
            dbal[L.ser_quote[g_ser[k]]] = 0.0
            dbal[L.ser_base[g_ser[k]]] = 0.0
        if t >= 0:
            return False
    for k in range(n):
        s = g_ser[k]
        side = g_side[k]
        qs = L.ser_quote[s]
        bs = L.ser_base[s]
        notional = g_not[k]
        fee = g_fee[k]
        bal[qs] -= side * notional + fee
        bal[bs] += side * g_qty[k]
        if L.slot_isq[qs] == 1:
            fs[F_QCASH] -= side * notional + fee
        elif L.slot_isq[bs] == 1:
            fs[F_QCASH] += side * g_qty[k]
        vq = _val(L, marks, qs)
        fs[F_FEES] += fee * vq
        slip = 0.0 if maker else g_qty[k] * abs(g_px[k] - L.closes[s, i])
        fs[F_SLIP] += slip * vq
        fs[F_TURN] += notional * vq
        minbal[qs] = min(minbal[qs], bal[qs])
        minbal[bs] = min(minbal[bs], bal[bs])
        if log:
            j = st[S_NTR]
            T.bar[j] = i
            T.ser[j] = s
            T.side[j] = side
            T.qty[j] = g_qty[k]
            T.px[j] = g_px[k]
            T.fee[j] = fee
            T.slip[j] = slip
            T.rt[j] = st[S_RT] + 1
            T.sig[j] = st[S_SIGBAR]
            T.edge[j] = edge
        st[S_NTR] += 1
    return True


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _close_trip(L, i, bal, rtbal, marks, fs, st, theo, notional):  # type: ignore[no-untyped-def]
    pnl = fs[F_QCASH] - fs[F_RTQ0]
    for j in range(L.nonq.shape[0]):
        s = L.nonq[j]
        pnl += (bal[s] - rtbal[s]) * _val(L, marks, s)
    st[S_RT] += 1
    fs[F_RTPNL] += pnl
    if pnl > 0.0:
        st[S_WINS] += 1
        fs[F_GWIN] += pnl
    else:
        fs[F_GLOSS] -= pnl
    fs[F_THEO] += theo
    fs[F_REAL] += pnl / notional * 1e4 if notional != 0.0 else 0.0


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _open_trip(L, bal, rtbal, fs):  # type: ignore[no-untyped-def]
    for s in range(bal.shape[0]):
        rtbal[s] = bal[s]
    fs[F_RTQ0] = fs[F_QCASH]


@njit(cache=True, nogil=True, error_model="numpy")
def first_present(x):  # type: ignore[no-untyped-def]
    """Return the first non-NaN value of ``x`` (NaN if none), stopping at it."""
    for i in range(x.shape[0]):
        if x[i] == x[i]:
            return x[i]
    return np.nan
