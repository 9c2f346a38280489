import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import resource_pb2 as _resource_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import status_pb2 as _status_pb2
from usdcarb.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IngestMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INGEST_MODE_UNSPECIFIED: _ClassVar[IngestMode]
    INGEST_MODE_BACKFILL: _ClassVar[IngestMode]
    INGEST_MODE_INCREMENTAL: _ClassVar[IngestMode]
    INGEST_MODE_FOLLOW: _ClassVar[IngestMode]

class ArchiveLayout(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ARCHIVE_LAYOUT_UNSPECIFIED: _ClassVar[ArchiveLayout]
    ARCHIVE_LAYOUT_BINANCE_SPOT: _ClassVar[ArchiveLayout]
    ARCHIVE_LAYOUT_BINANCE_USDM: _ClassVar[ArchiveLayout]
    ARCHIVE_LAYOUT_KRAKEN_OHLCVT: _ClassVar[ArchiveLayout]

class ArchiveGranularity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ARCHIVE_GRANULARITY_UNSPECIFIED: _ClassVar[ArchiveGranularity]
    ARCHIVE_GRANULARITY_DAILY: _ClassVar[ArchiveGranularity]
    ARCHIVE_GRANULARITY_MONTHLY: _ClassVar[ArchiveGranularity]
INGEST_MODE_UNSPECIFIED: IngestMode
INGEST_MODE_BACKFILL: IngestMode
INGEST_MODE_INCREMENTAL: IngestMode
INGEST_MODE_FOLLOW: IngestMode
ARCHIVE_LAYOUT_UNSPECIFIED: ArchiveLayout
ARCHIVE_LAYOUT_BINANCE_SPOT: ArchiveLayout
ARCHIVE_LAYOUT_BINANCE_USDM: ArchiveLayout
ARCHIVE_LAYOUT_KRAKEN_OHLCVT: ArchiveLayout
ARCHIVE_GRANULARITY_UNSPECIFIED: ArchiveGranularity
ARCHIVE_GRANULARITY_DAILY: ArchiveGranularity
ARCHIVE_GRANULARITY_MONTHLY: ArchiveGranularity

class Exchange(_message.Message):
    __slots__ = ("name", "display_name", "timeframes", "max_bars_per_request", "rate_limit_ms", "full_history")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    TIMEFRAMES_FIELD_NUMBER: _ClassVar[int]
    MAX_BARS_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_MS_FIELD_NUMBER: _ClassVar[int]
    FULL_HISTORY_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    timeframes: _containers.RepeatedScalarFieldContainer[str]
    max_bars_per_request: int
    rate_limit_ms: int
    full_history: bool
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., timeframes: _Optional[_Iterable[str]] = ..., max_bars_per_request: _Optional[int] = ..., rate_limit_ms: _Optional[int] = ..., full_history: _Optional[bool] = ...) -> None: ...

class Market(_message.Message):
    __slots__ = ("name", "symbol", "base", "quote", "exchange_symbol", "active", "stored")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    BASE_FIELD_NUMBER: _ClassVar[int]
    QUOTE_FIELD_NUMBER: _ClassVar[int]
    EXCHANGE_SYMBOL_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    name: str
    symbol: str
    base: str
    quote: str
    exchange_symbol: str
    active: bool
    stored: _containers.RepeatedCompositeFieldContainer[StoredSeries]
    def __init__(self, name: _Optional[str] = ..., symbol: _Optional[str] = ..., base: _Optional[str] = ..., quote: _Optional[str] = ..., exchange_symbol: _Optional[str] = ..., active: _Optional[bool] = ..., stored: _Optional[_Iterable[_Union[StoredSeries, _Mapping]]] = ...) -> None: ...

