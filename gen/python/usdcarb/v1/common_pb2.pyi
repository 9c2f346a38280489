import datetime

from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import status_pb2 as _status_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]

class Provenance(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROVENANCE_UNSPECIFIED: _ClassVar[Provenance]
    PROVENANCE_ORIGINAL: _ClassVar[Provenance]
    PROVENANCE_FILLED_FROM_VENUE: _ClassVar[Provenance]
    PROVENANCE_FILLED_FROM_TIMEFRAME: _ClassVar[Provenance]
    PROVENANCE_FORWARD_FILLED: _ClassVar[Provenance]

class ColumnLayout(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COLUMN_LAYOUT_UNSPECIFIED: _ClassVar[ColumnLayout]
    COLUMN_LAYOUT_PACKED: _ClassVar[ColumnLayout]
    COLUMN_LAYOUT_LE_BYTES: _ClassVar[ColumnLayout]

class Severity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEVERITY_UNSPECIFIED: _ClassVar[Severity]
    SEVERITY_INFO: _ClassVar[Severity]
    SEVERITY_WARNING: _ClassVar[Severity]
    SEVERITY_ERROR: _ClassVar[Severity]
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState
PROVENANCE_UNSPECIFIED: Provenance
PROVENANCE_ORIGINAL: Provenance
PROVENANCE_FILLED_FROM_VENUE: Provenance
PROVENANCE_FILLED_FROM_TIMEFRAME: Provenance
PROVENANCE_FORWARD_FILLED: Provenance
COLUMN_LAYOUT_UNSPECIFIED: ColumnLayout
COLUMN_LAYOUT_PACKED: ColumnLayout
COLUMN_LAYOUT_LE_BYTES: ColumnLayout
SEVERITY_UNSPECIFIED: Severity
SEVERITY_INFO: Severity
SEVERITY_WARNING: Severity
SEVERITY_ERROR: Severity

class Outcome(_message.Message):
    __slots__ = ("result", "error")
    class Result(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        RESULT_UNSPECIFIED: _ClassVar[Outcome.Result]
        RESULT_OK: _ClassVar[Outcome.Result]
        RESULT_FAILED: _ClassVar[Outcome.Result]
        RESULT_CANCELLED: _ClassVar[Outcome.Result]
    RESULT_UNSPECIFIED: Outcome.Result
    RESULT_OK: Outcome.Result
    RESULT_FAILED: Outcome.Result
    RESULT_CANCELLED: Outcome.Result
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    result: Outcome.Result
    error: _status_pb2.Status
    def __init__(self, result: _Optional[_Union[Outcome.Result, str]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("fraction", "done", "total", "unit", "message")
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    fraction: float
    done: int
    total: int
    unit: str
    message: str
    def __init__(self, fraction: _Optional[float] = ..., done: _Optional[int] = ..., total: _Optional[int] = ..., unit: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class TimeRange(_message.Message):
    __slots__ = ("start_time", "end_time")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SeriesKey(_message.Message):
    __slots__ = ("exchange", "symbol", "timeframe")
    EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    TIMEFRAME_FIELD_NUMBER: _ClassVar[int]
    exchange: str
    symbol: str
    timeframe: str
    def __init__(self, exchange: _Optional[str] = ..., symbol: _Optional[str] = ..., timeframe: _Optional[str] = ...) -> None: ...

class CandleBatch(_message.Message):
    __slots__ = ("series", "open_time_ms", "open", "high", "low", "close", "volume", "provenance", "source_index", "sources", "columns", "count")
    SERIES_FIELD_NUMBER: _ClassVar[int]
    OPEN_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    OPEN_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    LOW_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_INDEX_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    series: SeriesKey
    open_time_ms: _containers.RepeatedScalarFieldContainer[int]
    open: _containers.RepeatedScalarFieldContainer[float]
    high: _containers.RepeatedScalarFieldContainer[float]
    low: _containers.RepeatedScalarFieldContainer[float]
    close: _containers.RepeatedScalarFieldContainer[float]
    volume: _containers.RepeatedScalarFieldContainer[float]
    provenance: _containers.RepeatedScalarFieldContainer[Provenance]
    source_index: _containers.RepeatedScalarFieldContainer[int]
    sources: _containers.RepeatedScalarFieldContainer[str]
    columns: CandleColumns
    count: int
    def __init__(self, series: _Optional[_Union[SeriesKey, _Mapping]] = ..., open_time_ms: _Optional[_Iterable[int]] = ..., open: _Optional[_Iterable[float]] = ..., high: _Optional[_Iterable[float]] = ..., low: _Optional[_Iterable[float]] = ..., close: _Optional[_Iterable[float]] = ..., volume: _Optional[_Iterable[float]] = ..., provenance: _Optional[_Iterable[_Union[Provenance, str]]] = ..., source_index: _Optional[_Iterable[int]] = ..., sources: _Optional[_Iterable[str]] = ..., columns: _Optional[_Union[CandleColumns, _Mapping]] = ..., count: _Optional[int] = ...) -> None: ...

class CandleColumns(_message.Message):
    __slots__ = ("open_time_ms", "open", "high", "low", "close", "volume", "provenance", "source_index")
    OPEN_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    OPEN_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    LOW_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_INDEX_FIELD_NUMBER: _ClassVar[int]
    open_time_ms: bytes
    open: bytes
    high: bytes
    low: bytes
    close: bytes
    volume: bytes
    provenance: bytes
    source_index: bytes
    def __init__(self, open_time_ms: _Optional[bytes] = ..., open: _Optional[bytes] = ..., high: _Optional[bytes] = ..., low: _Optional[bytes] = ..., close: _Optional[bytes] = ..., volume: _Optional[bytes] = ..., provenance: _Optional[bytes] = ..., source_index: _Optional[bytes] = ...) -> None: ...
