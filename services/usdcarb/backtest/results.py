"""What a finished run becomes: result rows and columns, ranked points, walk-forward folds.

Pure conversions of the engine's output (numpy and protobuf, no I/O), used by the worker
slots (runner.py) when they store an outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from google.protobuf import json_format

from usdcarb.backtest import convert, engine
from usdcarb.backtest.config import RunSpec
from usdcarb.backtest.engine.robust import CvFold, deflated_sharpe, out_of_sample
from usdcarb.backtest.model import EquityColumns, SweepJob, TradeRows
from usdcarb.v1 import backtest_pb2 as pb
from usdcarb.v1 import common_pb2


def snake(d: dict[str, str]) -> dict[str, str]:
    return {"".join("_" + c.lower() if c.isupper() else c for c in k): v for k, v in d.items()}


# Objectives where a smaller figure is better (the engine's walk-forward agrees).
LOWER_IS_BETTER = frozenset({"max_drawdown", "max_drawdown_duration_s", "volatility",
                             "fees_paid", "slippage_paid", "rejected_fills",
                             "excess_max_drawdown", "excess_volatility"})


def rank(metrics: dict[str, Any], objective: str) -> tuple[int, float]:
    """Sort key: best first, NaN last."""
    value = convert.metric_value(metrics, objective)
    if value != value:
        return (1, 0.0)
    return (0, value if objective in LOWER_IS_BETTER else -value)


def backtest_result(out: engine.BacktestOutput, *, bars: int, fingerprint: pb.Fingerprint,
                    elapsed: float, trade_count: int | None = None) -> pb.BacktestResult:
    """The stored result of a finished run: figures, hold baseline, robustness panel
    (``trade_count``: when the output's trade log was handed over apart)."""
    result = pb.BacktestResult(
        metrics=convert.metrics_to_pb(out.metrics),
        trade_count=len(out.trades) if trade_count is None else trade_count, bars=bars,
        fingerprint=fingerprint, optimistic_fills=out.optimistic_fills,
        elapsed=convert.duration(elapsed), execution_model=out.execution_model)
    if out.baseline_metrics:
        result.baseline_metrics.CopyFrom(convert.metrics_to_pb(out.baseline_metrics))
    for label, latency, multiplier, metrics in out.robustness:
        result.robustness.scenarios.append(pb.RobustnessScenario(
            label=label, extra_latency_bars=latency, cost_multiplier=multiplier,
            metrics=convert.metrics_to_pb(metrics)))
    return result


def trade_rows(time_ms: np.ndarray, trades: engine.TradeLog) -> TradeRows:
    bars = np.asarray(trades.bar, dtype=np.int64)
    return TradeRows(time_ms=time_ms[bars], venue=trades.venue, symbol=trades.symbol,
                     side=trades.side, quantity=trades.quantity, price=trades.price,
                     fee=trades.fee, slippage=trades.slippage, round_trip=trades.round_trip,
                     signal_bar=trades.signal_bar, signal_edge_bps=trades.signal_edge_bps,
                     series=trades.series, series_names=trades.series_names)


def equity_columns(time_ms: np.ndarray, out: engine.BacktestOutput) -> EquityColumns:
    def le(a: Any, dtype: str) -> bytes:
        return np.ascontiguousarray(a, dtype=dtype).tobytes()

    baseline = (le([out.extras.get("initial_equity", 0.0)], "<f8") if out.baseline is None
                else le(out.baseline, "<f8"))
    return EquityColumns(points=len(time_ms), time_ms=le(time_ms, "<i8"),
                         equity=le(out.equity, "<f8"), drawdown=le(out.drawdown, "<f8"),
                         exposure=le(out.exposure, "<f8"), baseline=baseline)


def walk_forward_bars(spec_json: dict[str, Any], spec: RunSpec) -> tuple[int, int, int]:
    wf = json_format.ParseDict(spec_json, pb.WalkForwardSpec())
    ins = spec.bars_for(wf.in_sample.ToMilliseconds())
    oos = spec.bars_for(wf.out_of_sample.ToMilliseconds())
    step = spec.bars_for(wf.step.ToMilliseconds()) if wf.HasField("step") else oos
    return ins, oos, step or oos


def _window(bounds: tuple[int, int], time_ms: np.ndarray,
            timeframe_ms: int) -> common_pb2.TimeRange:
    start, end = bounds
    end_ms = int(time_ms[end]) if end < len(time_ms) else int(time_ms[-1]) + timeframe_ms
    return common_pb2.TimeRange(start_time=convert.timestamp(int(time_ms[start])),
                                end_time=convert.timestamp(end_ms))


def cross_validation_bars(spec_json: dict[str, Any], spec: RunSpec) -> tuple[int, int, int]:
    """(folds, purge bars, embargo bars) of a stored CrossValidationSpec."""
    cv = json_format.ParseDict(spec_json, pb.CrossValidationSpec())
    return (cv.folds, spec.bars_for(cv.purge.ToMilliseconds()),
            spec.bars_for(cv.embargo.ToMilliseconds()))


def cv_fold_to_pb(fold: CvFold, time_ms: np.ndarray,
                  timeframe_ms: int) -> pb.CrossValidationFold:
    return pb.CrossValidationFold(
        index=fold.index + 1, test=_window(fold.test, time_ms, timeframe_ms),
        train=[_window(w, time_ms, timeframe_ms) for w in fold.train],
        chosen_parameters=fold.chosen_params,
        train_metrics=convert.metrics_to_pb(fold.train_metrics),
        test_metrics=convert.metrics_to_pb(fold.test_metrics))


def sweep_outcome(job: SweepJob, found: Sequence[Any], times: Any, spec: RunSpec | None,
                  periods_per_year: float,
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Stored form of a sweep's finished points (ranked best first) or folds, and its
    analysis: the deflated Sharpe ratio of a grid, the out-of-sample decay of folds."""
    if job.walk_forward or job.cross_validation:
        assert spec is not None
        if job.walk_forward:
            folds = [convert.to_json(fold_to_pb(f, times, spec.timeframe_ms)) for f in found]
            pairs = [(f.in_sample_metrics, f.out_of_sample_metrics) for f in found]
        else:
            folds = [convert.to_json(cv_fold_to_pb(f, times, spec.timeframe_ms))
                     for f in found]
            pairs = [(f.train_metrics, f.test_metrics) for f in found]
        summary = pb.OutOfSampleSummary(**out_of_sample(pairs, job.objective))
        return [], folds, {"outOfSample": convert.to_json(summary)}
    ranked = sorted(found, key=lambda p: rank(p.metrics, job.objective))
    points = [convert.to_json(pb.SweepPoint(parameters=p.params,
                                            metrics=convert.metrics_to_pb(p.metrics)))
              for p in ranked]
    dsr = deflated_sharpe(list(found), periods_per_year)
    analysis: dict[str, Any] = {}
    if dsr is not None:
        message = pb.DeflatedSharpe()
        for key, value in dsr.items():
            setattr(message, key, int(value) if key in ("trials", "observations") else value)
        analysis["deflatedSharpe"] = convert.to_json(message)
    return points, [], analysis


def fold_to_pb(fold: engine.Fold, time_ms: np.ndarray, timeframe_ms: int) -> pb.WalkForwardFold:
    def window(bounds: tuple[int, int]) -> common_pb2.TimeRange:
        return _window(bounds, time_ms, timeframe_ms)

    return pb.WalkForwardFold(
        index=fold.index + 1, in_sample=window(fold.in_sample),  # the engine counts from 0
        out_of_sample=window(fold.out_of_sample), chosen_parameters=fold.chosen_params,
        in_sample_metrics=convert.metrics_to_pb(fold.in_sample_metrics),
        out_of_sample_metrics=convert.metrics_to_pb(fold.out_of_sample_metrics))

