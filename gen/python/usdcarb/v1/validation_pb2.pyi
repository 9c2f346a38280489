import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import resource_pb2 as _resource_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from usdcarb.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RuleScope(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RULE_SCOPE_UNSPECIFIED: _ClassVar[RuleScope]
    RULE_SCOPE_BAR: _ClassVar[RuleScope]
    RULE_SCOPE_SERIES: _ClassVar[RuleScope]
    RULE_SCOPE_CROSS_VENUE: _ClassVar[RuleScope]

class GapState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GAP_STATE_UNSPECIFIED: _ClassVar[GapState]
    GAP_STATE_OPEN: _ClassVar[GapState]
    GAP_STATE_PARTIALLY_FILLED: _ClassVar[GapState]
    GAP_STATE_FILLED: _ClassVar[GapState]
    GAP_STATE_UNFILLABLE: _ClassVar[GapState]

class SeriesVerdictKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SERIES_VERDICT_KIND_UNSPECIFIED: _ClassVar[SeriesVerdictKind]
    SERIES_VERDICT_KIND_USABLE: _ClassVar[SeriesVerdictKind]
    SERIES_VERDICT_KIND_STALE: _ClassVar[SeriesVerdictKind]
    SERIES_VERDICT_KIND_ALIASED: _ClassVar[SeriesVerdictKind]
    SERIES_VERDICT_KIND_SUSPECT: _ClassVar[SeriesVerdictKind]

class GapPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GAP_POLICY_UNSPECIFIED: _ClassVar[GapPolicy]
    GAP_POLICY_OFF: _ClassVar[GapPolicy]
    GAP_POLICY_BEST_VENUE: _ClassVar[GapPolicy]
    GAP_POLICY_FINER_TIMEFRAME: _ClassVar[GapPolicy]
RULE_SCOPE_UNSPECIFIED: RuleScope
RULE_SCOPE_BAR: RuleScope
RULE_SCOPE_SERIES: RuleScope
RULE_SCOPE_CROSS_VENUE: RuleScope
GAP_STATE_UNSPECIFIED: GapState
GAP_STATE_OPEN: GapState
GAP_STATE_PARTIALLY_FILLED: GapState
GAP_STATE_FILLED: GapState
GAP_STATE_UNFILLABLE: GapState
SERIES_VERDICT_KIND_UNSPECIFIED: SeriesVerdictKind
SERIES_VERDICT_KIND_USABLE: SeriesVerdictKind
SERIES_VERDICT_KIND_STALE: SeriesVerdictKind
SERIES_VERDICT_KIND_ALIASED: SeriesVerdictKind
SERIES_VERDICT_KIND_SUSPECT: SeriesVerdictKind
GAP_POLICY_UNSPECIFIED: GapPolicy
GAP_POLICY_OFF: GapPolicy
GAP_POLICY_BEST_VENUE: GapPolicy
GAP_POLICY_FINER_TIMEFRAME: GapPolicy

class Finding(_message.Message):
    __slots__ = ("index", "bar_time", "rule", "scope", "severity", "message", "value", "threshold")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    BAR_TIME_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    index: int
    bar_time: _timestamp_pb2.Timestamp
    rule: str
    scope: RuleScope
    severity: _common_pb2.Severity
    message: str
    value: float
    threshold: float
    def __init__(self, index: _Optional[int] = ..., bar_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rule: _Optional[str] = ..., scope: _Optional[_Union[RuleScope, str]] = ..., severity: _Optional[_Union[_common_pb2.Severity, str]] = ..., message: _Optional[str] = ..., value: _Optional[float] = ..., threshold: _Optional[float] = ...) -> None: ...

class ValidateCandlesRequest(_message.Message):
    __slots__ = ("batch", "record", "cross_venue")
    BATCH_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    CROSS_VENUE_FIELD_NUMBER: _ClassVar[int]
    batch: _common_pb2.CandleBatch
    record: bool
    cross_venue: bool
    def __init__(self, batch: _Optional[_Union[_common_pb2.CandleBatch, _Mapping]] = ..., record: _Optional[bool] = ..., cross_venue: _Optional[bool] = ...) -> None: ...

class ValidateCandlesResponse(_message.Message):
    __slots__ = ("accepted", "findings", "accepted_count", "quarantined_count")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_COUNT_FIELD_NUMBER: _ClassVar[int]
    QUARANTINED_COUNT_FIELD_NUMBER: _ClassVar[int]
    accepted: _containers.RepeatedScalarFieldContainer[bool]
    findings: _containers.RepeatedCompositeFieldContainer[Finding]
    accepted_count: int
    quarantined_count: int
    def __init__(self, accepted: _Optional[_Iterable[bool]] = ..., findings: _Optional[_Iterable[_Union[Finding, _Mapping]]] = ..., accepted_count: _Optional[int] = ..., quarantined_count: _Optional[int] = ...) -> None: ...

class ValidateRangeRequest(_message.Message):
    __slots__ = ("series", "range", "cross_venue")
    SERIES_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    CROSS_VENUE_FIELD_NUMBER: _ClassVar[int]
    series: _common_pb2.SeriesKey
    range: _common_pb2.TimeRange
    cross_venue: bool
    def __init__(self, series: _Optional[_Union[_common_pb2.SeriesKey, _Mapping]] = ..., range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., cross_venue: _Optional[bool] = ...) -> None: ...

class ValidateRangeResponse(_message.Message):
    __slots__ = ("bars_checked", "findings", "gaps")
    BARS_CHECKED_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    GAPS_FIELD_NUMBER: _ClassVar[int]
    bars_checked: int
    findings: _containers.RepeatedCompositeFieldContainer[Finding]
    gaps: _containers.RepeatedCompositeFieldContainer[Gap]
    def __init__(self, bars_checked: _Optional[int] = ..., findings: _Optional[_Iterable[_Union[Finding, _Mapping]]] = ..., gaps: _Optional[_Iterable[_Union[Gap, _Mapping]]] = ...) -> None: ...

class ValidationIssue(_message.Message):
    __slots__ = ("name", "series", "finding", "detect_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    FINDING_FIELD_NUMBER: _ClassVar[int]
    DETECT_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    series: _common_pb2.SeriesKey
    finding: Finding
    detect_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., series: _Optional[_Union[_common_pb2.SeriesKey, _Mapping]] = ..., finding: _Optional[_Union[Finding, _Mapping]] = ..., detect_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SeriesFilter(_message.Message):
    __slots__ = ("exchange", "symbol", "timeframe", "range")
    EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    TIMEFRAME_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    exchange: str
    symbol: str
    timeframe: str
    range: _common_pb2.TimeRange
    def __init__(self, exchange: _Optional[str] = ..., symbol: _Optional[str] = ..., timeframe: _Optional[str] = ..., range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ...) -> None: ...

class ListValidationIssuesRequest(_message.Message):
    __slots__ = ("filter", "min_severity", "rule", "page_size", "page_token")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    MIN_SEVERITY_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    filter: SeriesFilter
    min_severity: _common_pb2.Severity
    rule: str
    page_size: int
    page_token: str
    def __init__(self, filter: _Optional[_Union[SeriesFilter, _Mapping]] = ..., min_severity: _Optional[_Union[_common_pb2.Severity, str]] = ..., rule: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListValidationIssuesResponse(_message.Message):
    __slots__ = ("issues", "next_page_token")
    ISSUES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    issues: _containers.RepeatedCompositeFieldContainer[ValidationIssue]
    next_page_token: str
    def __init__(self, issues: _Optional[_Iterable[_Union[ValidationIssue, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class QuarantinedBar(_message.Message):
    __slots__ = ("series", "open_time_ms", "open", "high", "low", "close", "volume", "rules", "reason", "quarantine_time")
    SERIES_FIELD_NUMBER: _ClassVar[int]
    OPEN_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    OPEN_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    LOW_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    QUARANTINE_TIME_FIELD_NUMBER: _ClassVar[int]
    series: _common_pb2.SeriesKey
    open_time_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    rules: _containers.RepeatedScalarFieldContainer[str]
    reason: str
    quarantine_time: _timestamp_pb2.Timestamp
    def __init__(self, series: _Optional[_Union[_common_pb2.SeriesKey, _Mapping]] = ..., open_time_ms: _Optional[int] = ..., open: _Optional[float] = ..., high: _Optional[float] = ..., low: _Optional[float] = ..., close: _Optional[float] = ..., volume: _Optional[float] = ..., rules: _Optional[_Iterable[str]] = ..., reason: _Optional[str] = ..., quarantine_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListQuarantinedBarsRequest(_message.Message):
    __slots__ = ("filter", "page_size", "page_token")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    filter: SeriesFilter
    page_size: int
    page_token: str
    def __init__(self, filter: _Optional[_Union[SeriesFilter, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListQuarantinedBarsResponse(_message.Message):
    __slots__ = ("bars", "next_page_token")
    BARS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    bars: _containers.RepeatedCompositeFieldContainer[QuarantinedBar]
    next_page_token: str
    def __init__(self, bars: _Optional[_Iterable[_Union[QuarantinedBar, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Gap(_message.Message):
    __slots__ = ("name", "series", "range", "missing_bars", "state", "filled_bars", "filled_from", "detect_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    MISSING_BARS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FILLED_BARS_FIELD_NUMBER: _ClassVar[int]
    FILLED_FROM_FIELD_NUMBER: _ClassVar[int]
    DETECT_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    series: _common_pb2.SeriesKey
    range: _common_pb2.TimeRange
    missing_bars: int
    state: GapState
    filled_bars: int
    filled_from: _containers.RepeatedScalarFieldContainer[str]
    detect_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., series: _Optional[_Union[_common_pb2.SeriesKey, _Mapping]] = ..., range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., missing_bars: _Optional[int] = ..., state: _Optional[_Union[GapState, str]] = ..., filled_bars: _Optional[int] = ..., filled_from: _Optional[_Iterable[str]] = ..., detect_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListGapsRequest(_message.Message):
    __slots__ = ("filter", "state", "page_size", "page_token")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    filter: SeriesFilter
    state: GapState
    page_size: int
    page_token: str
    def __init__(self, filter: _Optional[_Union[SeriesFilter, _Mapping]] = ..., state: _Optional[_Union[GapState, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListGapsResponse(_message.Message):
    __slots__ = ("gaps", "next_page_token")
    GAPS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    gaps: _containers.RepeatedCompositeFieldContainer[Gap]
    next_page_token: str
    def __init__(self, gaps: _Optional[_Iterable[_Union[Gap, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class FillSource(_message.Message):
    __slots__ = ("exchange", "timeframe")
    EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    TIMEFRAME_FIELD_NUMBER: _ClassVar[int]
    exchange: str
    timeframe: str
    def __init__(self, exchange: _Optional[str] = ..., timeframe: _Optional[str] = ...) -> None: ...

class FillGapsRequest(_message.Message):
    __slots__ = ("series", "range", "sources", "dry_run")
    SERIES_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    series: _common_pb2.SeriesKey
    range: _common_pb2.TimeRange
    sources: _containers.RepeatedCompositeFieldContainer[FillSource]
    dry_run: bool
    def __init__(self, series: _Optional[_Union[_common_pb2.SeriesKey, _Mapping]] = ..., range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., sources: _Optional[_Iterable[_Union[FillSource, _Mapping]]] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class FillGapsResponse(_message.Message):
    __slots__ = ("gaps", "bars_filled")
    GAPS_FIELD_NUMBER: _ClassVar[int]
    BARS_FILLED_FIELD_NUMBER: _ClassVar[int]
    gaps: _containers.RepeatedCompositeFieldContainer[Gap]
    bars_filled: int
    def __init__(self, gaps: _Optional[_Iterable[_Union[Gap, _Mapping]]] = ..., bars_filled: _Optional[int] = ...) -> None: ...

class GetQualitySummaryRequest(_message.Message):
    __slots__ = ("series", "range")
    SERIES_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    series: _common_pb2.SeriesKey
    range: _common_pb2.TimeRange
    def __init__(self, series: _Optional[_Union[_common_pb2.SeriesKey, _Mapping]] = ..., range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ...) -> None: ...

class QualitySummary(_message.Message):
    __slots__ = ("series", "range", "expected_bars", "original_bars", "filled_bars", "quarantined_bars", "open_gaps", "missing_bars", "coverage", "issues_by_severity", "issues_by_rule", "zero_volume_bars", "verdict", "verdict_spans", "verdict_history", "filled_gaps", "unfilled_gaps")
    class IssuesBySeverityEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class IssuesByRuleEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    SERIES_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_BARS_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_BARS_FIELD_NUMBER: _ClassVar[int]
    FILLED_BARS_FIELD_NUMBER: _ClassVar[int]
    QUARANTINED_BARS_FIELD_NUMBER: _ClassVar[int]
    OPEN_GAPS_FIELD_NUMBER: _ClassVar[int]
    MISSING_BARS_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_FIELD_NUMBER: _ClassVar[int]
    ISSUES_BY_SEVERITY_FIELD_NUMBER: _ClassVar[int]
    ISSUES_BY_RULE_FIELD_NUMBER: _ClassVar[int]
    ZERO_VOLUME_BARS_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    VERDICT_SPANS_FIELD_NUMBER: _ClassVar[int]
    VERDICT_HISTORY_FIELD_NUMBER: _ClassVar[int]
    FILLED_GAPS_FIELD_NUMBER: _ClassVar[int]
    UNFILLED_GAPS_FIELD_NUMBER: _ClassVar[int]
    series: _common_pb2.SeriesKey
    range: _common_pb2.TimeRange
    expected_bars: int
    original_bars: int
    filled_bars: int
    quarantined_bars: int
    open_gaps: int
    missing_bars: int
    coverage: float
    issues_by_severity: _containers.ScalarMap[str, int]
    issues_by_rule: _containers.ScalarMap[str, int]
    zero_volume_bars: int
    verdict: SeriesVerdictKind
    verdict_spans: _containers.RepeatedCompositeFieldContainer[VerdictSpan]
    verdict_history: _containers.RepeatedCompositeFieldContainer[VerdictChange]
    filled_gaps: int
    unfilled_gaps: int
    def __init__(self, series: _Optional[_Union[_common_pb2.SeriesKey, _Mapping]] = ..., range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., expected_bars: _Optional[int] = ..., original_bars: _Optional[int] = ..., filled_bars: _Optional[int] = ..., quarantined_bars: _Optional[int] = ..., open_gaps: _Optional[int] = ..., missing_bars: _Optional[int] = ..., coverage: _Optional[float] = ..., issues_by_severity: _Optional[_Mapping[str, int]] = ..., issues_by_rule: _Optional[_Mapping[str, int]] = ..., zero_volume_bars: _Optional[int] = ..., verdict: _Optional[_Union[SeriesVerdictKind, str]] = ..., verdict_spans: _Optional[_Iterable[_Union[VerdictSpan, _Mapping]]] = ..., verdict_history: _Optional[_Iterable[_Union[VerdictChange, _Mapping]]] = ..., filled_gaps: _Optional[int] = ..., unfilled_gaps: _Optional[int] = ...) -> None: ...

class VerdictChange(_message.Message):
    __slots__ = ("change", "span", "change_time")
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    SPAN_FIELD_NUMBER: _ClassVar[int]
    CHANGE_TIME_FIELD_NUMBER: _ClassVar[int]
    change: str
    span: VerdictSpan
    change_time: _timestamp_pb2.Timestamp
    def __init__(self, change: _Optional[str] = ..., span: _Optional[_Union[VerdictSpan, _Mapping]] = ..., change_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class VerdictSpan(_message.Message):
    __slots__ = ("verdict", "range", "bars", "reason", "twin", "match_ratio", "update_time")
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    BARS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TWIN_FIELD_NUMBER: _ClassVar[int]
    MATCH_RATIO_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    verdict: SeriesVerdictKind
    range: _common_pb2.TimeRange
    bars: int
    reason: str
    twin: _common_pb2.SeriesKey
    match_ratio: float
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, verdict: _Optional[_Union[SeriesVerdictKind, str]] = ..., range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., bars: _Optional[int] = ..., reason: _Optional[str] = ..., twin: _Optional[_Union[_common_pb2.SeriesKey, _Mapping]] = ..., match_ratio: _Optional[float] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetSeriesVerdictRequest(_message.Message):
    __slots__ = ("series", "range")
    SERIES_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    series: _common_pb2.SeriesKey
    range: _common_pb2.TimeRange
    def __init__(self, series: _Optional[_Union[_common_pb2.SeriesKey, _Mapping]] = ..., range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ...) -> None: ...

class SeriesVerdict(_message.Message):
    __slots__ = ("series", "range", "verdict", "spans")
    SERIES_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    SPANS_FIELD_NUMBER: _ClassVar[int]
    series: _common_pb2.SeriesKey
    range: _common_pb2.TimeRange
    verdict: SeriesVerdictKind
    spans: _containers.RepeatedCompositeFieldContainer[VerdictSpan]
    def __init__(self, series: _Optional[_Union[_common_pb2.SeriesKey, _Mapping]] = ..., range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., verdict: _Optional[_Union[SeriesVerdictKind, str]] = ..., spans: _Optional[_Iterable[_Union[VerdictSpan, _Mapping]]] = ...) -> None: ...

class SeriesGapPolicy(_message.Message):
    __slots__ = ("series", "policy", "finer_timeframe", "update_time")
    SERIES_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    FINER_TIMEFRAME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    series: _common_pb2.SeriesKey
    policy: GapPolicy
    finer_timeframe: str
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, series: _Optional[_Union[_common_pb2.SeriesKey, _Mapping]] = ..., policy: _Optional[_Union[GapPolicy, str]] = ..., finer_timeframe: _Optional[str] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SetGapPolicyRequest(_message.Message):
    __slots__ = ("gap_policy",)
    GAP_POLICY_FIELD_NUMBER: _ClassVar[int]
    gap_policy: SeriesGapPolicy
    def __init__(self, gap_policy: _Optional[_Union[SeriesGapPolicy, _Mapping]] = ...) -> None: ...

class GetGapPolicyRequest(_message.Message):
    __slots__ = ("series",)
    SERIES_FIELD_NUMBER: _ClassVar[int]
    series: _common_pb2.SeriesKey
    def __init__(self, series: _Optional[_Union[_common_pb2.SeriesKey, _Mapping]] = ...) -> None: ...
