"""Single backtest runs: lay out, simulate in chunks (progress, cancellation), measure."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from .baseline import (
    baseline_curve,
    constant,
    excess_figures,
    excess_of_own,
    hold_figures,
    with_excess,
)
from .kernel import (
    F_FEES,
    F_MAXDD,
    F_PREV,
    F_QCASH,
    NF,
    NS,
    S_LASTFILL,
    S_NTR,
    S_REJ,
    S_RT,
    first_present,
)
from .layout import Plan, build_plan
from .legs import MAXLEG, NLF, NLI, NORDER, simulate
from .metrics import as_dict, extras, finalize, start_curve, utilization
from .model import (
    ENGINE_VERSION,
    F64,
    I64,
    BacktestOutput,
    Cancelled,
    EngineConfig,
    MarketFrame,
    Progress,
    TradeLog,
)
from .params import normalized, param_vector, series_of


class Trades(NamedTuple):
    """Kernel-side trade buffers (series index instead of names)."""

    bar: I64
    ser: I64
    side: npt.NDArray[np.int8]
    qty: F64
    px: F64
    fee: F64
    slip: F64
    rt: I64
    sig: I64
    edge: F64


def empty_trades(cap: int) -> Trades:
    return Trades(np.zeros(cap, np.int64), np.zeros(cap, np.int64), np.zeros(cap, np.int8),
                  np.zeros(cap), np.zeros(cap), np.zeros(cap), np.zeros(cap),
                  np.zeros(cap, np.int64), np.zeros(cap, np.int64), np.zeros(cap))


def _grow(t: Trades, cap: int) -> Trades:
    return Trades(*(np.concatenate([a, np.zeros(cap - len(a), a.dtype)]) for a in t))


def initial_state(plan: Plan) -> tuple[Any, ...]:
    """Return the kernel's mutable state for a fresh run (flat, initial balances)."""
    lay = plan.layout
    nslots = len(plan.slots)
    fs = np.zeros(NF)
    fs[F_QCASH] = plan.init_qcash
    st = np.zeros(NS, np.int64)
    st[S_LASTFILL] = -(10**15)
    marks = np.array([first_present(c) for c in lay.closes])
    nr = len(lay.r_from)
    return (plan.init_bal.copy(), plan.init_bal.copy(), plan.init_bal.copy(), marks, fs, st,
            np.zeros(nr), np.full(nr, -1, np.int64),
            np.zeros(3, np.int64), np.zeros(3, np.int64), np.zeros(3), np.zeros(3),
            np.zeros(3), np.zeros(3), np.zeros(nslots),
            np.zeros((MAXLEG, NLF)), np.zeros((MAXLEG, NLI), np.int64),
            np.zeros(NORDER, np.int64))


def initial_equity(plan: Plan, state: tuple[Any, ...]) -> float:
    """Equity before bar 0: initial balances at the first marks, summed as the kernel does."""
    lay = plan.layout
    eq = float(plan.init_qcash)
    marks = state[3]
    for s in lay.nonq:
        v = lay.slot_vser[s]
        eq += plan.init_bal[s] * (1.0 / marks[v] if lay.slot_vinv[s] else marks[v])
    return eq


def fresh_state(plan: Plan) -> tuple[tuple[Any, ...], float]:
    """Return the state of a fresh run and its initial equity (curve statistics started)."""
    state = initial_state(plan)
    init_eq = initial_equity(plan, state)
    start_curve(state[4], state[5], init_eq, int(plan.layout.time_ms[0]))
    return state, init_eq


def figures(state: tuple[Any, ...], n: int, t_last: int, init_eq: float,
            ppy: float) -> F64:
    """Return the metric vector of a finished run's state."""
    fs, st = state[4], state[5]
    out: F64 = finalize(fs, st, n, t_last, init_eq, fs[F_PREV], ppy)
    return out


