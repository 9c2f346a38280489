"""Lay a strategy, its configuration and a market frame out as the kernel's flat arrays.

Balances live in *slots*, one per (venue, asset) the run touches: the base and quote of
every traded market on its venue, and both ends of every transfer route. Balances on
other venues or assets never change, so they are left out of equity.

Valuation in ``config.quote_asset``: the quote asset counts 1; another asset is priced by
the last close of ``ASSET/QUOTE`` (or the inverse of ``QUOTE/ASSET``) in the frame,
preferring the slot's own venue. A run whose holdings cannot be priced is refused.
Before a market's first bar its first close is used, for valuation only (no decision
reads a mark), so equity is defined from bar 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .kernel import first_present
from .model import F64, I64, EngineConfig, MarketFrame, Series, VenueCosts
from .params import KIND_CODES, KIND_TRI


class Layout(NamedTuple):
    """Read-only kernel inputs (a numba-compatible named tuple of arrays)."""

    closes: F64            # [series, bar], C-contiguous (one compiled type for every kind)
    vols: F64              # [series, bar]
    time_ms: I64
    ser_base: I64          # series -> slot of its base asset on its venue
    ser_quote: I64         # series -> slot of its quote asset on its venue
    ser_fee: F64           # taker fee as a fraction
    ser_slip: F64          # fixed slippage as a fraction
    ser_imp: F64           # volume impact in bps per 1% of the bar's volume
    leg_ser: I64           # spread/peg legs: series per leg
    leg_sign: I64          # +1 leg A (bought on a +1 target), -1 leg B
    tri_ser: I64           # [2, 3] triangular loop, per direction and step: series
    tri_side: I64          # [2, 3] +1 buy the base with the quote, -1 sell the base
    tri_start: I64         # [1] slot of the loop's start asset
    slot_lim: F64          # lower bound per slot, -inf when none
    slot_vser: I64         # series pricing the slot's asset, -1 for the quote asset
    slot_vinv: I64         # 1 when the pricing series is QUOTE/ASSET
    slot_isq: I64          # 1 for the quote asset
    nonq: I64              # slots not in the quote asset, in valuation order
    r_from: I64
    r_to: I64
    r_fee: F64
    r_delay: I64
    r_isq: I64
    ints: I64              # [kind, delay, has_limits, leg mode, one-leg policy, retry
                           #  bars, order type, maker timeout, fill delay]: legs.py
    leg_lat: I64           # latency in bars per leg (independent legs)
    leg_cap: F64           # participation cap per leg, 0 = none (independent legs)
    ser_mfee: F64          # maker fee as a fraction


@dataclass(frozen=True)
class Plan:
    """A laid-out run: kernel inputs plus the names needed to read results back."""

    layout: Layout
    kind: int
    series: tuple[Series, ...]
    slots: tuple[tuple[str, str], ...]
    init_bal: F64
    init_qcash: float


def _costs(config: EngineConfig, venue: str) -> VenueCosts:
    for v in config.venues:
        if v.venue == venue:
            return v
    raise ValueError(f"expected venue {venue!r} in the backtest config's venues, got "
                     f"{[v.venue for v in config.venues]}")


LEG_MODES = {"all": 0, "independent": 1}
ONE_LEG = {"hedge": 0, "retry": 1, "unwind": 2}
ORDER_TYPES = {"taker": 0, "maker": 1}


def build_plan(kind: str, p: Mapping[str, Any], config: EngineConfig,
               market: MarketFrame, legs: list[tuple[str, str]], *,
               fee_multiplier: float = 1.0, slippage_multiplier: float = 1.0,
               extra_latency_bars: int = 0) -> Plan:
    """Lay out normalized parameters ``p`` of ``kind`` trading the markets ``legs``.

    The multipliers scale every fee (maker and taker) and every slippage (fixed and
    volume impact) as ``bps * multiplier / 1e4``; ``extra_latency_bars`` adds to every
    venue's latency (cost sweep axes and the robustness panel).
    """
    if config.fill not in ("next", "same"):
        raise ValueError(f"expected fill 'next' or 'same', got {config.fill!r}")
    ex = config.execution
    if (ex.leg_mode not in LEG_MODES or ex.one_leg not in ONE_LEG
            or ex.order_type not in ORDER_TYPES):
        raise ValueError(f"expected leg_mode in {list(LEG_MODES)}, one_leg in "
                         f"{list(ONE_LEG)} and order_type in {list(ORDER_TYPES)}, got "
                         f"{ex.leg_mode!r}, {ex.one_leg!r}, {ex.order_type!r}")
    if ex.retry_bars < 1 or ex.maker_timeout_bars < 0:
        raise ValueError(f"expected retry_bars ≥ 1 and maker_timeout_bars ≥ 0, got "
                         f"{ex.retry_bars}, {ex.maker_timeout_bars}")
    if kind == "triangular" and (ex.leg_mode != "all" or ex.order_type != "taker"):
        raise ValueError("expected all-or-nothing taker execution for a triangular loop "
                         "(its legs trade one venue in sequence, each spending what the "
                         f"last one bought), got {ex.leg_mode} legs, {ex.order_type} orders")
    for m in (fee_multiplier, slippage_multiplier):
        if not (0.0 < m <= 100.0):
            raise ValueError(f"expected a cost multiplier above 0 and at most 100, got {m}")
    if extra_latency_bars < 0:
        raise ValueError(f"expected extra latency ≥ 0 bars, got {extra_latency_bars}")
    if config.bar_ms <= 0:
        raise ValueError(f"expected a bar length above 0 ms, got {config.bar_ms}")
    if len(market) == 0:
        raise ValueError("expected bars in the time range, got none")
    used: list[Series] = []
    for venue, symbol in legs:
        try:
            used.append(market.get(venue, symbol))
        except KeyError:
            raise ValueError(f"expected market data for {symbol} on {venue}, got none") from None
    slots: list[tuple[str, str]] = []

    def slot(venue: str, asset: str) -> int:
        if (venue, asset) not in slots:
            slots.append((venue, asset))
        return slots.index((venue, asset))

    for s in used:
        slot(s.venue, s.base)
        slot(s.venue, s.quote)
    for t in config.transfers:
        _costs(config, t.from_venue)
        _costs(config, t.to_venue)
        slot(t.from_venue, t.asset)
        slot(t.to_venue, t.asset)
    q = config.quote_asset
    vser, vinv = [], []
    for venue, asset in slots:
        if asset == q:
            vser.append(-1)
            vinv.append(0)
            continue
        found = _pricing(market, venue, asset, q)
        if found is None:
            raise ValueError(f"expected a market pricing {asset} in the quote asset {q} "
                             f"({asset}/{q} or {q}/{asset}), got none in the data")
        series, inverse = found
        if series not in used:
            used.append(series)
        vser.append(used.index(series))
        vinv.append(int(inverse))
    for s in used:
        if math.isnan(first_present(s.close)):
            raise ValueError(f"expected bars of {s.symbol} on {s.venue} in the time range, "
                             "got none")
    costs = [_costs(config, s.venue) for s in used[:len(legs)]]
    costs += [VenueCosts(venue=s.venue) for s in used[len(legs):]]  # valuation only
    lim = np.full(len(slots), -np.inf)
    init = np.zeros(len(slots))
    for k, (venue, asset) in enumerate(slots):
        vc = _costs(config, venue)
        init[k] = float(vc.initial_balances.get(asset, 0.0))
        if asset in vc.min_balances:
            lim[k] = float(vc.min_balances[asset])
    for c in costs[:len(legs)]:
        if c.latency_bars < 0 or c.latency_ms < 0:
            raise ValueError(f"expected latency_bars and latency_ms ≥ 0 on {c.venue}, got "
                             f"{c.latency_bars}, {c.latency_ms}")
        if not (0.0 <= c.participation_cap <= 1.0):
            raise ValueError(f"expected a participation cap from 0 to 1 on {c.venue}, got "
                             f"{c.participation_cap}")
    lat = [c.latency_bars + -(-c.latency_ms // config.bar_ms) + extra_latency_bars
           for c in costs[:len(legs)]]
    for t in config.transfers:
        if t.delay_bars < 0 or t.fee < 0 or not math.isfinite(t.fee):
            raise ValueError(f"expected a transfer fee and delay ≥ 0, got {t.fee}, {t.delay_bars}")
    fill_delay = 1 if config.fill == "next" else 0
    delay = max(lat) + fill_delay
    code = KIND_CODES[kind]
    tri_ser, tri_side, start = _triangle(used[:3], q) if code == KIND_TRI else (
        np.zeros((2, 3), np.int64), np.zeros((2, 3), np.int64), "")
    qcash = 0.0
    for k, (_, asset) in enumerate(slots):
        if asset == q:
            qcash += init[k]
    layout = Layout(
        closes=rows([s.close for s in used]),
        # Volumes are read only for volume impact and participation caps; without either,
        # one column of zeros (same numba type) spares copying every bar's volume.
        vols=rows([s.volume for s in used]) if any(
            c.volume_impact_bps > 0.0 for c in costs) or any(
            c.participation_cap > 0.0 for c in costs[:len(legs)]) else np.zeros((len(used), 1)),
        time_ms=_owned(np.ascontiguousarray(market.time_ms, np.int64)),
        ser_base=np.array([slots.index((s.venue, s.base)) if (s.venue, s.base) in slots else -1
                           for s in used], np.int64),
        ser_quote=np.array([slots.index((s.venue, s.quote)) if (s.venue, s.quote) in slots
                            else -1 for s in used], np.int64),
        ser_fee=np.array([c.taker_fee_bps * fee_multiplier / 1e4 for c in costs]),
        ser_slip=np.array([c.slippage_bps * slippage_multiplier / 1e4 for c in costs]),
        ser_imp=np.array([c.volume_impact_bps * slippage_multiplier for c in costs]),
        leg_ser=np.arange(len(legs), dtype=np.int64),
        leg_sign=np.array([1, -1][:len(legs)] if code != KIND_TRI else [1, 1, 1], np.int64),
        tri_ser=tri_ser, tri_side=tri_side,
        tri_start=np.array([slots.index((legs[0][0], start)) if start else -1], np.int64),
        slot_lim=lim, slot_vser=np.array(vser, np.int64), slot_vinv=np.array(vinv, np.int64),
        slot_isq=np.array([int(a == q) for _, a in slots], np.int64),
        nonq=np.array([k for k, (_, a) in enumerate(slots) if a != q], np.int64),
        r_from=np.array([slots.index((t.from_venue, t.asset)) for t in config.transfers],
                        np.int64),
        r_to=np.array([slots.index((t.to_venue, t.asset)) for t in config.transfers], np.int64),
        r_fee=np.array([float(t.fee) for t in config.transfers], np.float64),
        r_delay=np.array([t.delay_bars for t in config.transfers], np.int64),
        r_isq=np.array([int(t.asset == q) for t in config.transfers], np.int64),
        ints=np.array([code, delay, int(bool(np.isfinite(lim).any())),
                       LEG_MODES[ex.leg_mode], ONE_LEG[ex.one_leg], ex.retry_bars,
                       ORDER_TYPES[ex.order_type], ex.maker_timeout_bars, fill_delay],
                      np.int64),
        leg_lat=np.array(lat, np.int64),
        leg_cap=np.array([c.participation_cap for c in costs[:len(legs)]], np.float64),
        ser_mfee=np.array([c.maker_fee_bps * fee_multiplier / 1e4 for c in costs]),
    )
    return Plan(layout=layout, kind=code, series=tuple(used), slots=tuple(slots),
                init_bal=init, init_qcash=qcash)


def _owned(a: Any) -> Any:
    """``a`` itself when writable, else a copy: a read-only array is another numba type
    (another compiled specialisation, compiled on the request path)."""
    return a if a.flags.writeable else a.copy()


def rows(columns: list[F64]) -> F64:
    """Return ``columns`` as one C-contiguous float64 [series, bar] array.

    Every kind and series count then runs the same compiled kernel (a tuple of arrays
    would be a new type, and a new compile, per series count). Without a copy when the
    columns already are consecutive rows of one writable 2-D array (``handoff.read_frame``
    reads a frame that way); otherwise stacked.
    """
    first = columns[0] if columns else None
    base = None if first is None else first.base
    if (first is not None and isinstance(base, np.ndarray) and base.dtype == np.float64
            and base.flags.c_contiguous and base.flags.writeable):
        flat = base.reshape(-1)   # a view: the owner is C-contiguous
        n = first.shape[0]
        origin = flat.__array_interface__["data"][0]
        at = first.__array_interface__["data"][0]
        start, rest = divmod(at - origin, 8)
        if rest == 0 and start + len(columns) * n <= flat.size and all(
                c.base is base and c.dtype == np.float64 and c.shape == (n,)
                and c.flags.c_contiguous and c.__array_interface__["data"][0] == at + 8 * k * n
                for k, c in enumerate(columns)):
            view: F64 = flat[start:start + len(columns) * n].reshape(len(columns), n)
            return view
    return np.ascontiguousarray(np.stack([np.asarray(c, np.float64) for c in columns]))


def _pricing(market: MarketFrame, venue: str, asset: str, q: str) -> tuple[Series, bool] | None:
    for inverse, symbol in ((False, f"{asset}/{q}"), (True, f"{q}/{asset}")):
        same = [s for s in market.series if s.symbol == symbol and s.venue == venue]
        other = [s for s in market.series if s.symbol == symbol]
        if same or other:
            return (same or other)[0], inverse
    return None


def _triangle(series: list[Series], q: str) -> tuple[I64, I64, str]:
    """Return both directions of the loop over three markets, starting from one asset.

    The start asset is the quote asset when the loop holds it, else the quote of the
    first market. Direction 0 leaves the start asset through the first market holding it.
    """
    assets = [a for s in series for a in (s.base, s.quote)]
    if len(set(assets)) != 3 or any(assets.count(a) != 2 for a in assets):
        raise ValueError(f"expected three markets over three assets forming a loop, got "
                         f"{[s.symbol for s in series]}")
    start = q if q in assets else series[0].quote
    first = [k for k, s in enumerate(series) if start in (s.base, s.quote)]
    sers = np.zeros((2, 3), np.int64)
    sides = np.zeros((2, 3), np.int64)
    for d, m0 in enumerate(first):
        cur, used = start, [m0]
        for step in range(3):
            m = used[step] if step < len(used) else next(
                k for k in range(3) if k not in used and cur in (series[k].base, series[k].quote))
            if step >= len(used):
                used.append(m)
            s = series[m]
            sers[d, step] = m
            sides[d, step] = 1 if s.quote == cur else -1
            cur = s.base if s.quote == cur else s.quote
    return sers, sides, start