class StoredSeries(_message.Message):
    __slots__ = ("timeframe", "first_bar_time", "last_bar_time", "bar_count")
    TIMEFRAME_FIELD_NUMBER: _ClassVar[int]
    FIRST_BAR_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_BAR_TIME_FIELD_NUMBER: _ClassVar[int]
    BAR_COUNT_FIELD_NUMBER: _ClassVar[int]
    timeframe: str
    first_bar_time: _timestamp_pb2.Timestamp
    last_bar_time: _timestamp_pb2.Timestamp
    bar_count: int
    def __init__(self, timeframe: _Optional[str] = ..., first_bar_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_bar_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., bar_count: _Optional[int] = ...) -> None: ...

class IngestStats(_message.Message):
    __slots__ = ("requests", "retries", "bars_fetched", "bars_stored", "bars_quarantined", "bars_duplicate", "gaps_found")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    BARS_FETCHED_FIELD_NUMBER: _ClassVar[int]
    BARS_STORED_FIELD_NUMBER: _ClassVar[int]
    BARS_QUARANTINED_FIELD_NUMBER: _ClassVar[int]
    BARS_DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    GAPS_FOUND_FIELD_NUMBER: _ClassVar[int]
    requests: int
    retries: int
    bars_fetched: int
    bars_stored: int
    bars_quarantined: int
    bars_duplicate: int
    gaps_found: int
    def __init__(self, requests: _Optional[int] = ..., retries: _Optional[int] = ..., bars_fetched: _Optional[int] = ..., bars_stored: _Optional[int] = ..., bars_quarantined: _Optional[int] = ..., bars_duplicate: _Optional[int] = ..., gaps_found: _Optional[int] = ...) -> None: ...

class IngestJob(_message.Message):
    __slots__ = ("name", "series", "mode", "range", "state", "progress", "stats", "cursor_time", "error", "creator", "create_time", "update_time", "end_time", "owner")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    CURSOR_TIME_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATOR_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    name: str
    series: _common_pb2.SeriesKey
    mode: IngestMode
    range: _common_pb2.TimeRange
    state: _common_pb2.JobState
    progress: _common_pb2.Progress
    stats: IngestStats
    cursor_time: _timestamp_pb2.Timestamp
    error: _status_pb2.Status
    creator: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    owner: str
    def __init__(self, name: _Optional[str] = ..., series: _Optional[_Union[_common_pb2.SeriesKey, _Mapping]] = ..., mode: _Optional[_Union[IngestMode, str]] = ..., range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., state: _Optional[_Union[_common_pb2.JobState, str]] = ..., progress: _Optional[_Union[_common_pb2.Progress, _Mapping]] = ..., stats: _Optional[_Union[IngestStats, _Mapping]] = ..., cursor_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., creator: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., owner: _Optional[str] = ...) -> None: ...

class IngestJobEvent(_message.Message):
    __slots__ = ("job", "sequence", "outcome")
    JOB_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    job: IngestJob
    sequence: int
    outcome: _common_pb2.Outcome
    def __init__(self, job: _Optional[_Union[IngestJob, _Mapping]] = ..., sequence: _Optional[int] = ..., outcome: _Optional[_Union[_common_pb2.Outcome, _Mapping]] = ...) -> None: ...

class ListExchangesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListExchangesResponse(_message.Message):
    __slots__ = ("exchanges",)
    EXCHANGES_FIELD_NUMBER: _ClassVar[int]
    exchanges: _containers.RepeatedCompositeFieldContainer[Exchange]
    def __init__(self, exchanges: _Optional[_Iterable[_Union[Exchange, _Mapping]]] = ...) -> None: ...

class ListMarketsRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token", "asset")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    asset: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., asset: _Optional[str] = ...) -> None: ...

