"""gRPC IngestionService: proto ↔ application calls, nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
from google.protobuf import timestamp_pb2
from google.rpc import status_pb2

from usdcarb.ingestion.app import CandleRead, IngestionApp, MarketInfo
from usdcarb.ingestion.archive_app import ArchiveApp
from usdcarb.ingestion.archive_store import STATS_KEYS as ARCHIVE_STATS
from usdcarb.ingestion.archive_store import ImportRecord
from usdcarb.ingestion.domain import ExchangeSpec
from usdcarb.ingestion.model import STATS_KEYS, JobRecord
from usdcarb.platform.identity import get_caller
from usdcarb.v1 import common_pb2 as cpb
from usdcarb.v1 import ingestion_pb2 as pb
from usdcarb.v1 import ingestion_pb2_grpc as pb_grpc

_OUTCOME = {"JOB_STATE_SUCCEEDED": cpb.Outcome.RESULT_OK,
            "JOB_STATE_FAILED": cpb.Outcome.RESULT_FAILED,
            "JOB_STATE_CANCELLED": cpb.Outcome.RESULT_CANCELLED}


def _ts(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def _dt(ts: timestamp_pb2.Timestamp, present: bool) -> datetime | None:
    return ts.ToDatetime(tzinfo=UTC) if present else None


def exchange_to_pb(s: ExchangeSpec) -> pb.Exchange:
    return pb.Exchange(name=f"exchanges/{s.id}", display_name=s.display_name,
                       timeframes=list(s.timeframes), max_bars_per_request=s.max_bars_per_request,
                       rate_limit_ms=s.rate_limit_ms, full_history=s.full_history)


def market_to_pb(m: MarketInfo) -> pb.Market:
    base, quote = m.symbol.split("/")
    return pb.Market(name=m.name, symbol=m.symbol, base=base, quote=quote,
                     exchange_symbol=m.exchange_symbol, active=True,
                     stored=[pb.StoredSeries(timeframe=c.timeframe, first_bar_time=_ts(c.first),
                                             last_bar_time=_ts(c.last), bar_count=c.count)
                             for c in m.stored])


def error_to_pb(error: dict[str, Any] | None) -> status_pb2.Status | None:
    if not error:
        return None
    return status_pb2.Status(code=int(error.get("code", 13)), message=str(error.get("message")))


def job_to_pb(j: JobRecord) -> pb.IngestJob:
    p = j.progress or {}
    rng = None
    if j.start_time is not None or j.end_time is not None:
        rng = cpb.TimeRange(start_time=_ts(j.start_time), end_time=_ts(j.end_time))
    return pb.IngestJob(
        name=j.name, series=cpb.SeriesKey(exchange=j.exchange, symbol=j.symbol,
                                          timeframe=j.timeframe),
        mode=pb.IngestMode.Value(j.mode), range=rng, state=cpb.JobState.Value(j.state),
        progress=cpb.Progress(fraction=float(p.get("fraction", 0.0)), done=int(p.get("done", 0)),
                              total=int(p.get("total", 0)), unit=str(p.get("unit", "bars")),
                              message=str(p.get("message", ""))),
        stats=pb.IngestStats(**{k: int(j.stats.get(k, 0)) for k in STATS_KEYS}),
        cursor_time=_ts(j.cursor_time), error=error_to_pb(j.error), creator=j.creator,
        owner=j.owner,
        create_time=_ts(j.create_time), update_time=_ts(j.update_time),
        end_time=_ts(j.finish_time))


_LAYOUT_PB = {"binance_spot": pb.ARCHIVE_LAYOUT_BINANCE_SPOT,
              "binance_usdm": pb.ARCHIVE_LAYOUT_BINANCE_USDM,
              "kraken_ohlcvt": pb.ARCHIVE_LAYOUT_KRAKEN_OHLCVT}
_GRANULARITY_PB = {"auto": pb.ARCHIVE_GRANULARITY_UNSPECIFIED,
                   "daily": pb.ARCHIVE_GRANULARITY_DAILY,
                   "monthly": pb.ARCHIVE_GRANULARITY_MONTHLY}
_ARCHIVE_STATS_PB = tuple(k for k in ARCHIVE_STATS if k != "files_skipped")


def import_to_pb(r: ImportRecord) -> pb.ArchiveImport:
    p = r.progress or {}
    rng = None
    if r.start_time is not None or r.end_time is not None:
        rng = cpb.TimeRange(start_time=_ts(r.start_time), end_time=_ts(r.end_time))
    return pb.ArchiveImport(
        name=r.name,
        source=pb.ArchiveSource(layout=_LAYOUT_PB[r.layout], location=r.location,
                                granularity=_GRANULARITY_PB[r.granularity]),
        series=cpb.SeriesKey(exchange=r.exchange, symbol=r.symbol, timeframe=r.timeframe),
        range=rng, state=cpb.JobState.Value(r.state),
        progress=cpb.Progress(fraction=float(p.get("fraction", 0.0)), done=int(p.get("done", 0)),
                              total=int(p.get("total", 0)), unit=str(p.get("unit", "files")),
                              message=str(p.get("message", ""))),
        stats=pb.ArchiveImportStats(**{k: int(r.stats.get(k, 0)) for k in _ARCHIVE_STATS_PB}),
        files=[pb.ArchiveFile(key=f.key, location=f.location, stored=f.state == "STORED",
                              reason=f.reason, message=f.message, bars_read=f.bars_read,
                              bars_stored=f.bars_stored, bars_duplicate=f.bars_duplicate,
                              bars_quarantined=f.bars_quarantined, sha256=f.sha256)
               for f in r.files],
        error=error_to_pb(r.error), creator=r.creator, owner=r.owner,
        create_time=_ts(r.create_time), update_time=_ts(r.update_time),
        end_time=_ts(r.finish_time))


def batch_to_pb(series: cpb.SeriesKey, read: CandleRead, layout: int,
                with_source: bool) -> cpb.CandleBatch:
    c = read.candles
    batch = cpb.CandleBatch(series=series, count=len(c))
    if layout == cpb.COLUMN_LAYOUT_LE_BYTES:
        cols = cpb.CandleColumns(
            open_time_ms=c.open_time_ms.astype("<i8").tobytes(),
            open=c.open.astype("<f8").tobytes(), high=c.high.astype("<f8").tobytes(),
            low=c.low.astype("<f8").tobytes(), close=c.close.astype("<f8").tobytes(),
            volume=c.volume.astype("<f8").tobytes())
        if with_source:
            cols.provenance = c.provenance.astype(np.uint8).tobytes()
            cols.source_index = read.source_index.astype("<i4").tobytes()
        batch.columns.CopyFrom(cols)
    else:
        batch.open_time_ms.extend(c.open_time_ms.tolist())
        batch.open.extend(c.open.tolist())
        batch.high.extend(c.high.tolist())
        batch.low.extend(c.low.tolist())
        batch.close.extend(c.close.tolist())
        batch.volume.extend(c.volume.tolist())
        if with_source:
            batch.provenance.extend(c.provenance.tolist())
            batch.source_index.extend(read.source_index.tolist())
    if with_source:
        batch.sources.extend(read.sources)
    return batch


class IngestionServicer(pb_grpc.IngestionServiceServicer):
    """usdcarb.v1.IngestionService."""

    def __init__(self, app: IngestionApp, archives: ArchiveApp) -> None:
        self._app = app
        self._archives = archives

    async def ListExchanges(self, request: pb.ListExchangesRequest, context: Any) -> Any:
        return pb.ListExchangesResponse(exchanges=[exchange_to_pb(s)
                                                   for s in self._app.exchanges()])

    async def ListMarkets(self, request: pb.ListMarketsRequest, context: Any) -> Any:
        markets, token = await self._app.list_markets(
            parent=request.parent, page_size=request.page_size, page_token=request.page_token,
            asset=request.asset)
        return pb.ListMarketsResponse(markets=[market_to_pb(m) for m in markets],
                                      next_page_token=token)

    async def CreateIngestJob(self, request: pb.CreateIngestJobRequest, context: Any) -> Any:
        j = request.ingest_job
        has_range = j.HasField("range")
        job = await self._app.create_job(
            exchange=j.series.exchange, symbol=j.series.symbol, timeframe=j.series.timeframe,
            mode=pb.IngestMode.Name(j.mode),
            start=_dt(j.range.start_time, has_range and j.range.HasField("start_time")),
            end=_dt(j.range.end_time, has_range and j.range.HasField("end_time")),
            creator=get_caller().subject, request_id=request.request_id)
        return job_to_pb(job)

    async def GetIngestJob(self, request: pb.GetIngestJobRequest, context: Any) -> Any:
        return job_to_pb(await self._app.get_job(request.name))

    async def ListIngestJobs(self, request: pb.ListIngestJobsRequest, context: Any) -> Any:
        jobs, token = await self._app.list_jobs(
            page_size=request.page_size, page_token=request.page_token,
            state=cpb.JobState.Name(request.state) if request.state else None,
            exchange=request.exchange or None, owner=request.owner)
        return pb.ListIngestJobsResponse(ingest_jobs=[job_to_pb(j) for j in jobs],
                                         next_page_token=token)

    async def CancelIngestJob(self, request: pb.CancelIngestJobRequest, context: Any) -> Any:
        return job_to_pb(await self._app.cancel_job(request.name))

    async def WatchIngestJob(self, request: pb.WatchIngestJobRequest,
                             context: Any) -> AsyncIterator[pb.IngestJobEvent]:
        async for job in self._app.watch_job(request.name, request.after_sequence):
            event = pb.IngestJobEvent(job=job_to_pb(job), sequence=job.version)
            if job.terminal:
                event.outcome.CopyFrom(cpb.Outcome(result=_OUTCOME[job.state],
                                                   error=error_to_pb(job.error)))
            yield event

    async def GetCandles(self, request: pb.GetCandlesRequest, context: Any) -> Any:
        s, r = request.series, request.range
        read = await self._app.candles(
            exchange=s.exchange, symbol=s.symbol, timeframe=s.timeframe,
            start=_dt(r.start_time, r.HasField("start_time")),
            end=_dt(r.end_time, r.HasField("end_time")), max_bars=request.max_bars,
            with_source=request.include_provenance)
        return batch_to_pb(s, read, request.layout, request.include_provenance)

    async def StreamCandles(self, request: pb.StreamCandlesRequest,
                            context: Any) -> AsyncIterator[pb.StreamCandlesResponse]:
        s, r = request.series, request.range
        async for read in self._app.stream_candles(
                exchange=s.exchange, symbol=s.symbol, timeframe=s.timeframe,
                start=_dt(r.start_time, r.HasField("start_time")),
                end=_dt(r.end_time, r.HasField("end_time")), batch_size=request.batch_size,
                with_source=request.include_provenance):
            yield pb.StreamCandlesResponse(
                batch=batch_to_pb(s, read, request.layout, request.include_provenance))
        yield pb.StreamCandlesResponse(outcome=cpb.Outcome(result=cpb.Outcome.RESULT_OK))

    async def CreateArchiveImport(self, request: pb.CreateArchiveImportRequest,
                                  context: Any) -> Any:
        a = request.archive_import
        has_range = a.HasField("range")
        rec = await self._archives.create(
            layout=pb.ArchiveLayout.Name(a.source.layout), location=a.source.location,
            granularity=pb.ArchiveGranularity.Name(a.source.granularity),
            exchange=a.series.exchange, symbol=a.series.symbol, timeframe=a.series.timeframe,
            start=_dt(a.range.start_time, has_range and a.range.HasField("start_time")),
            end=_dt(a.range.end_time, has_range and a.range.HasField("end_time")),
            creator=get_caller().subject, request_id=request.request_id)
        return import_to_pb(rec)

    async def GetArchiveImport(self, request: pb.GetArchiveImportRequest, context: Any) -> Any:
        return import_to_pb(await self._archives.get(request.name))

    async def ListArchiveImports(self, request: pb.ListArchiveImportsRequest,
                                 context: Any) -> Any:
        recs, token = await self._archives.list(
            page_size=request.page_size, page_token=request.page_token,
            state=cpb.JobState.Name(request.state) if request.state else None,
            owner=request.owner)
        return pb.ListArchiveImportsResponse(archive_imports=[import_to_pb(r) for r in recs],
                                             next_page_token=token)

    async def CancelArchiveImport(self, request: pb.CancelArchiveImportRequest,
                                  context: Any) -> Any:
        return import_to_pb(await self._archives.cancel(request.name))

    async def WatchArchiveImport(self, request: pb.WatchArchiveImportRequest,
                                 context: Any) -> AsyncIterator[pb.ArchiveImportEvent]:
        async for rec in self._archives.watch(request.name, request.after_sequence):
            event = pb.ArchiveImportEvent(archive_import=import_to_pb(rec), sequence=rec.version)
            if rec.terminal:
                event.outcome.CopyFrom(cpb.Outcome(result=_OUTCOME[rec.state],
                                                   error=error_to_pb(rec.error)))
            yield event
