"""Use cases of the ingestion service: jobs, their watch streams, markets and candles."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from usdcarb.ingestion import domain
from usdcarb.ingestion.domain import EXCHANGES, ExchangeSpec
from usdcarb.ingestion.exchanges import MARKETS
from usdcarb.ingestion.markets import MarketDirectory
from usdcarb.ingestion.model import JobRecord, SeriesCoverage
from usdcarb.ingestion.store import IngestStore
from usdcarb.marketdata.reader import Candles
from usdcarb.platform import paging
from usdcarb.platform.errors import FailedPrecondition, InvalidArgument, NotFound, expected
from usdcarb.platform.ownership import owner_filter, require_owner

MODES = ("INGEST_MODE_BACKFILL", "INGEST_MODE_INCREMENTAL", "INGEST_MODE_FOLLOW")
MAX_BARS = 1_000_000
STATES = ("JOB_STATE_QUEUED", "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED",
          "JOB_STATE_CANCELLED")


@dataclass(frozen=True)
class MarketInfo:
    exchange: str
    symbol: str
    exchange_symbol: str
    stored: tuple[SeriesCoverage, ...]

    @property
    def name(self) -> str:
        return f"exchanges/{self.exchange}/markets/{self.symbol.replace('/', '-')}"


@dataclass(frozen=True)
class CandleRead:
    candles: Candles
    sources: list[str]
    source_index: np.ndarray


def job_id_of(name: str, field: str = "name") -> str:
    parts = name.split("/")
    if len(parts) != 2 or parts[0] != "ingestJobs" or not parts[1]:
        raise InvalidArgument.for_field(field, "a resource name 'ingestJobs/{id}'", name)
    return parts[1]


def exchange_of(name: str, field: str) -> ExchangeSpec:
    parts = name.split("/")
    if len(parts) != 2 or parts[0] != "exchanges":
        raise InvalidArgument.for_field(field, "a resource name 'exchanges/{exchange}'", name)
    if parts[1] not in EXCHANGES:
        raise NotFound("exchange", name)
    return EXCHANGES[parts[1]]


def check_series(exchange: str, symbol: str, timeframe: str, prefix: str,
                 markets: Mapping[str, str] | None = None) -> None:
    """Refuse an unknown exchange, market (of ``markets``, the exchange's own list, else
    the fixed table) or timeframe."""
    violations = []
    listed = markets if markets is not None else MARKETS.get(exchange, {})
    if exchange not in EXCHANGES:
        violations.append((f"{prefix}.exchange", expected(f"one of {sorted(EXCHANGES)}",
                                                          exchange)))
    elif symbol not in listed:
        violations.append((f"{prefix}.symbol", expected(
            f"a market of {exchange} ({', '.join(sorted(listed))})", symbol)))
    if exchange in EXCHANGES and timeframe not in EXCHANGES[exchange].timeframes:
        violations.append((f"{prefix}.timeframe", expected(
            f"one of {list(EXCHANGES[exchange].timeframes)}", timeframe)))
    elif timeframe not in domain.TIMEFRAME_MS:
        violations.append((f"{prefix}.timeframe", expected(
            f"one of {list(domain.TIMEFRAME_MS)}", timeframe)))
    if violations:
        raise InvalidArgument(violations)


def check_range(start: datetime | None, end: datetime | None, field: str) -> None:
    if start is None or end is None:
        raise InvalidArgument.for_field(field, "start_time and end_time", "missing")
    if end <= start:
        raise InvalidArgument.for_field(f"{field}.end_time", f"a time after {start.isoformat()}",
                                        end.isoformat())


class IngestionApp:
    """Jobs, markets and candles."""

    def __init__(self, store: IngestStore, *, on_job_created: Callable[[], None] = lambda: None,
                 watch_poll_s: float = 0.2, markets: MarketDirectory | None = None) -> None:
        self._store = store
        self._markets = markets
        self._on_created = on_job_created
        self._poll = watch_poll_s

    async def _listed(self, exchange: str) -> Mapping[str, str]:
        """The exchange's markets: its own list (``load_markets``), else the fixed table."""
        if self._markets is None:
            return MARKETS[exchange]
        return await self._markets.symbols(exchange)

    @staticmethod
    def exchanges() -> list[ExchangeSpec]:
        return list(EXCHANGES.values())

    async def list_markets(self, *, parent: str, page_size: int, page_token: str,
                           asset: str) -> tuple[list[MarketInfo], str]:
        spec = exchange_of(parent, "parent")
        size = paging.page_size(page_size, default=100, maximum=1000)
        filters = {"parent": parent, "asset": asset}
        after = paging.decode_token(page_token, filters)
        listed = await self._listed(spec.id)
        symbols = sorted(s for s in listed if not asset or asset in s.split("/"))
        if after:
            symbols = [s for s in symbols if s > str(after[0])]
        page = symbols[:size]
        coverage = await self._store.coverage(spec.id)
        markets = [MarketInfo(spec.id, s, listed[s],
                              tuple(c for c in coverage if c.symbol == s)) for s in page]
        token = paging.encode_token([page[-1]], filters) if len(symbols) > size else ""
        return markets, token

    async def create_job(self, *, exchange: str, symbol: str, timeframe: str, mode: str,
                         start: datetime | None, end: datetime | None, creator: str,
                         request_id: str) -> JobRecord:
        check_series(exchange, symbol, timeframe, "ingest_job.series",
                     await self._listed(exchange) if exchange in EXCHANGES else None)
        if mode not in MODES:
            raise InvalidArgument.for_field("ingest_job.mode", f"one of {MODES}", mode)
        if mode == "INGEST_MODE_BACKFILL":
            check_range(start, end, "ingest_job.range")
            if not EXCHANGES[exchange].full_history:
                raise FailedPrecondition([(
                    "EXCHANGE_HISTORY", f"exchanges/{exchange}",
                    f"{exchange}'s OHLC endpoint serves only its latest "
                    f"{EXCHANGES[exchange].max_bars_per_request} bars; use "
                    "INGEST_MODE_INCREMENTAL to keep the series up to date")])
        elif start is not None and end is not None and end <= start:
            check_range(start, end, "ingest_job.range")
        job = await self._store.create_job(exchange=exchange, symbol=symbol,
                                           timeframe=timeframe, mode=mode, start=start, end=end,
                                           creator=creator, request_id=request_id)
        self._on_created()
        return job

    async def get_job(self, name: str) -> JobRecord:
        return await self._store.get_job(job_id_of(name))

    async def list_jobs(self, *, page_size: int, page_token: str, state: str | None,
                        exchange: str | None, owner: str = "") -> tuple[list[JobRecord], str]:
        size = paging.page_size(page_size, default=50, maximum=1000)
        by = owner_filter(owner)
        filters = {"state": state, "exchange": exchange,
                   **({"owner": by} if by is not None else {})}
        key = paging.decode_token(page_token, filters)
        after = (datetime.fromisoformat(str(key[0])), str(key[1])) if key else None
        jobs = await self._store.list_jobs(limit=size + 1, after=after, state=state,
                                           exchange=exchange, owner=by)
        token = ""
        if len(jobs) > size:
            jobs = jobs[:size]
            token = paging.encode_token([jobs[-1].create_time.isoformat(), jobs[-1].id], filters)
        return jobs, token

    async def cancel_job(self, name: str) -> JobRecord:
        job_id = job_id_of(name)
        return await self._store.cancel_job(job_id, lambda owner: require_owner(
            owner, resource=f"ingestJobs/{job_id}"))

    async def watch_job(self, name: str, after_sequence: int) -> AsyncIterator[JobRecord]:
        """Yield the job on every change (its version is the sequence), ending terminal."""
        job_id = job_id_of(name)
        last = after_sequence
        while True:
            job = await self._store.get_job(job_id)
            if job.version > last or (job.terminal and last < job.version):
                last = job.version
                yield job
            if job.terminal:
                return
            await asyncio.sleep(self._poll)

    async def candles(self, *, exchange: str, symbol: str, timeframe: str,
                      start: datetime | None, end: datetime | None, max_bars: int,
                      with_source: bool) -> CandleRead:
        check_series(exchange, symbol, timeframe, "series")
        check_range(start, end, "range")
        assert start is not None and end is not None
        if max_bars < 0 or max_bars > MAX_BARS:
            raise InvalidArgument.for_field("max_bars", f"0..{MAX_BARS}", max_bars)
        limit = max_bars or MAX_BARS
        candles, sources, codes = await self._store.read(
            exchange=exchange, symbol=symbol, timeframe=timeframe, start=start, end=end,
            with_source=with_source)
        if len(candles) > limit:
            raise FailedPrecondition([(
                "TOO_MANY_BARS", f"{exchange} {symbol} {timeframe}",
                f"expected at most {limit} bars in the range, got {len(candles)}; "
                "narrow the range or use StreamCandles")])
        return CandleRead(candles, sources, codes)

    async def stream_candles(self, *, exchange: str, symbol: str, timeframe: str,
                             start: datetime | None, end: datetime | None, batch_size: int,
                             with_source: bool) -> AsyncIterator[CandleRead]:
        check_series(exchange, symbol, timeframe, "series")
        check_range(start, end, "range")
        assert start is not None and end is not None
        if batch_size < 0:
            raise InvalidArgument.for_field("batch_size", "a non-negative number", batch_size)
        size = min(batch_size or 50_000, MAX_BARS)
        step_ms = size * domain.timeframe_ms(timeframe)
        lo = int(start.timestamp() * 1000)
        hi = int(end.timestamp() * 1000)
        while lo < hi:
            upper = min(hi, lo + step_ms)
            candles, sources, codes = await self._store.read(
                exchange=exchange, symbol=symbol, timeframe=timeframe,
                start=datetime.fromtimestamp(lo / 1000, UTC),
                end=datetime.fromtimestamp(upper / 1000, UTC), with_source=with_source)
            if len(candles):
                yield CandleRead(candles, sources, codes)
            lo = upper


