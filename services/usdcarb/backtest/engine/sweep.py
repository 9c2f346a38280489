"""Parameter sweeps (numba prange over combinations) and walk-forward analysis.

Each combination runs the same kernel as a single run, from the same initial state and
over the whole range, and its figures come from the same ``finalize``: a sweep
point equals the single run with those parameters.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
from numba import njit, prange

from .baseline import (
    XN,
    XNAMES,
    baseline_curve,
    constant,
    excess_figures,
    excess_of_own,
    with_excess,
)
from .kernel import F_PREV
from .layout import build_plan
from .legs import MAXLEG, NLF, NLI, NORDER, simulate
from .metrics import EXTRA_NAMES, NAMES, NM, as_dict, finalize, utilization
from .model import Cancelled, EngineConfig, Fold, MarketFrame, SweepPoint
from .params import axis_key, normalized, param_vector, series_of, with_values
from .run import Trades, fresh_state

# Figures where less is better when chosen as a walk-forward objective.
LOWER_IS_BETTER = frozenset({"max_drawdown", "max_drawdown_duration_s", "volatility",
                             "fees_paid", "slippage_paid", "rejected_fills",
                             "excess_max_drawdown", "excess_volatility"})


@njit(cache=True, nogil=True, error_model="numpy", parallel=True)
def _sweep_kernel(L, PP, bal0, marks0, fs0, st0, nroutes, nslots, init_eq, ppy,  # type: ignore[no-untyped-def]
                  out, minbals, baseline, xout):
    """Run combination c with parameters PP[c] from the initial state, for every c.

    With a moving hold ``baseline`` (empty when it is constant) each combination keeps
    its equity curve for the excess figures (``xout[c]``), which need it bar by bar.
    """
    n = L.time_ms.shape[0]
    for c in prange(PP.shape[0]):
        S = (bal0.copy(), bal0.copy(), bal0.copy(), marks0.copy(), fs0.copy(), st0.copy(),
             np.zeros(nroutes), np.full(nroutes, -1, np.int64),
             np.zeros(3, np.int64), np.zeros(3, np.int64), np.zeros(3), np.zeros(3),
             np.zeros(3), np.zeros(3), np.zeros(nslots),
             np.zeros((MAXLEG, NLF)), np.zeros((MAXLEG, NLI), np.int64),
             np.zeros(NORDER, np.int64))
        T = Trades(np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(1, np.int8),
                   np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1, np.int64),
                   np.zeros(1, np.int64), np.zeros(1))
        if baseline.shape[0] > 0:
            eq = np.empty(n)
            ex = np.empty(n)
            dd = np.empty(n)
            simulate(L, PP[c], 0, n, S, eq, ex, dd, False, T)
            xout[c, :] = excess_figures(eq, baseline, init_eq, L.time_ms, ppy)
        else:
            none = np.empty(0)
            simulate(L, PP[c], 0, n, S, none, none, none, False, T)
        out[c, :] = finalize(S[4], S[5], n, L.time_ms[n - 1], init_eq, S[4][F_PREV], ppy)
        minbals[c, :] = S[1]


# Execution costs a sweep may vary (ParameterAxis.path), applied to every venue.
FEE_AXIS = "execution.feeMultiplier"
SLIP_AXIS = "execution.slippageMultiplier"
LATENCY_AXIS = "execution.extraLatencyBars"
COST_AXES = (FEE_AXIS, SLIP_AXIS, LATENCY_AXIS)


def grid(kind: str, axes: Mapping[str, Sequence[float]]) -> tuple[list[str], list[str],
                                                                  list[tuple[float, ...]]]:
    """Return (axis paths, parameter keys, the cartesian product in grid order).

    A cost axis (``COST_AXES``) is its own key: it changes the plan, not the parameters.
    """
    paths = list(axes)
    keys = [p if p in COST_AXES else axis_key(kind, p) for p in paths]
    if len(set(keys)) != len(keys):
        raise ValueError(f"expected each parameter on one axis, got {paths}")
    for path in paths:
        if len(axes[path]) == 0:
            raise ValueError(f"expected values on axis {path!r}, got none")
        for value in axes[path]:
            if path == LATENCY_AXIS and not (float(value).is_integer() and 0 <= value <= 10_000):
                raise ValueError(f"expected whole bars from 0 to 10,000 on {path}, got {value}")
            if path in (FEE_AXIS, SLIP_AXIS) and not (0.0 < value <= 100.0):
                raise ValueError(f"expected a multiplier above 0 and at most 100 on {path}, "
                                 f"got {value}")
    combos = list(itertools.product(*(list(map(float, axes[p])) for p in paths)))
    return paths, keys, combos


def _split(keys: list[str], combo: tuple[float, ...]) -> tuple[dict[str, float],
                                                              tuple[float, float, int]]:
    """A combination's strategy parameters and its (fee, slippage, latency) costs."""
    values = dict(zip(keys, combo, strict=True))
    cost = (values.pop(FEE_AXIS, 1.0), values.pop(SLIP_AXIS, 1.0),
            int(values.pop(LATENCY_AXIS, 0)))
    return values, cost


