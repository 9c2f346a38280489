"""A plain-Python, per-bar reference implementation of the engine's documented rules.

Written from the rules in the engine's module docstrings (not from the kernel), with
the same float expressions in the same order, so it must agree with the kernel
exactly. Slow on purpose: dictionaries and floats, one bar at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from usdcarb.backtest.engine import EngineConfig, MarketFrame, Series, VenueCosts
from usdcarb.backtest.engine.params import normalized, required_series


@dataclass
class Fill:
    bar: int
    venue: str
    symbol: str
    side: int
    qty: float
    px: float
    fee: float
    slip: float
    rt: int
    sig: int
    edge: float


@dataclass
class Result:
    equity: list[float] = field(default_factory=list)
    exposure: list[float] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)
    rt_pnl: list[float] = field(default_factory=list)
    rejected: int = 0
    transfers: int = 0
    fees: float = 0.0
    slip: float = 0.0
    xfee: float = 0.0
    legging: float = 0.0
    legged: int = 0
    partial: int = 0
    posted: int = 0
    mfilled: int = 0
    # the hold baseline per bar, whether it is constant, initial equity
    baseline: list[float] = field(default_factory=list)
    constant: bool = True
    init_equity: float = 0.0
    # trades' PnL valued directly: each fill's change of balances at the last marks
    direct_trading: float = 0.0
    attribution: dict[str, float] = field(default_factory=dict)


def run_reference(kind: str, params: dict[str, Any], cfg: EngineConfig,
                  fr: MarketFrame) -> Result:
    p = normalized(kind, params)
    legs = [fr.get(v, s) for v, s in required_series(kind, p)]
    q = cfg.quote_asset
    costs = {c.venue: c for c in cfg.venues}
    slots: list[tuple[str, str]] = []
    for s in legs:
        for a in (s.base, s.quote):
            if (s.venue, a) not in slots:
                slots.append((s.venue, a))
    for t in cfg.transfers:
        for key in ((t.from_venue, t.asset), (t.to_venue, t.asset)):
            if key not in slots:
                slots.append(key)
    series: list[Series] = list(legs)
    price_of: dict[tuple[str, str], tuple[int, bool]] = {}
    for venue, asset in slots:
        if asset == q:
            continue
        found = None
        for inverse, sym in ((False, f"{asset}/{q}"), (True, f"{q}/{asset}")):
            cands = [s for s in fr.series if s.symbol == sym]
            same = [s for s in cands if s.venue == venue]
            if cands:
                found = ((same or cands)[0], inverse)
                break
        assert found is not None
        if found[0] not in series:
            series.append(found[0])
        price_of[(venue, asset)] = (series.index(found[0]), found[1])

    def cost(s: Series) -> VenueCosts:
        return costs[s.venue]

    bal = {k: float(costs[k[0]].initial_balances.get(k[1], 0.0)) for k in slots}
    lim = {k: float(costs[k[0]].min_balances[k[1]]) for k in slots
           if k[1] in costs[k[0]].min_balances}
    qcash = 0.0
    for k in slots:
        if k[1] == q:
            qcash += bal[k]
    marks = []
    for s in series:
        first = next(float(c) for c in s.close if not math.isnan(c))
        marks.append(first)
    ex = cfg.execution
    legs_mode = ex.leg_mode != "all" or ex.order_type != "taker"
    fill_delay = 1 if cfg.fill == "next" else 0
    lat = [cost(s).latency_bars + math.ceil(cost(s).latency_ms / cfg.bar_ms) for s in legs]
    delay = max(lat) + fill_delay
    routes = [dict(t=t, amt=0.0, arr=-1) for t in cfg.transfers]
    res = Result()
    st: dict[str, Any] = dict(held=0, target=0, pending=False, due=0, sig=0, entry_bar=0,
                              entry_edge=0.0, entry_notional=0.0, entry_px=0.0, pend_edge=0.0,
                              rt=0, last_fill=-(10**15), dir=0, q0=0.0, bal0={})

    def val(k: tuple[str, str]) -> float:
        if k[1] == q:
            return 1.0
        j, inv = price_of[k]
        return 1.0 / marks[j] if inv else marks[j]

    def impact(s: Series, i: int, qty: float) -> float:
        # Share of the bar's volume taken, capped at 100%; no volume (0 or NaN) is 100%.
        vol = float(s.volume[i])
        part = min(qty / vol, 1.0) if vol > 0.0 else 1.0
        return cost(s).volume_impact_bps * (part * 100.0) / 1e4

    def leg_px(s: Series, i: int, side: int, qty: float) -> float:
        c = float(s.close[i])
        sl = cost(s).slippage_bps / 1e4
        if cost(s).volume_impact_bps > 0.0:
            sl = sl + impact(s, i, qty)
        return c * (1.0 + sl) if side > 0 else c * (1.0 - sl)

    def fill_group(i: int, group: list[tuple[Series, int, float]], edge: float,
                   limits: list[float] | None = None) -> bool:
        """Fill the group whole (taker; maker at ``limits``: no slippage, maker fee)."""
        nonlocal qcash
        priced = []
        for j, (s, side, qty) in enumerate(group):
            if limits is not None:
                px = limits[j]
                notional = qty * px
                priced.append((s, side, qty, px, notional,
                               notional * (cost(s).maker_fee_bps / 1e4)))
                continue
            px = leg_px(s, i, side, qty)
            notional = qty * px
            priced.append((s, side, qty, px, notional, notional * (cost(s).taker_fee_bps / 1e4)))
        if lim:
            def delta(k: tuple[str, str], upto: int = 99) -> float:
                """Change of slot k by legs 0..upto, in leg order."""
                d = 0.0
                for s, side, qty, _, notional, fee in priced[:upto + 1]:
                    if (s.venue, s.quote) == k:
                        d -= side * notional + fee
                    if (s.venue, s.base) == k:
                        d += side * qty
                return d

            need = 0.0

            def short() -> tuple[str, str] | None:
                """First slot below its limit, legs applied one after another."""
                nonlocal need
                for j, (s, *_) in enumerate(priced):
                    for k in ((s.venue, s.quote), (s.venue, s.base)):
                        if k in lim and bal[k] + delta(k, j) < lim[k]:
                            need = lim[k] - bal[k] - delta(k, j)
                            return k
                return None

            k = short()
            for _ in range(4):
                if k is None:
                    break
                arrived = False
                started = False
                for r in routes:
                    t = r["t"]
                    if (t.to_venue, t.asset) != k or r["arr"] >= 0:
                        continue
                    src = (t.from_venue, t.asset)
                    floor = lim.get(src, 0.0)
                    surplus = bal[src] + delta(src) - floor - t.fee
                    if surplus < need:
                        continue
                    amount = max(need, 0.5 * surplus)
                    bal[src] -= amount + t.fee
                    if t.asset == q:
                        qcash -= t.fee
                    res.xfee += t.fee * val(src)
                    res.transfers += 1
                    started = True
                    if t.delay_bars == 0:
                        bal[k] += amount
                        arrived = True
                    else:
                        r["amt"] = amount
                        r["arr"] = i + t.delay_bars
                    break
                if not (started and arrived):
                    break
                k = short()
            if k is not None:
                return False
        for s, side, qty, px, notional, fee in priced:
            qk, bk = (s.venue, s.quote), (s.venue, s.base)
            bal[qk] -= side * notional + fee
            bal[bk] += side * qty
            if qk[1] == q:
                qcash -= side * notional + fee
            elif bk[1] == q:
                qcash += side * qty
            res.fees += fee * val(qk)
            slip = 0.0 if limits is not None else qty * abs(px - float(s.close[i]))
            res.slip += slip * val(qk)
            res.fills.append(Fill(i, s.venue, s.symbol, side, qty, px, fee, slip,
                                  st["rt"] + 1, st["sig"], edge))
        return True

    def trip_pnl() -> float:
        pnl = qcash - st["q0"]
        for k in slots:
            if k[1] != q:
                pnl += (bal[k] - st["bal0"][k]) * val(k)
        return pnl

    def execute(i: int) -> None:
        nonlocal qcash
        st["pending"] = False
        edge = st["pend_edge"]
        if kind == "triangular":
            steps = loops[st["dir"]]
            amt = float(p["notional"])
            group = []
            for m, side in steps:
                s = legs[m]
                c = float(s.close[i])
                f = cost(s).taker_fee_bps / 1e4
                sl = cost(s).slippage_bps / 1e4
                if side > 0:
                    if cost(s).volume_impact_bps > 0.0:
                        sl = sl + impact(s, i, amt / c)
                    qty = amt / (c * (1.0 + sl) * (1.0 + f))
                    group.append((s, 1, qty))
                    amt = qty
                else:
                    if cost(s).volume_impact_bps > 0.0:
                        sl = sl + impact(s, i, amt)
                    group.append((s, -1, amt))
                    px = c * (1.0 - sl)
                    amt = amt * px - amt * px * f
            st["q0"], st["bal0"] = qcash, dict(bal)
            if not fill_group(i, group, edge):
                res.rejected += 1
                return
            st["rt"] += 1
            res.rt_pnl.append(trip_pnl())
            st["last_fill"] = i
            return
        qty = float(p["quantity"])
        signs = [1, -1][:len(legs)]
        if st["held"] != 0:
            h = st["held"]
            if not fill_group(i, [(s, -h * g, qty) for s, g in zip(legs, signs, strict=True)],
                              edge):
                res.rejected += 1
                return
            st["rt"] += 1
            res.rt_pnl.append(trip_pnl())
            st["held"] = 0
        if st["target"] != 0:
            tg = st["target"]
            st["q0"], st["bal0"] = qcash, dict(bal)
            if not fill_group(i, [(s, tg * g, qty) for s, g in zip(legs, signs, strict=True)],
                              edge):
                res.rejected += 1
                return
            st["held"] = tg
            st["entry_bar"] = i
            st["entry_px"] = float(legs[0].close[i])

    def signal(i: int) -> None:
        h = st["held"]
        if kind == "cross-exchange-spread":
            a, b = float(legs[0].close[i]), float(legs[1].close[i])
            spread = (b - a) / a
            entry, exit_ = float(p["entryBps"]) / 1e4, float(p["exitBps"]) / 1e4
            mh = int(p.get("maxHoldingBars", 0))
            if h == 0:
                if spread > entry:
                    tgt, edge = 1, spread * 1e4
                elif spread < -entry:
                    tgt, edge = -1, -spread * 1e4
                else:
                    return
            elif abs(spread) < exit_ or (mh > 0 and i - st["entry_bar"] >= mh):
                tgt, edge = 0, spread * h * 1e4
            else:
                return
        elif kind == "peg-reversion":
            x = float(legs[0].close[i])
            peg = float(p.get("peg") or 1.0)
            d = (x - peg) / peg
            entry, exit_ = float(p["entryBps"]) / 1e4, float(p["exitBps"]) / 1e4
            stop_thr = float(p.get("stopLossBps", 0)) / 1e4
            mh = int(p.get("maxHoldingBars", 0))
            if h == 0:
                if d < -entry:
                    tgt, edge = 1, -d * 1e4
                elif d > entry:
                    tgt, edge = -1, d * 1e4
                else:
                    return
            else:
                stop = stop_thr > 0 and h * (x - st["entry_px"]) / st["entry_px"] < -stop_thr
                if -d * h < exit_ or stop or (mh > 0 and i - st["entry_bar"] >= mh):
                    tgt, edge = 0, -d * h * 1e4
                else:
                    return
        else:
            if i < st["last_fill"] + int(p.get("cooldownBars", 0)):
                return
            best = None
            for dnum, steps in enumerate(loops):
                gross, net = 1.0, 1.0
                for m, side in steps:
                    c = float(legs[m].close[i])
                    rate = 1.0 / c if side > 0 else c
                    gross *= rate
                    net *= rate * (1.0 - cost(legs[m]).taker_fee_bps / 1e4)
                if net - 1.0 > float(p["minEdgeBps"]) / 1e4 and (best is None or net > best[1]):
                    best = (dnum, net, gross)
            if best is None:
                return
            st["dir"] = best[0]
            tgt, edge = 1, (best[2] - 1.0) * 1e4
        st.update(target=tgt, pending=True, due=i + delay, sig=i, pend_edge=edge)

    loops: list[list[tuple[int, int]]] = []
    if kind == "triangular":
        assets = [a for s in legs for a in (s.base, s.quote)]
        start = q if q in assets else legs[0].quote
        for m0 in [k for k, s in enumerate(legs) if start in (s.base, s.quote)]:
            cur, used, steps = start, [m0], []
            while len(steps) < 3:
                m = used[-1] if len(steps) < len(used) else next(
                    k for k in range(3) if k not in used and cur in (legs[k].base, legs[k].quote))
                if m not in used:
                    used.append(m)
                side = 1 if legs[m].quote == cur else -1
                steps.append((m, side))
                cur = legs[m].base if side > 0 else legs[m].quote
            loops.append(steps)

    bal_init = dict(bal)
    qcash_init = qcash
    res.constant = all(bal_init[k] == 0.0 for k in slots if k[1] != q)
    res.init_equity = qcash_init
    for k in slots:
        if k[1] != q:
            res.init_equity += bal_init[k] * val(k)

    def summed(cash: float, balances: dict[tuple[str, str], float],
               in_flight: bool) -> float:
        """cash + Σ_series (its slots' balances, slot order, then in flight) · mark."""
        coef = [0.0] * len(series)
        coefi = [0.0] * len(series)
        for k in slots:
            if k[1] != q:
                j, inv = price_of[k]
                if inv:
                    coefi[j] += balances[k]
                else:
                    coef[j] += balances[k]
        for r in routes if in_flight else []:
            t = r["t"]
            if t.asset != q and r["arr"] >= 0:
                j, inv = price_of[(t.to_venue, t.asset)]
                if inv:
                    coefi[j] += r["amt"]
                else:
                    coef[j] += r["amt"]
        eq = cash
        for j in range(len(series)):
            eq += coef[j] * marks[j]
        for j in range(len(series)):
            if coefi[j] != 0.0:
                eq += coefi[j] / marks[j]
        return eq

    # -- other execution models (legs.py's rules) ------------------------------------
    nleg = len(legs)
    pos = [0.0] * nleg
    lg: list[dict[str, Any]] = [dict(state="idle") for _ in legs]
    order: dict[str, Any] = dict(ref_bar=-1, legged=False)
    maker = ex.order_type == "maker"

    def fill_leg(i: int, k: int, qty: float, side: int, as_maker: bool) -> bool:
        leg = lg[k]
        s = legs[k]
        if not fill_group(i, [(s, side, qty)], st["pend_edge"],
                          [leg["limit"]] if as_maker else None):
            res.rejected += 1
            return False
        if order["ref_bar"] < 0:
            order["ref_bar"] = i
            if not maker:
                for j in range(nleg):
                    lg[j]["ref"] = marks[j]
        elif i != order["ref_bar"]:
            order["legged"] = True
        basis = leg["limit"] if as_maker else float(s.close[i])
        res.legging += side * qty * (leg["ref"] - basis) * val((s.venue, s.quote))
        pos[k] += side * qty
        leg["rem"] = max(leg["rem"] - qty, 0.0)
        return True

    def capped(k: int, i: int, rem: float) -> float:
        c = cost(legs[k]).participation_cap
        if c <= 0.0:
            return rem
        vol = float(legs[k].volume[i])
        room = c * vol if vol > 0.0 else 0.0
        return min(rem, room)

    def new_order(i: int) -> None:
        tg = st["target"]
        order.update(ref_bar=-1, legged=False)
        if st["held"] == 0:
            st["q0"], st["bal0"] = qcash, dict(bal)
        for k, sign in enumerate([1, -1][:nleg]):
            delta = tg * sign * float(p["quantity"]) - pos[k]
            c = float(legs[k].close[i])
            lg[k] = dict(state="wait" if delta != 0.0 else "idle", rem=abs(delta),
                         ordq=abs(delta), side=1 if delta > 0 else -1,
                         due=i + fill_delay + lat[k], last=-1, left=ex.retry_bars,
                         limit=c, ref=c)
            if maker and delta != 0.0:
                res.posted += 1

    def through(side: int, c: float, limit: float) -> bool:
        return c < limit if side > 0 else c > limit

    def end_order(i: int) -> None:
        st["pending"] = False
        for leg in lg:
            leg["state"], leg["rem"] = "idle", 0.0
        if order["ref_bar"] < 0:
            return
        res.legged += int(order["legged"])
        flat = all(x == 0.0 for x in pos)
        if st["held"] == 0:
            if flat:
                st["rt"] += 1
                res.rt_pnl.append(trip_pnl())
                return
            st["held"] = st["target"]
            st["entry_bar"] = order["ref_bar"]
            st["entry_px"] = lg[0]["ref"]
            return
        if flat:
            st["rt"] += 1
            res.rt_pnl.append(trip_pnl())
            st["held"] = 0

    def progress_all_maker(i: int, tradable: bool) -> None:
        if i < st["due"]:
            return
        if i > st["due"] + ex.maker_timeout_bars:
            end_order(i)
            return
        if not tradable:
            return
        live = [k for k in range(nleg) if lg[k]["rem"] != 0.0]
        if not all(through(lg[k]["side"], float(legs[k].close[i]), lg[k]["limit"])
                   for k in live):
            return
        if not fill_group(i, [(legs[k], lg[k]["side"], lg[k]["rem"]) for k in live],
                          st["pend_edge"], [lg[k]["limit"] for k in live]):
            res.rejected += 1
            end_order(i)
            return
        order["ref_bar"] = i
        for k in live:
            res.mfilled += 1
            pos[k] += lg[k]["side"] * lg[k]["rem"]
            lg[k]["rem"] = 0.0
        end_order(i)

    def progress_independent(i: int) -> None:
        for k in range(nleg):
            leg = lg[k]
            c = float(legs[k].close[i])
            present = not math.isnan(c)
            side = leg["side"]
            if leg["state"] == "wait":
                if i < leg["due"]:
                    continue
                if maker:
                    last = leg["due"] + ex.maker_timeout_bars
                    if i <= last:
                        if present and through(side, c, leg["limit"]):
                            rem = leg["rem"]
                            qty = capped(k, i, rem)
                            if qty > 0.0 and fill_leg(i, k, qty, side, True):
                                if qty < rem:
                                    res.partial += 1
                                    order["legged"] = True
                                if leg["rem"] == 0.0:
                                    leg["state"] = "idle"
                                    res.mfilled += 1
                        continue
                    leg["last"] = last
                    order["legged"] = True
                    if ex.one_leg == "unwind":
                        leg["state"] = "gave_up"
                        continue
                    leg["state"] = "missing"
                else:
                    if not present:
                        continue
                    rem = leg["rem"]
                    qty = capped(k, i, rem)
                    filled = qty > 0.0 and fill_leg(i, k, qty, side, False)
                    if filled and qty < rem:
                        res.partial += 1
                    leg["last"] = i
                    if leg["rem"] == 0.0:
                        leg["state"] = "idle"
                    else:
                        order["legged"] = True
                        leg["state"] = "gave_up" if ex.one_leg == "unwind" else "missing"
                    continue
            if leg["state"] == "missing":
                if i <= leg["last"] or not present:
                    continue
                rem = leg["rem"]
                leg["last"] = i
                if ex.one_leg == "hedge":
                    if fill_leg(i, k, rem, side, False):
                        leg["state"] = "idle"
                    continue
                qty = capped(k, i, rem)
                leg["left"] -= 1
                if qty > 0.0 and fill_leg(i, k, qty, side, False) and qty < rem:
                    res.partial += 1
                if leg["rem"] == 0.0:
                    leg["state"] = "idle"
                elif leg["left"] <= 0:
                    leg["state"] = "gave_up"
                continue
            if leg["state"] == "unwind":
                if i <= leg["last"] or not present:
                    continue
                if fill_leg(i, k, leg["rem"], side, False):
                    leg["state"] = "idle"
                else:
                    leg["last"] = i
        states = [leg["state"] for leg in lg]
        if "gave_up" in states and "wait" not in states and "missing" not in states:
            least = min(leg["ordq"] - leg["rem"] for leg in lg)
            for leg in lg:
                excess = leg["ordq"] - leg["rem"] - least
                if excess > 0.0:
                    leg.update(state="unwind", side=-leg["side"], rem=excess, last=i)
                else:
                    leg.update(state="idle", rem=0.0)
        if all(leg["state"] == "idle" for leg in lg):
            end_order(i)

    n = len(fr)
    for i in range(n):
        for r in routes:
            if r["arr"] >= 0 and r["arr"] <= i:
                t = r["t"]
                bal[(t.to_venue, t.asset)] += r["amt"]
                r["amt"], r["arr"] = 0.0, -1
        for j, s in enumerate(series):
            if not math.isnan(s.close[i]):
                marks[j] = float(s.close[i])
        tradable = all(not math.isnan(s.close[i]) for s in legs)
        if legs_mode:
            progress = progress_independent if ex.leg_mode == "independent" else (
                lambda i, t=tradable: progress_all_maker(i, t))
            if st["pending"]:
                progress(i)
            if not st["pending"] and tradable:
                signal(i)
                if st["pending"]:
                    new_order(i)
                    progress(i)
        elif tradable:
            if st["pending"] and i >= st["due"]:
                execute(i)
            if not st["pending"]:
                signal(i)
                if st["pending"] and i >= st["due"]:
                    execute(i)
        eq = summed(qcash, bal, True)
        res.equity.append(eq)
        res.baseline.append(summed(qcash_init, bal_init, False))
        if legs_mode:
            gross = 0.0
            for k, s in enumerate(legs):
                if pos[k] != 0.0:
                    gross += abs(pos[k]) * marks[k] * val((s.venue, s.quote))
            holding = any(x != 0.0 for x in pos)
            res.exposure.append(gross / eq if holding and eq > 0.0 else 0.0)
        elif st["held"] != 0:
            gross = 0.0
            for s in legs:
                gross += float(p["quantity"]) * marks[series.index(s)] * val((s.venue, s.quote))
            res.exposure.append(gross / eq if eq > 0.0 else 0.0)
        else:
            res.exposure.append(0.0)
    # Attribution: each part from its own tally; trading PnL is what is left.
    total = res.equity[-1] - res.init_equity
    reval = (res.baseline[-1] if not res.constant else res.init_equity) - res.init_equity
    parts = {"inventory_revaluation": reval, "fees": -res.fees, "slippage": -res.slip,
             "transfer_costs": -res.xfee, "legging": res.legging}
    trading = total
    for value in parts.values():
        trading -= value
    res.attribution = {"trading_pnl": trading, **parts, "total_pnl": total}
    # Trading PnL valued directly: each fill's change of balances at the last marks.
    for f in res.fills:
        s_ = fr.get(f.venue, f.symbol)
        value_b = val((f.venue, s_.base))
        value_q = val((f.venue, s_.quote))
        res.direct_trading += f.side * f.qty * value_b - (f.side * f.qty * f.px + f.fee) * value_q
    return res