def execution_model(config: EngineConfig) -> str:
    """The execution model in words, e.g. "all-or-nothing legs, taker fills, next bar"."""
    ex = config.execution
    fill = "next bar" if config.fill == "next" else "same bar (optimistic)"
    legs = "all-or-nothing legs"
    if ex.leg_mode == "independent":
        policy = {"hedge": "hedge at the next bar",
                  "retry": f"retry {ex.retry_bars} bars then unwind",
                  "unwind": "unwind"}[ex.one_leg]
        legs = f"independent legs (one leg filled: {policy})"
    orders = "taker fills"
    if ex.order_type == "maker":
        orders = f"maker orders resting {ex.maker_timeout_bars} bars after due"
    return f"{legs}, {orders}, {fill}"


def prepare(kind: str, params: Mapping[str, Any], config: EngineConfig,
            market: MarketFrame, costs: tuple[float, float, int] = (1.0, 1.0, 0),
            ) -> tuple[Plan, dict[str, Any]]:
    """Lay out a run; ``costs`` = (fee multiplier, slippage multiplier, extra latency bars)."""
    p = normalized(kind, params)
    return build_plan(kind, p, config, market, series_of(kind, p), fee_multiplier=costs[0],
                      slippage_multiplier=costs[1], extra_latency_bars=costs[2]), p


def run_backtest(kind: str, params: Mapping[str, Any], config: EngineConfig,
                 market: MarketFrame, *, on_progress: Callable[[Progress], bool] | None = None,
                 progress_every: int = 100_000,
                 costs: tuple[float, float, int] = (1.0, 1.0, 0),
                 on_baseline: Callable[[F64], None] | None = None) -> BacktestOutput:
    """Simulate ``kind`` with ``params`` over ``market``; Cancelled if on_progress says stop.

    ``on_baseline(curve)`` is called with the hold baseline's equity curve (when it is
    not constant) as soon as it is computed, beside the simulation, on another thread:
    what the caller makes of it (an encoding) is then ready when the run ends.

    ``costs`` scales every fee and slippage and adds latency (layout.build_plan). With
    ``config.robustness`` the output carries the panel: the same run with each extra
    latency, then with each cost multiplier (fees and slippage together).
    """
    plan, p = prepare(kind, params, config, market, costs)
    pvec = param_vector(kind, p)
    out = run_plan(plan, pvec, config, on_progress=on_progress,
                   progress_every=progress_every, baseline_aside=True,
                   on_baseline=on_baseline)
    rob = config.robustness
    if rob is None:
        return out
    panel: list[tuple[str, int, float, dict[str, Any]]] = []
    scenarios = [(f"latency +{x} bar{'' if x == 1 else 's'}", (costs[0], costs[1],
                                                                costs[2] + x), x, 1.0)
                 for x in rob.extra_latency_bars]
    scenarios += [(f"costs x{m:g}", (costs[0] * m, costs[1] * m, costs[2]), 0, m)
                  for m in rob.cost_multipliers]
    for label, alt, extra, multiplier in scenarios:
        alt_plan, _ = prepare(kind, params, config, market, alt)
        panel.append((label, extra, multiplier, run_plan(alt_plan, pvec, config).metrics))
    return dataclasses.replace(out, robustness=tuple(panel))


def run_plan(plan: Plan, pvec: F64, config: EngineConfig, *,
             on_progress: Callable[[Progress], bool] | None = None,
             progress_every: int = 100_000, baseline_aside: bool = False,
             on_baseline: Callable[[F64], None] | None = None) -> BacktestOutput:
    """Run a laid-out plan with kernel parameters ``pvec``.

    ``baseline_aside``: the hold baseline's curve and figures (which depend on the market
    and the initial balances only) are computed on a thread of their own while the
    simulation runs (both are numba code releasing the GIL): the same numbers, sooner
    where a core is free.
    """
    lay = plan.layout
    n = len(lay.time_ms)
    state, init_eq = fresh_state(plan)
    marks0 = state[3].copy()
    ppy = float(config.periods_per_year)
    venues = sorted({v for v, _ in plan.slots})
    baseline: F64 | None = None
    if not constant(lay, plan.init_bal):
        baseline = np.empty(n)

    def hold() -> dict[str, Any]:
        if baseline is not None:
            baseline_curve(lay, plan.init_bal, marks0, plan.init_qcash, baseline)
            if on_baseline is not None:
                on_baseline(baseline)
        return hold_figures(baseline, init_eq, n, lay.time_ms, ppy, venues)

    aside = None
    if baseline_aside and baseline is not None:
        aside = ThreadPoolExecutor(1, thread_name_prefix="baseline")
        held = aside.submit(hold)
    try:
        return _simulate(plan, pvec, config, state, init_eq, ppy, venues, baseline,
                         held.result if aside is not None else hold,
                         on_progress=on_progress, progress_every=progress_every)
    finally:
        if aside is not None:
            aside.shutdown(wait=True)