def run_sweep(kind: str, base_params: Mapping[str, Any], axes: Mapping[str, Sequence[float]],
              config: EngineConfig, market: MarketFrame, *,
              on_progress: Callable[[int, int], bool] | None = None,
              span: tuple[int, int] | None = None) -> list[SweepPoint]:
    """Run every combination of ``axes`` over ``base_params``, in parallel, in grid order
    (only those of grid positions [lo, hi) with ``span``: a chunk of a larger sweep).

    Combinations sharing their execution costs run together on one plan; a cancelled
    sweep keeps the points it finished (in grid order).
    """
    paths, keys, combos = grid(kind, axes)
    if span is not None:
        combos = combos[span[0]:span[1]]
    base = normalized(kind, base_params)
    legs = series_of(kind, base)
    pvecs = []
    groups: dict[tuple[float, float, int], list[int]] = {}
    for j, c in enumerate(combos):
        values, cost = _split(keys, c)
        pvecs.append(param_vector(kind, with_values(kind, base, values)))
        groups.setdefault(cost, []).append(j)
    plans = {cost: build_plan(kind, base, config, market, legs, fee_multiplier=cost[0],
                              slippage_multiplier=cost[1], extra_latency_bars=cost[2])
             for cost in groups}
    plan = next(iter(plans.values()))
    S0, init_eq = fresh_state(plan)
    total = len(combos)
    PP = np.array(pvecs).reshape(total, -1)
    out = np.zeros((total, NM))
    minbals = np.zeros((total, len(plan.slots)))
    lay = plan.layout
    ppy = float(config.periods_per_year)
    n = len(lay.time_ms)
    xout = np.zeros((total, XN))
    if constant(lay, plan.init_bal):
        baseline = np.empty(0)
        bl_end = init_eq
    else:
        baseline = np.empty(n)
        baseline_curve(lay, plan.init_bal, S0[3], plan.init_qcash, baseline)
        bl_end = float(baseline[-1])
    ctx = _Ctx(plan, init_eq, bl_end, baseline.shape[0] == 0)
    batch = total if on_progress is None else max(1, 2 * numba.get_num_threads())
    finished: list[int] = []
    for cost, members in groups.items():
        glay = plans[cost].layout
        for lo in range(0, len(members), batch):
            idx = np.array(members[lo:lo + batch], np.int64)
            part, mins, xpart = (np.zeros((len(idx), NM)),
                                 np.zeros((len(idx), len(plan.slots))),
                                 np.zeros((len(idx), XN)))
            # Combinations differ in cost (more trades, more work): hand them out one at
            # a time instead of in equal static blocks, so no thread idles while another
            # works.
            previous = numba.set_parallel_chunksize(1)
            try:
                _sweep_kernel(glay, np.ascontiguousarray(PP[idx]), S0[0], S0[3], S0[4], S0[5],
                              len(glay.r_from), len(plan.slots), init_eq, ppy, part, mins,
                              baseline, xpart)
            finally:
                numba.set_parallel_chunksize(previous)
            out[idx], minbals[idx], xout[idx] = part, mins, xpart
            finished.extend(int(j) for j in idx)
            if on_progress is not None and on_progress(len(finished), total) is False:
                done = sorted(finished)
                raise Cancelled(f"cancelled after {len(done)} of {total} combinations",
                                tuple(_points(ctx, paths, [combos[j] for j in done],
                                              out[done], minbals[done], xout[done])))
    points = _points(ctx, paths, combos, out, minbals, xout)
    _attach_moments(kind, base, keys, config, market, combos, points)
    return points


def _attach_moments(kind: str, base: Mapping[str, Any], keys: list[str],
                    config: EngineConfig, market: MarketFrame,
                    combos: Sequence[tuple[float, ...]], points: list[SweepPoint]) -> None:
    """Give the best point by Sharpe ratio its per-bar return moments (one more run, with
    its curve), which the deflated Sharpe ratio needs (robust.py)."""
    from .robust import return_moments
    from .run import run_backtest

    scored = [(float(p.metrics["sharpe"]), j) for j, p in enumerate(points)
              if math.isfinite(float(p.metrics["sharpe"]))]
    if not scored:
        return
    best = max(scored, key=lambda sj: (sj[0], -sj[1]))[1]
    values, costs = _split(keys, combos[best])
    out = run_backtest(kind, with_values(kind, base, values), config, market, costs=costs)
    points[best].metrics["return_moments"] = return_moments(out.equity,
                                                            out.extras["initial_equity"])


