"""gRPC ValidationService: proto <-> application calls, nothing else."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
from google.protobuf import timestamp_pb2

from usdcarb.platform.errors import InvalidArgument
from usdcarb.v1 import common_pb2 as cpb
from usdcarb.v1 import validation_pb2 as pb
from usdcarb.v1 import validation_pb2_grpc as pb_grpc
from usdcarb.validation.app import COLUMNS, ValidationApp, batch_from_columns
from usdcarb.validation.domain.model import Bars, Finding
from usdcarb.validation.domain.quality import QualitySummary
from usdcarb.validation.domain.verdicts import Span
from usdcarb.validation.model import GapRecord, IssueRecord, QuarantineRecord, Series, Window

_LE = {"open_time_ms": "<i8"} | {c: "<f8" for c in COLUMNS[1:]}


def _ts(ms: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromMilliseconds(int(ms))
    return ts


def series_from_pb(s: cpb.SeriesKey) -> Series:
    return Series(s.exchange, s.symbol, s.timeframe)


def series_to_pb(s: Series) -> cpb.SeriesKey:
    return cpb.SeriesKey(exchange=s.exchange, symbol=s.symbol, timeframe=s.timeframe)


def range_from_pb(msg: Any, field: str) -> tuple[int | None, int | None]:
    if not msg.HasField(field):
        return None, None
    r = getattr(msg, field)
    return (r.start_time.ToMilliseconds() if r.HasField("start_time") else None,
            r.end_time.ToMilliseconds() if r.HasField("end_time") else None)


def _range_pb(start_ms: int, end_ms: int) -> cpb.TimeRange:
    return cpb.TimeRange(start_time=_ts(start_ms), end_time=_ts(end_ms))


def batch_from_pb(b: cpb.CandleBatch) -> Bars:
    """Read a CandleBatch in either layout (LE_BYTES when its time column is set)."""
    if b.columns.open_time_ms:
        cols = {}
        for name, dtype in _LE.items():
            raw = getattr(b.columns, name)
            if len(raw) % 8:
                raise InvalidArgument.for_field(
                    f"batch.columns.{name}", "a multiple of 8 bytes", f"{len(raw)} bytes")
            cols[name] = np.frombuffer(raw, dtype)
        return batch_from_columns(cols, b.count, "batch.columns")
    cols = {"open_time_ms": np.fromiter(b.open_time_ms, np.int64, len(b.open_time_ms))}
    for name in COLUMNS[1:]:
        values = getattr(b, name)
        cols[name] = np.fromiter(values, np.float64, len(values))
    return batch_from_columns(cols, b.count, "batch")


def finding_to_pb(f: Finding) -> pb.Finding:
    return pb.Finding(index=f.index, bar_time=_ts(f.bar_time_ms), rule=f.rule,
                      scope=pb.RuleScope.Value(f.scope.value),
                      severity=cpb.Severity.Value(f.severity.value), message=f.message,
                      value=f.value, threshold=f.threshold)


def issue_to_pb(i: IssueRecord) -> pb.ValidationIssue:
    detect = timestamp_pb2.Timestamp()
    detect.FromDatetime(i.detect_time)
    return pb.ValidationIssue(name=i.name, series=series_to_pb(i.series),
                              finding=finding_to_pb(i.finding), detect_time=detect)


def quarantined_to_pb(q: QuarantineRecord) -> pb.QuarantinedBar:
    when = timestamp_pb2.Timestamp()
    when.FromDatetime(q.quarantine_time)
    o, h, lo, c, v = q.values
    return pb.QuarantinedBar(series=series_to_pb(q.series), open_time_ms=q.open_time_ms,
                             open=o, high=h, low=lo, close=c, volume=v, rules=list(q.rules),
                             reason=q.reason, quarantine_time=when)


def gap_to_pb(g: GapRecord) -> pb.Gap:
    detect = timestamp_pb2.Timestamp()
    detect.FromDatetime(g.detect_time)
    return pb.Gap(name=g.name, series=series_to_pb(g.series),
                  range=_range_pb(g.start_ms, g.end_ms), missing_bars=g.missing,
                  state=pb.GapState.Value(g.state.value), filled_bars=g.filled,
                  filled_from=list(g.filled_from), detect_time=detect)


def summary_to_pb(series: Series, q: QualitySummary) -> pb.QualitySummary:
    return pb.QualitySummary(
        series=series_to_pb(series), range=_range_pb(q.start_ms, q.end_ms),
        expected_bars=q.expected_bars, original_bars=q.original_bars,
        filled_bars=q.filled_bars, quarantined_bars=q.quarantined_bars, open_gaps=q.open_gaps,
        missing_bars=q.missing_bars, coverage=q.coverage,
        issues_by_severity=q.issues_by_severity, issues_by_rule=q.issues_by_rule,
        zero_volume_bars=q.zero_volume_bars, filled_gaps=q.filled_gaps,
        unfilled_gaps=q.unfilled_gaps)


def span_to_pb(series: Series, s: Span, when: datetime) -> pb.VerdictSpan:
    update = timestamp_pb2.Timestamp()
    update.FromDatetime(when)
    twin = None
    if s.twin:
        exchange, symbol = s.twin.split(":", 1)
        twin = cpb.SeriesKey(exchange=exchange, symbol=symbol, timeframe=series.timeframe)
    return pb.VerdictSpan(verdict=pb.SeriesVerdictKind.Value(s.kind.value),
                          range=_range_pb(s.start_ms, s.end_ms), bars=s.bars, reason=s.reason,
                          twin=twin, match_ratio=s.match_ratio, update_time=update)


def _policy_pb(series: Series, policy: str, finer: str, when: datetime | None
               ) -> pb.SeriesGapPolicy:
    out = pb.SeriesGapPolicy(series=series_to_pb(series), policy=pb.GapPolicy.Value(policy),
                             finer_timeframe=finer)
    if when is not None:
        out.update_time.FromDatetime(when)
    return out


def window_from_pb(f: pb.SeriesFilter) -> Window:
    start, end = range_from_pb(f, "range")
    return Window(f.exchange, f.symbol, f.timeframe, start, end)


def _enum_name(enum: Any, number: int, field: str) -> str:
    if number == 0:
        return ""
    if number not in enum.values():
        raise InvalidArgument.for_field(field, f"one of {list(enum.keys())}", number)
    return str(enum.Name(number))


class ValidationServicer(pb_grpc.ValidationServiceServicer):
    """usdcarb.v1.ValidationService."""

    def __init__(self, app: ValidationApp) -> None:
        self._app = app

    async def ValidateCandles(self, request: pb.ValidateCandlesRequest, context: Any) -> Any:
        if not request.HasField("batch"):
            raise InvalidArgument.for_field("batch", "a CandleBatch", "unset")
        batch = batch_from_pb(request.batch)
        verdict = await self._app.validate_candles(
            series_from_pb(request.batch.series), batch, record=request.record,
            cross_venue=request.cross_venue)
        accepted = int(np.count_nonzero(verdict.accepted))
        return pb.ValidateCandlesResponse(
            accepted=verdict.accepted.tolist(),
            findings=[finding_to_pb(f) for f in verdict.findings],
            accepted_count=accepted, quarantined_count=len(batch) - accepted)

    async def ValidateRange(self, request: pb.ValidateRangeRequest, context: Any) -> Any:
        start, end = range_from_pb(request, "range")
        result = await self._app.validate_range(
            series_from_pb(request.series), start, end, cross_venue=request.cross_venue)
        return pb.ValidateRangeResponse(
            bars_checked=result.bars_checked,
            findings=[finding_to_pb(f) for f in result.findings],
            gaps=[gap_to_pb(g) for g in result.gaps])

    async def ListValidationIssues(
        self, request: pb.ListValidationIssuesRequest, context: Any
    ) -> Any:
        page = await self._app.list_issues(
            window_from_pb(request.filter),
            min_severity=_enum_name(cpb.Severity, request.min_severity, "min_severity"),
            rule=request.rule, page_size=request.page_size, page_token=request.page_token)
        return pb.ListValidationIssuesResponse(
            issues=[issue_to_pb(i) for i in page.items], next_page_token=page.next_page_token)

    async def ListQuarantinedBars(
        self, request: pb.ListQuarantinedBarsRequest, context: Any
    ) -> Any:
        page = await self._app.list_quarantined(
            window_from_pb(request.filter), page_size=request.page_size,
            page_token=request.page_token)
        return pb.ListQuarantinedBarsResponse(
            bars=[quarantined_to_pb(q) for q in page.items],
            next_page_token=page.next_page_token)

    async def ListGaps(self, request: pb.ListGapsRequest, context: Any) -> Any:
        page = await self._app.list_gaps(
            window_from_pb(request.filter),
            state=_enum_name(pb.GapState, request.state, "state"),
            page_size=request.page_size, page_token=request.page_token)
        return pb.ListGapsResponse(gaps=[gap_to_pb(g) for g in page.items],
                                   next_page_token=page.next_page_token)

    async def FillGaps(self, request: pb.FillGapsRequest, context: Any) -> Any:
        start, end = range_from_pb(request, "range")
        result = await self._app.fill_gaps(
            series_from_pb(request.series), start, end,
            sources=[(s.exchange, s.timeframe) for s in request.sources],
            dry_run=request.dry_run)
        return pb.FillGapsResponse(gaps=[gap_to_pb(g) for g in result.gaps],
                                   bars_filled=result.bars_filled)

    async def GetQualitySummary(self, request: pb.GetQualitySummaryRequest, context: Any) -> Any:
        series = series_from_pb(request.series)
        start, end = range_from_pb(request, "range")
        report = await self._app.quality_report(series, start, end)
        out = summary_to_pb(series, report.summary)
        out.verdict = pb.SeriesVerdictKind.Value(report.verdict.value)
        out.verdict_spans.extend(span_to_pb(series, s, when) for s, when in report.spans)
        for change, span, when in report.history:
            at = timestamp_pb2.Timestamp()
            at.FromDatetime(when)
            out.verdict_history.append(pb.VerdictChange(
                change=change, span=span_to_pb(series, span, when), change_time=at))
        return out

    async def SetGapPolicy(self, request: pb.SetGapPolicyRequest, context: Any) -> Any:
        p = request.gap_policy
        series = series_from_pb(p.series)
        policy, finer, when = await self._app.set_gap_policy(
            series, _enum_name(pb.GapPolicy, p.policy, "gap_policy.policy"), p.finer_timeframe)
        return _policy_pb(series, policy, finer, when)

    async def GetGapPolicy(self, request: pb.GetGapPolicyRequest, context: Any) -> Any:
        series = series_from_pb(request.series)
        return _policy_pb(series, *await self._app.gap_policy(series))

    async def GetSeriesVerdict(self, request: pb.GetSeriesVerdictRequest, context: Any) -> Any:
        series = series_from_pb(request.series)
        start, end = range_from_pb(request, "range")
        lo, hi, kind, spans = await self._app.series_verdict(series, start, end)
        return pb.SeriesVerdict(
            series=series_to_pb(series), range=_range_pb(lo, hi),
            verdict=pb.SeriesVerdictKind.Value(kind.value),
            spans=[span_to_pb(series, s, when) for s, when in spans])