def _simulate(plan: Plan, pvec: F64, config: EngineConfig, state: tuple[Any, ...],
              init_eq: float, ppy: float, venues: list[str], baseline: F64 | None,
              hold: Callable[[], dict[str, Any]], *,
              on_progress: Callable[[Progress], bool] | None,
              progress_every: int) -> BacktestOutput:
    """The simulation of ``run_plan`` and its output (``hold()``: the hold baseline's
    figures, once ``baseline`` holds its curve)."""
    lay = plan.layout
    n = len(lay.time_ms)
    equity = np.empty(n)
    exposure = np.empty(n)
    drawdown = np.empty(n)
    trades = empty_trades(max(64, n // 64))
    step = n if on_progress is None else max(1, int(progress_every))
    done = 0
    while done < n:
        end = min(n, done + step)
        at = done
        while at < end:
            at = simulate(lay, pvec, at, end, state, equity, exposure, drawdown, True,
                          trades)
            if at < end:
                trades = _grow(trades, 2 * len(trades.bar))
        if on_progress is not None:
            fs, st = state[4], state[5]
            partial = {"total_return": float(equity[end - 1] / init_eq - 1.0)
                       if init_eq > 0.0 else 0.0,
                       "total_pnl": float(equity[end - 1] - init_eq),
                       "max_drawdown": float(fs[F_MAXDD]), "round_trips": float(st[S_RT]),
                       "fees_paid": float(fs[F_FEES]), "rejected_fills": float(st[S_REJ])}
            if on_progress(Progress(end, n, float(equity[end - 1]), partial)) is False:
                raise Cancelled(f"cancelled after {end} of {n} bars")
        done = end
    vec = figures(state, n, int(lay.time_ms[-1]), init_eq, ppy)
    util = utilization(plan.slots, plan.init_bal, lay.slot_lim, state[1])
    held = hold()
    if baseline is None:
        bl_end = init_eq
        xvec = excess_of_own(vec, init_eq)
    else:
        bl_end = float(baseline[-1])
        xvec = excess_figures(equity, baseline, init_eq, lay.time_ms, ppy)
    ntr = int(state[5][S_NTR])
    names_v = np.array([s.venue for s in plan.series], dtype=object)
    names_s = np.array([s.symbol for s in plan.series], dtype=object)
    ser = trades.ser[:ntr]
    log = TradeLog(bar=trades.bar[:ntr].copy(), venue=names_v[ser], symbol=names_s[ser],
                   side=trades.side[:ntr].copy(), quantity=trades.qty[:ntr].copy(),
                   price=trades.px[:ntr].copy(), fee=trades.fee[:ntr].copy(),
                   slippage=trades.slip[:ntr].copy(), round_trip=trades.rt[:ntr].copy(),
                   signal_bar=trades.sig[:ntr].copy(), signal_edge_bps=trades.edge[:ntr].copy(),
                   series=ser.astype(np.int64),
                   series_names=tuple((s.venue, s.symbol) for s in plan.series))
    ext = extras(vec)
    ext["initial_equity"] = init_eq
    ext["bars"] = float(n)
    return BacktestOutput(
        equity=equity, drawdown=drawdown, exposure=exposure, trades=log,
        metrics=with_excess(as_dict(vec, util), xvec, vec, init_eq, bl_end),
        optimistic_fills=config.fill == "same", engine_version=ENGINE_VERSION, extras=ext,
        baseline=baseline,
        baseline_metrics=held, execution_model=execution_model(config))
