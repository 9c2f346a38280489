"""Is a sweep's best point skill or selection? Deflated Sharpe, out-of-sample decay, k-fold.

Deflated Sharpe ratio (Bailey & López de Prado, "The Deflated Sharpe Ratio", 2014), with
per-bar (not annualised) Sharpe ratios: of N trials whose Sharpe ratios have variance V,
the best expected from luck alone is
``SR0 = sqrt(V)·((1 - g)·Phi^-1(1 - 1/N) + g·Phi^-1(1 - 1/(N·e)))`` (g the Euler-Mascheroni
constant), and the deflated Sharpe ratio of the best point (Sharpe SR over T returns of
skewness g3 and kurtosis g4) is its probabilistic Sharpe ratio against SR0:
``Phi((SR - SR0)·sqrt(T - 1) / sqrt(1 - g3·SR + (g4 - 1)/4·SR²))``. V is the sample variance
(ddof 1) of the trials' per-bar Sharpe ratios; with one trial SR0 is 0.

Purged, embargoed k-fold (López de Prado, "Advances in Financial Machine Learning", ch. 7):
the range is cut into ``folds`` contiguous blocks (the last takes the remainder); for
block k the training set is the range less the block, less ``purge`` bars before it and
``embargo`` bars after it, i.e. up to two windows, each simulated from a fresh state; a
combination's training score is the bar-weighted mean of its objective over the windows,
the best (first in grid order on ties) is run on the block.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from .metrics import INT_NAMES
from .model import F64, Cancelled, EngineConfig, MarketFrame, SweepPoint

EULER_GAMMA = 0.5772156649015329
_N = NormalDist()

# Figures where less is better (sweep.LOWER_IS_BETTER; repeated to avoid an import cycle)
LOWER_IS_BETTER = frozenset({"max_drawdown", "max_drawdown_duration_s", "volatility",
                             "fees_paid", "slippage_paid", "rejected_fills",
                             "excess_max_drawdown", "excess_volatility"})


def return_moments(equity: F64, init: float) -> dict[str, float]:
    """Per-bar returns of a curve (``r[i] = equity[i] / equity[i-1] - 1``, ``equity[-1]`` =
    ``init``): Sharpe ratio (ddof 1), skewness and kurtosis (population moments), count."""
    eq = np.asarray(equity, np.float64)
    prev = np.concatenate([[init], eq[:-1]])
    r = eq / prev - 1.0
    n = len(r)
    mean = float(r.mean()) if n else 0.0
    d = r - mean
    m2 = float(np.mean(d * d)) if n else 0.0
    std = math.sqrt(m2 * n / (n - 1)) if n > 1 else 0.0
    skew = float(np.mean(d ** 3)) / m2 ** 1.5 if m2 > 0 else 0.0
    kurt = float(np.mean(d ** 4)) / m2 ** 2 if m2 > 0 else 3.0
    return {"sharpe_per_bar": mean / std if std > 0 else 0.0, "skewness": skew,
            "kurtosis": kurt, "observations": float(n)}


def expected_max_sharpe(trials: int, variance: float) -> float:
    """SR0: the largest per-bar Sharpe ratio ``trials`` unskilled trials are expected to show."""
    if trials <= 1 or variance <= 0.0:
        return 0.0
    return math.sqrt(variance) * ((1.0 - EULER_GAMMA) * _N.inv_cdf(1.0 - 1.0 / trials)
                                  + EULER_GAMMA * _N.inv_cdf(1.0 - 1.0 / (trials * math.e)))


def probabilistic_sharpe(sharpe: float, benchmark: float, observations: float,
                         skewness: float, kurtosis: float) -> float:
    """P(true Sharpe > ``benchmark``) of a per-bar Sharpe over ``observations`` returns."""
    if observations < 2:
        return 0.0
    var = 1.0 - skewness * sharpe + (kurtosis - 1.0) / 4.0 * sharpe * sharpe
    if var <= 0.0:
        return 0.0
    return _N.cdf((sharpe - benchmark) * math.sqrt(observations - 1.0) / math.sqrt(var))


def deflated_sharpe(points: Sequence[SweepPoint], periods_per_year: float,
                    ) -> dict[str, float] | None:
    """The DeflatedSharpe fields of a grid's best point by Sharpe ratio.

    The best point must carry its ``return_moments`` (``run_sweep`` adds them to the best
    point of the grid, or of each chunk); None when no point has a finite Sharpe ratio.
    """
    root = math.sqrt(periods_per_year)
    scored = [(float(p.metrics["sharpe"]), j) for j, p in enumerate(points)
              if math.isfinite(float(p.metrics.get("sharpe", math.nan)))]
    if not scored:
        return None
    best = max(scored, key=lambda sj: (sj[0], -sj[1]))[1]
    moments = points[best].metrics.get("return_moments")
    if not moments:
        return None
    per_bar = [s / root for s, _ in scored]
    trials = len(per_bar)
    variance = float(np.var(per_bar, ddof=1)) if trials > 1 else 0.0
    sr0 = expected_max_sharpe(trials, variance)
    sr = float(moments["sharpe_per_bar"])
    return {"sharpe": sr, "trials": float(trials), "trials_variance": variance,
            "expected_max_sharpe": sr0, "skewness": float(moments["skewness"]),
            "kurtosis": float(moments["kurtosis"]),
            "observations": float(moments["observations"]),
            "deflated_sharpe": probabilistic_sharpe(
                sr, sr0, float(moments["observations"]), float(moments["skewness"]),
                float(moments["kurtosis"])),
            "annualized_sharpe": float(points[best].metrics["sharpe"])}


def score(metrics: Mapping[str, Any], objective: str) -> float:
    """Higher is better; NaN or missing is the worst."""
    value = float(metrics.get(objective, math.nan))
    if math.isnan(value):
        return -math.inf
    return -value if objective in LOWER_IS_BETTER else value


def out_of_sample(pairs: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]],
                  objective: str) -> dict[str, Any]:
    """OutOfSampleSummary of (in-sample, out-of-sample) figures of chosen combinations."""
    ins = [float(a.get(objective, math.nan)) for a, _ in pairs]
    outs = [float(b.get(objective, math.nan)) for _, b in pairs]
    finite = [(a, b) for a, b in zip(ins, outs, strict=True)
              if math.isfinite(a) and math.isfinite(b)]
    mean_in = sum(a for a, _ in finite) / len(finite) if finite else 0.0
    mean_out = sum(b for _, b in finite) / len(finite) if finite else 0.0
    decayed = sum(1 for a, b in pairs if score(b, objective) < score(a, objective))
    return {"objective": objective, "mean_in_sample": mean_in,
            "mean_out_of_sample": mean_out,
            "decay": 1.0 - mean_out / mean_in if mean_in != 0.0 else 0.0,
            "folds_decayed": decayed, "folds": len(pairs)}


@dataclass(frozen=True)
class CvFold:
    """One k-fold fold (bar ranges [start, end))."""

    index: int
    test: tuple[int, int]
    train: tuple[tuple[int, int], ...]
    chosen_params: dict[str, float]
    train_metrics: dict[str, Any]
    test_metrics: dict[str, Any]


def blocks(n: int, folds: int) -> list[tuple[int, int]]:
    """``folds`` contiguous blocks of ``n`` bars; the last takes the remainder."""
    size = n // folds
    return [(k * size, n if k == folds - 1 else (k + 1) * size) for k in range(folds)]


def train_windows(n: int, test: tuple[int, int], purge: int, embargo: int,
                  ) -> tuple[tuple[int, int], ...]:
    """The training windows of a test block: before it less ``purge``, after it less
    ``embargo``; windows shorter than 2 bars are left out."""
    out = []
    before = (0, max(0, test[0] - purge))
    after = (min(n, test[1] + embargo), n)
    for start, end in (before, after):
        if end - start >= 2:
            out.append((start, end))
    return tuple(out)


def pooled(figures: Sequence[Mapping[str, Any]], weights: Sequence[int]) -> dict[str, Any]:
    """Training figures over windows: counts summed, attribution parts summed, inventory
    utilisation the largest, every other figure the bar-weighted mean."""
    total = float(sum(weights))
    out: dict[str, Any] = {}
    for key, value in figures[0].items():
        if key == "attribution":
            out[key] = {k: sum(float(f[key][k]) for f in figures) for k in value}
        elif key == "inventory_utilization":
            venues = {v for f in figures for v in f[key]}
            out[key] = {v: max(float(f[key].get(v, 0.0)) for f in figures) for v in venues}
        elif key in INT_NAMES:
            out[key] = int(sum(int(f[key]) for f in figures))
        elif isinstance(value, int | float):
            out[key] = sum(float(f[key]) * w for f, w in zip(figures, weights, strict=True)) \
                / total
    return out


def run_cross_validation(kind: str, base_params: Mapping[str, Any],
                         axes: Mapping[str, Sequence[float]], config: EngineConfig,
                         market: MarketFrame, *, folds: int, purge_bars: int = 0,
                         embargo_bars: int = 0, objective: str = "sharpe",
                         on_progress: Callable[[int, int], bool] | None = None,
                         ) -> list[CvFold]:
    """Purged, embargoed k-fold evaluation of a grid (module doc)."""
    from .params import normalized, with_values
    from .run import run_backtest
    from .sweep import _split, grid, run_sweep

    n = len(market)
    if not 2 <= folds <= 20:
        raise ValueError(f"expected 2 to 20 folds, got {folds}")
    if purge_bars < 0 or embargo_bars < 0:
        raise ValueError(f"expected purge and embargo ≥ 0 bars, got {purge_bars}, "
                         f"{embargo_bars}")
    if n // folds < 2:
        raise ValueError(f"expected at least {2 * folds} bars for {folds} folds, got {n}")
    _, keys, _ = grid(kind, axes)
    base = normalized(kind, base_params)
    out: list[CvFold] = []
    parts = blocks(n, folds)
    for index, test in enumerate(parts):
        windows = train_windows(n, test, purge_bars, embargo_bars)
        if not windows:
            raise ValueError(f"expected training bars around fold {index + 1} "
                             f"({test[0]}..{test[1]}), got none after purge and embargo")
        per_window: list[list[SweepPoint]] = []
        for w in windows:
            try:
                per_window.append(run_sweep(kind, base, axes, config, market.slice(*w)))
            except Cancelled as exc:
                raise Cancelled(str(exc), tuple(out)) from None
        weights = [e - s for s, e in windows]
        combos = len(per_window[0])
        scores = []
        for j in range(combos):
            marks = [score(pts[j].metrics, objective) for pts in per_window]
            scores.append(sum(v * w for v, w in zip(marks, weights, strict=True))
                          / sum(weights) if all(math.isfinite(v) for v in marks)
                          else -math.inf)
        best = max(range(combos), key=lambda j: (scores[j], -j))
        chosen = per_window[0][best].params
        values, costs = _split(keys, tuple(chosen[p] for p in chosen))
        test_out = run_backtest(kind, with_values(kind, base, values), config,
                                market.slice(*test), costs=costs)
        out.append(CvFold(index=index, test=test, train=windows, chosen_params=dict(chosen),
                          train_metrics=pooled([pts[best].metrics for pts in per_window],
                                               weights),
                          test_metrics=test_out.metrics))
        if on_progress is not None and on_progress(index + 1, folds) is False:
            raise Cancelled(f"cancelled after {index + 1} of {folds} folds", tuple(out))
    return out


__all__ = ["CvFold", "deflated_sharpe", "expected_max_sharpe", "out_of_sample",
           "probabilistic_sharpe", "return_moments", "run_cross_validation"]