class ListMarketsResponse(_message.Message):
    __slots__ = ("markets", "next_page_token")
    MARKETS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    markets: _containers.RepeatedCompositeFieldContainer[Market]
    next_page_token: str
    def __init__(self, markets: _Optional[_Iterable[_Union[Market, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CreateIngestJobRequest(_message.Message):
    __slots__ = ("ingest_job", "request_id")
    INGEST_JOB_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ingest_job: IngestJob
    request_id: str
    def __init__(self, ingest_job: _Optional[_Union[IngestJob, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetIngestJobRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListIngestJobsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "state", "exchange", "owner")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    state: _common_pb2.JobState
    exchange: str
    owner: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.JobState, str]] = ..., exchange: _Optional[str] = ..., owner: _Optional[str] = ...) -> None: ...

class ListIngestJobsResponse(_message.Message):
    __slots__ = ("ingest_jobs", "next_page_token")
    INGEST_JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ingest_jobs: _containers.RepeatedCompositeFieldContainer[IngestJob]
    next_page_token: str
    def __init__(self, ingest_jobs: _Optional[_Iterable[_Union[IngestJob, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelIngestJobRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class WatchIngestJobRequest(_message.Message):
    __slots__ = ("name", "after_sequence")
    NAME_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    after_sequence: int
    def __init__(self, name: _Optional[str] = ..., after_sequence: _Optional[int] = ...) -> None: ...

class GetCandlesRequest(_message.Message):
    __slots__ = ("series", "range", "layout", "include_provenance", "max_bars")
    SERIES_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    MAX_BARS_FIELD_NUMBER: _ClassVar[int]
    series: _common_pb2.SeriesKey
    range: _common_pb2.TimeRange
    layout: _common_pb2.ColumnLayout
    include_provenance: bool
    max_bars: int
    def __init__(self, series: _Optional[_Union[_common_pb2.SeriesKey, _Mapping]] = ..., range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., layout: _Optional[_Union[_common_pb2.ColumnLayout, str]] = ..., include_provenance: _Optional[bool] = ..., max_bars: _Optional[int] = ...) -> None: ...

class StreamCandlesRequest(_message.Message):
    __slots__ = ("series", "range", "layout", "include_provenance", "batch_size")
    SERIES_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    series: _common_pb2.SeriesKey
    range: _common_pb2.TimeRange
    layout: _common_pb2.ColumnLayout
    include_provenance: bool
    batch_size: int
    def __init__(self, series: _Optional[_Union[_common_pb2.SeriesKey, _Mapping]] = ..., range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., layout: _Optional[_Union[_common_pb2.ColumnLayout, str]] = ..., include_provenance: _Optional[bool] = ..., batch_size: _Optional[int] = ...) -> None: ...

class StreamCandlesResponse(_message.Message):
    __slots__ = ("batch", "outcome")
    BATCH_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    batch: _common_pb2.CandleBatch
    outcome: _common_pb2.Outcome
    def __init__(self, batch: _Optional[_Union[_common_pb2.CandleBatch, _Mapping]] = ..., outcome: _Optional[_Union[_common_pb2.Outcome, _Mapping]] = ...) -> None: ...

class ArchiveSource(_message.Message):
    __slots__ = ("layout", "location", "granularity")
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    GRANULARITY_FIELD_NUMBER: _ClassVar[int]
    layout: ArchiveLayout
    location: str
    granularity: ArchiveGranularity
    def __init__(self, layout: _Optional[_Union[ArchiveLayout, str]] = ..., location: _Optional[str] = ..., granularity: _Optional[_Union[ArchiveGranularity, str]] = ...) -> None: ...

class ArchiveImportStats(_message.Message):
    __slots__ = ("files_total", "files_stored", "files_failed", "bytes", "bars_read", "bars_stored", "bars_duplicate", "bars_quarantined")
    FILES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    FILES_STORED_FIELD_NUMBER: _ClassVar[int]
    FILES_FAILED_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    BARS_READ_FIELD_NUMBER: _ClassVar[int]
    BARS_STORED_FIELD_NUMBER: _ClassVar[int]
    BARS_DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    BARS_QUARANTINED_FIELD_NUMBER: _ClassVar[int]
    files_total: int
    files_stored: int
    files_failed: int
    bytes: int
    bars_read: int
    bars_stored: int
    bars_duplicate: int
    bars_quarantined: int
    def __init__(self, files_total: _Optional[int] = ..., files_stored: _Optional[int] = ..., files_failed: _Optional[int] = ..., bytes: _Optional[int] = ..., bars_read: _Optional[int] = ..., bars_stored: _Optional[int] = ..., bars_duplicate: _Optional[int] = ..., bars_quarantined: _Optional[int] = ...) -> None: ...

class ArchiveFile(_message.Message):
    __slots__ = ("key", "location", "stored", "reason", "message", "bars_read", "bars_stored", "bars_duplicate", "bars_quarantined", "sha256")
    KEY_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    BARS_READ_FIELD_NUMBER: _ClassVar[int]
    BARS_STORED_FIELD_NUMBER: _ClassVar[int]
    BARS_DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    BARS_QUARANTINED_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    key: str
    location: str
    stored: bool
    reason: str
    message: str
    bars_read: int
    bars_stored: int
    bars_duplicate: int
    bars_quarantined: int
    sha256: str
    def __init__(self, key: _Optional[str] = ..., location: _Optional[str] = ..., stored: _Optional[bool] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., bars_read: _Optional[int] = ..., bars_stored: _Optional[int] = ..., bars_duplicate: _Optional[int] = ..., bars_quarantined: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class ArchiveImport(_message.Message):
    __slots__ = ("name", "source", "series", "range", "state", "progress", "stats", "files", "error", "creator", "owner", "create_time", "update_time", "end_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATOR_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    source: ArchiveSource
    series: _common_pb2.SeriesKey
    range: _common_pb2.TimeRange
    state: _common_pb2.JobState
    progress: _common_pb2.Progress
    stats: ArchiveImportStats
    files: _containers.RepeatedCompositeFieldContainer[ArchiveFile]
    error: _status_pb2.Status
    creator: str
    owner: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., source: _Optional[_Union[ArchiveSource, _Mapping]] = ..., series: _Optional[_Union[_common_pb2.SeriesKey, _Mapping]] = ..., range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., state: _Optional[_Union[_common_pb2.JobState, str]] = ..., progress: _Optional[_Union[_common_pb2.Progress, _Mapping]] = ..., stats: _Optional[_Union[ArchiveImportStats, _Mapping]] = ..., files: _Optional[_Iterable[_Union[ArchiveFile, _Mapping]]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., creator: _Optional[str] = ..., owner: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ArchiveImportEvent(_message.Message):
    __slots__ = ("archive_import", "sequence", "outcome")
    ARCHIVE_IMPORT_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    archive_import: ArchiveImport
    sequence: int
    outcome: _common_pb2.Outcome
    def __init__(self, archive_import: _Optional[_Union[ArchiveImport, _Mapping]] = ..., sequence: _Optional[int] = ..., outcome: _Optional[_Union[_common_pb2.Outcome, _Mapping]] = ...) -> None: ...

class CreateArchiveImportRequest(_message.Message):
    __slots__ = ("archive_import", "request_id")
    ARCHIVE_IMPORT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    archive_import: ArchiveImport
    request_id: str
    def __init__(self, archive_import: _Optional[_Union[ArchiveImport, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetArchiveImportRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListArchiveImportsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "state", "owner")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    state: _common_pb2.JobState
    owner: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.JobState, str]] = ..., owner: _Optional[str] = ...) -> None: ...

class ListArchiveImportsResponse(_message.Message):
    __slots__ = ("archive_imports", "next_page_token")
    ARCHIVE_IMPORTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    archive_imports: _containers.RepeatedCompositeFieldContainer[ArchiveImport]
    next_page_token: str
    def __init__(self, archive_imports: _Optional[_Iterable[_Union[ArchiveImport, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelArchiveImportRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class WatchArchiveImportRequest(_message.Message):
    __slots__ = ("name", "after_sequence")
    NAME_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    after_sequence: int
    def __init__(self, name: _Optional[str] = ..., after_sequence: _Optional[int] = ...) -> None: ...
