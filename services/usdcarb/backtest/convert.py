"""Proto ↔ records: jobs, metrics, statuses and stream events.

Shared by the servicer (answers) and the worker (events it publishes and results it
stores), so a result reads the same whether it arrives in a stream or from GetBacktest.
Results are stored as proto3 JSON, which spells NaN and ±Infinity as strings, so
figures like an infinite profit factor survive jsonb exactly.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from google.protobuf import duration_pb2, json_format, timestamp_pb2
from google.rpc import status_pb2

from usdcarb.backtest.model import BacktestJob, JobState, SweepJob
from usdcarb.platform.errors import DomainError, InvalidArgument
from usdcarb.platform.status import domain_status, internal_status
from usdcarb.v1 import backtest_pb2 as pb
from usdcarb.v1 import common_pb2

_DURATIONS = {"max_drawdown_duration_s": "max_drawdown_duration",
              "avg_round_trip_duration_s": "avg_round_trip_duration"}
_INTS = ("round_trips", "rejected_fills", "legged_trades", "partial_fills")
_ATTRIBUTION = tuple(f.name for f in pb.PnlAttribution.DESCRIPTOR.fields)
_FLOATS = tuple(
    f.name for f in pb.BacktestMetrics.DESCRIPTOR.fields
    if f.type == f.TYPE_DOUBLE)
METRIC_NAMES = frozenset(_FLOATS) | frozenset(_INTS) | frozenset(_DURATIONS)


def duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    if math.isfinite(seconds):
        whole = math.floor(seconds)
        d.seconds, d.nanos = int(whole), round((seconds - whole) * 1e9)
        if d.nanos >= 1_000_000_000:
            d.seconds, d.nanos = d.seconds + 1, 0
    return d


def timestamp(value: datetime | int | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    if isinstance(value, datetime):
        ts.FromDatetime(value)
    else:
        ts.FromMilliseconds(int(value))
    return ts


def metrics_to_pb(metrics: Mapping[str, Any]) -> pb.BacktestMetrics:
    """Convert the engine's metrics dict (BacktestMetrics field names) to the message."""
    out = pb.BacktestMetrics()
    for name in _FLOATS:
        if name in metrics and metrics[name] is not None:
            setattr(out, name, float(metrics[name]))
    for name in _INTS:
        if name in metrics and metrics[name] is not None:
            setattr(out, name, int(metrics[name]))
    for key, name in _DURATIONS.items():
        if key in metrics and metrics[key] is not None:
            getattr(out, name).CopyFrom(duration(float(metrics[key])))
    for venue, value in dict(metrics.get("inventory_utilization") or {}).items():
        out.inventory_utilization[str(venue)] = float(value)
    attribution = metrics.get("attribution")
    if attribution:
        for name in _ATTRIBUTION:
            # + 0.0: a negative zero becomes 0 (jsonb would store it so)
            setattr(out.attribution, name, float(attribution.get(name, 0.0)) + 0.0)
    return out


def metric_value(metrics: Mapping[str, Any], name: str) -> float:
    """Return one figure of an engine metrics dict as a float (NaN when absent)."""
    value = metrics.get(name)
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def to_json(message: Any) -> dict[str, Any]:
    return dict(json_format.MessageToDict(message, preserving_proto_field_name=False))


def status_to_json(status: status_pb2.Status) -> dict[str, Any]:
    """Store a google.rpc.Status: code and message readable, details exact (base64)."""
    return {"code": status.code, "message": status.message,
            "status": base64.b64encode(status.SerializeToString()).decode()}


def status_from_json(data: Mapping[str, Any] | None) -> status_pb2.Status | None:
    if not data:
        return None
    if "status" in data:
        return status_pb2.Status.FromString(base64.b64decode(data["status"]))
    return status_pb2.Status(code=int(data.get("code", 2)), message=str(data.get("message", "")))


def error_status(exc: BaseException, request_id: str = "") -> status_pb2.Status:
    """Build the google.rpc.Status a failed job reports.

    Domain errors keep their code and details; the engine's ValueError ("expected X,
    got Y" about parameters) is INVALID_ARGUMENT; anything else is INTERNAL and opaque
    (the traceback is logged by the caller).
    """
    if isinstance(exc, DomainError):
        return domain_status(exc, request_id)
    if isinstance(exc, ValueError):
        return domain_status(InvalidArgument([("parameters", str(exc))]), request_id)
    return internal_status(request_id or "worker")


def lost_worker_error(attempts: int, max_attempts: int) -> dict[str, Any]:
    exc = DomainError(
        f"the worker running this job stopped {attempts} times "
        f"(at most {max_attempts} attempts): expected a finished run, got none",
        reason="WORKER_LOST")
    return status_to_json(domain_status(exc))


