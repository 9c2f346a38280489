"""Backtest and sweep results as pandas objects: metrics side by side, sweep points,
walk-forward and k-fold folds, robustness scenarios, the PnL attribution."""

from __future__ import annotations

from typing import Any

import betterproto2
import pandas as pd

from usdcarb_sdk._gen.usdcarb import v1

__all__ = [
    "attribution_parts",
    "cv_folds_frame",
    "folds_frame",
    "metrics_frame",
    "metrics_series",
    "robustness_frame",
    "sweep_points_frame",
]

# Waterfall order: what holding the starting inventory did, then what trading added.
ATTRIBUTION_ORDER = (("inventory_revaluation", "inventory revaluation"),
                     ("trading_pnl", "trading (captured spreads)"), ("fees", "fees"),
                     ("slippage", "slippage"), ("transfer_costs", "transfer costs"),
                     ("legging", "legging"))


def _value(value: Any) -> Any:
    if isinstance(value, betterproto2.Enum):
        return value.name
    return value


def metrics_series(metrics: v1.BacktestMetrics | None) -> pd.Series:
    """Return the scalar figures of ``metrics`` (durations as Timedelta; maps and
    nested messages left out) as a Series indexed by field name."""
    if metrics is None:
        return pd.Series(dtype=object)
    values = metrics.to_dict(output_format=betterproto2.OutputFormat.PYTHON,
                             casing=betterproto2.Casing.SNAKE, include_default_values=True)
    scalars = {k: _value(v) for k, v in values.items() if not isinstance(v, dict | list)}
    return pd.Series({k: (pd.Timedelta(v) if hasattr(v, "total_seconds") else v)
                      for k, v in scalars.items()}, dtype=object)


def metrics_frame(result: v1.BacktestResult) -> pd.DataFrame:
    """Return the strategy's figures beside the hold baseline's, one row per metric.

    Columns: ``strategy`` (absolute figures), ``hold baseline`` (same balances, never
    traded) when the result has it.
    """
    columns = {"strategy": metrics_series(result.metrics)}
    if result.baseline_metrics is not None:
        columns["hold baseline"] = metrics_series(result.baseline_metrics)
    return pd.DataFrame(columns)


def attribution_parts(metrics: v1.BacktestMetrics | None) -> list[tuple[str, float]] | None:
    """Return the PnL attribution as (label, amount) in waterfall order, or None when the
    result carries none (an engine before 2.x)."""
    if metrics is None or metrics.attribution is None:
        return None
    a = metrics.attribution
    return [(label, float(getattr(a, name))) for name, label in ATTRIBUTION_ORDER]


def robustness_frame(result: v1.BacktestResult) -> pd.DataFrame:
    """Return the robustness panel as rows (scenario, extra latency, cost multiplier and
    the scenario's figures), the base run first; empty when none was asked for."""
    panel = result.robustness
    if panel is None or not panel.scenarios:
        return pd.DataFrame()
    rows = [{"scenario": "base run", "extra_latency_bars": 0, "cost_multiplier": 1.0,
             **metrics_series(result.metrics).to_dict()}]
    for s in panel.scenarios:
        rows.append({"scenario": s.label, "extra_latency_bars": s.extra_latency_bars,
                     "cost_multiplier": s.cost_multiplier,
                     **metrics_series(s.metrics).to_dict()})
    return pd.DataFrame(rows)


def sweep_points_frame(sweep: v1.Sweep) -> pd.DataFrame:
    """Return one row per grid point: its parameter values, then its figures."""
    rows = [{**dict(p.parameters), **metrics_series(p.metrics).to_dict()}
            for p in sweep.points]
    return pd.DataFrame(rows)


def folds_frame(sweep: v1.Sweep, objective: str) -> pd.DataFrame:
    """Return walk-forward folds: fold, window starts, chosen parameters, in-sample and
    out-of-sample ``objective``."""
    rows = []
    for f in sweep.folds:
        rows.append({"fold": f.index,
                     "out_of_sample_start": f.out_of_sample.start_time if f.out_of_sample
                     else None,
                     "chosen": dict(f.chosen_parameters),
                     "in_sample": float(getattr(f.in_sample_metrics, objective, 0.0) or 0.0),
                     "out_of_sample": float(getattr(f.out_of_sample_metrics, objective, 0.0)
                                            or 0.0)})
    return pd.DataFrame(rows)


def cv_folds_frame(sweep: v1.Sweep, objective: str) -> pd.DataFrame:
    """Return purged k-fold folds: fold, test window, chosen parameters, train (in-sample)
    and test (out-of-sample) ``objective``."""
    rows = []
    for f in sweep.cv_folds:
        rows.append({"fold": f.index, "test_start": f.test.start_time if f.test else None,
                     "chosen": dict(f.chosen_parameters),
                     "in_sample": float(getattr(f.train_metrics, objective, 0.0) or 0.0),
                     "out_of_sample": float(getattr(f.test_metrics, objective, 0.0) or 0.0)})
    return pd.DataFrame(rows)