@dataclass(frozen=True)
class _Ctx:
    plan: Any
    init_eq: float
    baseline_end: float
    constant: bool


def _points(ctx: _Ctx, paths: list[str], combos: Sequence[tuple[float, ...]], out: Any,
            minbals: Any, xout: Any) -> list[SweepPoint]:
    plan = ctx.plan
    lim = plan.layout.slot_lim
    points = []
    for j, c in enumerate(combos):
        figures = as_dict(out[j], utilization(plan.slots, plan.init_bal, lim, minbals[j]))
        xvec = excess_of_own(out[j], ctx.init_eq) if ctx.constant else xout[j]
        points.append(SweepPoint(params=dict(zip(paths, c, strict=True)), metrics=with_excess(
            figures, xvec, out[j], ctx.init_eq, ctx.baseline_end)))
    return points


def _score(metrics: Mapping[str, Any], objective: str) -> float:
    value = float(metrics[objective])
    if math.isnan(value):
        return -math.inf
    return -value if objective in LOWER_IS_BETTER else value


def run_walk_forward(kind: str, base_params: Mapping[str, Any],
                     axes: Mapping[str, Sequence[float]], config: EngineConfig,
                     market: MarketFrame, *, in_sample_bars: int, out_of_sample_bars: int,
                     step_bars: int, objective: str = "sharpe",
                     on_progress: Callable[[int, int], bool] | None = None) -> list[Fold]:
    """Optimise on each in-sample window, evaluate the choice on the window after it.

    Folds start at bar 0 and every ``step_bars`` after, as long as both windows fit:
    in-sample ``[s, s + IS)``, out-of-sample ``[s + IS, s + IS + OOS)``. Each window is
    simulated from a fresh state (flat, initial balances). The best combination by
    ``objective`` (the first in grid order on ties) is chosen.
    """
    from .run import run_backtest

    if objective not in (*NAMES, *XNAMES) or objective in EXTRA_NAMES:
        raise ValueError(f"expected an objective among the metrics, got {objective!r}")
    if in_sample_bars < 2 or out_of_sample_bars < 1 or step_bars < 1:
        raise ValueError(f"expected in_sample_bars ≥ 2, out_of_sample_bars ≥ 1 and "
                         f"step_bars ≥ 1, got {in_sample_bars}, {out_of_sample_bars}, "
                         f"{step_bars}")
    n = len(market)
    starts = list(range(0, n - in_sample_bars - out_of_sample_bars + 1, step_bars))
    if not starts:
        raise ValueError(f"expected at least {in_sample_bars + out_of_sample_bars} bars for "
                         f"one fold, got {n}")
    _, keys, _ = grid(kind, axes)
    base = normalized(kind, base_params)
    folds: list[Fold] = []
    for index, s in enumerate(starts):
        is_rng = (s, s + in_sample_bars)
        oos_rng = (is_rng[1], is_rng[1] + out_of_sample_bars)
        # Ask between the in-sample sweep's batches too, so a cancel (or progress) need
        # not wait for a whole fold.
        within = None if on_progress is None else (
            lambda _done, _total, folds_done=index: on_progress(folds_done, len(starts)))
        try:
            points = run_sweep(kind, base, axes, config, market.slice(*is_rng),
                               on_progress=within)
        except Cancelled as exc:
            raise Cancelled(str(exc), tuple(folds)) from None
        best = max(range(len(points)), key=lambda j: (_score(points[j].metrics, objective), -j))
        chosen = points[best]
        values, costs = _split(keys, tuple(chosen.params[p] for p in chosen.params))
        oos = run_backtest(kind, with_values(kind, base, values), config,
                           market.slice(*oos_rng), costs=costs)
        folds.append(Fold(index=index, in_sample=is_rng, out_of_sample=oos_rng,
                          chosen_params=dict(chosen.params),
                          in_sample_metrics=chosen.metrics, out_of_sample_metrics=oos.metrics))
        if on_progress is not None and on_progress(index + 1, len(starts)) is False:
            raise Cancelled(f"cancelled after {index + 1} of {len(starts)} folds",
                            tuple(folds))
    return folds