def result_from_json(data: Mapping[str, Any] | None) -> pb.BacktestResult | None:
    if not data:
        return None
    result = pb.BacktestResult()
    json_format.ParseDict(dict(data), result)
    return result


def progress_from_json(data: Mapping[str, Any] | None) -> common_pb2.Progress:
    progress = common_pb2.Progress()
    json_format.ParseDict(dict(data or {}), progress, ignore_unknown_fields=True)
    return progress


def backtest_to_pb(job: BacktestJob, progress: common_pb2.Progress | None = None) -> pb.Backtest:
    out = pb.Backtest(
        name=job.name, strategy_version=job.strategy_version,
        config=json_format.ParseDict(job.config, pb.BacktestConfig()),
        state=common_pb2.JobState.Value(job.state.value),
        progress=progress if progress is not None else progress_from_json(job.progress),
        creator=job.creator, owner=job.owner, attempts=job.attempts,
        create_time=timestamp(job.create_time), start_time=timestamp(job.start_time),
        end_time=timestamp(job.end_time),
    )
    result = result_from_json(job.result)
    if result is not None and job.state == JobState.SUCCEEDED:
        out.result.CopyFrom(result)
    error = status_from_json(job.error)
    if error is not None:
        out.error.CopyFrom(error)
    return out


def sweep_to_pb(job: SweepJob, progress: common_pb2.Progress | None = None) -> pb.Sweep:
    out = pb.Sweep(
        name=job.name, strategy_version=job.strategy_version,
        config=json_format.ParseDict(job.config, pb.BacktestConfig()),
        axes=[pb.ParameterAxis(path=a["path"], values=a["values"]) for a in job.axes],
        objective=job.objective, state=common_pb2.JobState.Value(job.state.value),
        progress=progress if progress is not None else progress_from_json(job.progress),
        creator=job.creator, owner=job.owner, create_time=timestamp(job.create_time),
        end_time=timestamp(job.end_time),
    )
    if job.walk_forward:
        out.walk_forward.CopyFrom(json_format.ParseDict(job.walk_forward, pb.WalkForwardSpec()))
    if job.cross_validation:
        out.cross_validation.CopyFrom(json_format.ParseDict(job.cross_validation,
                                                            pb.CrossValidationSpec()))
    for p in job.points or []:
        out.points.append(json_format.ParseDict(p, pb.SweepPoint()))
    for f in job.folds or []:
        if job.cross_validation:   # a k-fold sweep stores its folds in the same column
            out.cv_folds.append(json_format.ParseDict(f, pb.CrossValidationFold()))
        else:
            out.folds.append(json_format.ParseDict(f, pb.WalkForwardFold()))
    analysis = job.analysis or {}
    if analysis.get("deflatedSharpe"):
        out.deflated_sharpe.CopyFrom(json_format.ParseDict(analysis["deflatedSharpe"],
                                                           pb.DeflatedSharpe()))
    if analysis.get("outOfSample"):
        out.out_of_sample.CopyFrom(json_format.ParseDict(analysis["outOfSample"],
                                                         pb.OutOfSampleSummary()))
    error = status_from_json(job.error)
    if error is not None:
        out.error.CopyFrom(error)
    return out


def outcome(state: JobState, error: status_pb2.Status | None) -> common_pb2.Outcome:
    result = {JobState.SUCCEEDED: common_pb2.Outcome.RESULT_OK,
              JobState.CANCELLED: common_pb2.Outcome.RESULT_CANCELLED}.get(
                  state, common_pb2.Outcome.RESULT_FAILED)
    out = common_pb2.Outcome(result=result)
    if error is not None:
        out.error.CopyFrom(error)
    return out


def final_backtest_event(job: BacktestJob) -> pb.BacktestEvent:
    """The completed event of a finished job, rebuilt from its stored record."""
    done = pb.BacktestCompleted(outcome=outcome(job.state, status_from_json(job.error)))
    result = result_from_json(job.result)
    if result is not None and job.state == JobState.SUCCEEDED:
        done.result.CopyFrom(result)
    return pb.BacktestEvent(backtest=job.name, state=common_pb2.JobState.Value(job.state.value),
                            completed=done)


def final_sweep_event(job: SweepJob) -> pb.SweepEvent:
    return pb.SweepEvent(
        sweep=job.name, state=common_pb2.JobState.Value(job.state.value),
        progress=progress_from_json(job.progress),
        outcome=outcome(job.state, status_from_json(job.error)))
