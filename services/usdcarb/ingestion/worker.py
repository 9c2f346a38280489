"""The job runner: claims jobs, pages through their range, validates and stores each page.

Any number of worker processes may run: a job is held through a lease renewed by a
heartbeat and by every page commit; a worker that dies (even SIGKILL) lets its lease
expire and another resumes after the job's cursor, which moves only in the same
transaction as the bars it covers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from usdcarb.ingestion import domain
from usdcarb.ingestion.domain import Bars, PageRequest, Paging
from usdcarb.ingestion.exchanges import ExchangeClient, FetchFailed, Pacer, RetryPolicy
from usdcarb.ingestion.leasing import claim_loop
from usdcarb.ingestion.model import JobRecord, JobStats
from usdcarb.ingestion.store import IngestStore, LeaseLost
from usdcarb.ingestion.validation import CandleValidator, ValidationUnavailable, combine
from usdcarb.platform import db
from usdcarb.platform.events import DomainEvent, publish

logger = logging.getLogger(__name__)

_DB_TRANSIENT = db.UNAVAILABLE


@dataclass(frozen=True)
class WorkerConfig:
    concurrency: int = 4
    lease_s: float = 30.0
    poll_s: float = 0.5
    replay_url: str = ""
    rate_limit_scale: float = 1.0
    retry_attempts: int = 8
    retry_base_s: float = 0.2
    retry_max_s: float = 10.0
    db_retry_s: float = 120.0  # how long a page keeps retrying through a database outage
    # Pages are validated and stored in batches of about this many bars: one validation
    # call and one transaction per batch instead of per page, while the next pages are
    # already being fetched. 0 or 1 stores every page on its own.
    batch_bars: int = 50_000
    # ... or whatever arrived within this long (progress, cursor), once the previous batch
    # is stored.
    batch_max_s: float = 0.5


class Worker:
    """Runs ingest jobs; ``run()`` until ``stop()``."""

    kind = "ingest"  # names its tasks and its log lines

    def __init__(self, store: IngestStore, validator: CandleValidator, config: WorkerConfig,
                 *, redis: Any = None, now_ms: Callable[[], int] | None = None) -> None:
        self._store = store
        self._validator = validator
        self._config = config
        self._redis = redis
        self._now_ms = now_ms or (lambda: int(time.time() * 1000))
        self.owner = f"worker-{uuid.uuid4().hex[:12]}"
        self._pacer = Pacer(config.rate_limit_scale)
        self._clients: dict[str, ExchangeClient] = {}
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        # Jobs still fetching: a job whose last page arrived frees its slot while its last
        # batch is validated and stored, so the next job's fetching overlaps that tail.
        self._fetching: set[str] = set()
        self._retry = RetryPolicy(config.retry_attempts, config.retry_base_s,
                                  config.retry_max_s)
        self.telemetry: Any = None  # usdcarb.ingestion.telemetry.IngestionTelemetry, if any

    def wake(self) -> None:
        """Look for work now (a job was just created)."""
        self._wake.set()

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for client in self._clients.values():
            await client.close()
        self._clients.clear()

    async def run(self) -> None:
        await claim_loop(stopping=self._stopping, wake=self._wake, poll_s=self._config.poll_s,
                         room=self._has_room, claim=self._claim, start=self._start,
                         transient=_DB_TRANSIENT, what=self.kind)

    def _has_room(self) -> bool:
        return (len(self._fetching) < self._config.concurrency
                and len(self._tasks) < 2 * self._config.concurrency)

    async def _claim(self) -> JobRecord | None:
        return await self._store.claim_job(self.owner, self._config.lease_s)

    def _start(self, job: JobRecord) -> None:
        self._fetching.add(job.id)
        self._spawn(job)

    def _spawn(self, job: JobRecord) -> None:
        task = asyncio.create_task(self.run_job(job), name=f"{self.kind}-{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()

    def _fetched(self, job: JobRecord) -> None:
        """The job's last page arrived: its slot may start fetching another job."""
        if job.id in self._fetching:
            self._fetching.discard(job.id)
            self._wake.set()

    def _client(self, exchange: str) -> ExchangeClient:
        if exchange not in self._clients:
            self._clients[exchange] = ExchangeClient(
                domain.EXCHANGES[exchange], replay_url=self._config.replay_url,
                pacer=self._pacer, retry=self._retry)
            if self.telemetry is not None:
                self._clients[exchange].on_page = functools.partial(self.telemetry.page,
                                                                    exchange)
        return self._clients[exchange]

    async def _db(self, what: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """Run a store call, retrying through a database outage (restart, failover)."""
        deadline = time.monotonic() + self._config.db_retry_s
        delay = 0.1
        while True:
            try:
                return await call()
            except _DB_TRANSIENT as exc:
                if time.monotonic() > deadline:
                    raise
                logger.warning("%s: database unavailable (%s); retrying in %.1fs", what,
                               type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _heartbeat(self, job: JobRecord, lost: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(self._config.lease_s / 3)
            try:
                if not await self._store.renew_lease(job.id, self.owner, self._config.lease_s):
                    lost.set()
                    return
            except _DB_TRANSIENT:
                continue

    async def run_job(self, job: JobRecord) -> None:
        """Run one claimed job to its end (or until its lease is lost)."""
        lost = asyncio.Event()
        beat = asyncio.create_task(self._heartbeat(job, lost))
        stats = JobStats.of(job.stats)
        if self.telemetry is not None:
            stats.on_add = functools.partial(self.telemetry.count, job.exchange)
        try:
            await self._page_through(job, stats, lost)
        except LeaseLost:
            logger.info("job %s: lease lost (cancelled or taken over)", job.id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("job %s failed", job.id)
            await self._fail(job, stats, exc)
        finally:
            self._fetched(job)
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat

    async def _fail(self, job: JobRecord, stats: JobStats, exc: Exception) -> None:
        transient = isinstance(exc, FetchFailed) and exc.transient
        error = {"code": 5 if isinstance(exc, NoBars) else 14 if transient else 13,
                 "message": str(exc)[:500] if isinstance(exc, FetchFailed | ValueError | NoBars)
                 else f"internal error ({type(exc).__name__})"}
        progress = dict(job.progress, message=f"failed: {error['message']}")
        with contextlib.suppress(*_DB_TRANSIENT):
            if await self._db("finish", lambda: self._store.finish_job(
                    job=job, owner=self.owner, state="JOB_STATE_FAILED", stats=stats,
                    progress=progress, error=error)):
                await self._event(job, "EVENT_TYPE_INGESTION_FAILED", "SEVERITY_ERROR",
                                  f"ingestion of {job.exchange} {job.symbol} {job.timeframe} "
                                  f"failed: {error['message']}", stats)

    async def _event(self, job: JobRecord, type_: str, severity: str, summary: str,
                     stats: JobStats, **data: Any) -> None:
        if self._redis is None:
            return
        event = DomainEvent(type=type_, source="ingestion", subject=job.name, summary=summary,
                            severity=severity, data={"exchange": job.exchange,
                                                     "symbol": job.symbol,
                                                     "timeframe": job.timeframe,
                                                     "stats": stats.values, **data})
        try:
            await publish(self._redis, event)
        except Exception as exc:  # events are best effort: never fail a job on them
            logger.warning("could not publish %s: %s", type_, exc)

    def _range(self, job: JobRecord, last_stored_ms: int | None, now: int
               ) -> tuple[int | None, int]:
        """Return (first bar time to fetch or None for 'the latest', exclusive end);
        ``now`` is the exchange's clock."""
        tf = domain.timeframe_ms(job.timeframe)
        end_ms = domain.align_down(now, tf)
        if job.end_time is not None:
            end_ms = min(end_ms, int(job.end_time.timestamp() * 1000))
        cursor = None if job.cursor_time is None else int(job.cursor_time.timestamp() * 1000)
        if job.mode == "INGEST_MODE_BACKFILL":
            assert job.start_time is not None
            start = int(job.start_time.timestamp() * 1000)
            return domain.resume_point(start, cursor, tf), end_ms
        # Incremental: after the cursor, else after the last stored bar, else the start.
        anchor = cursor if cursor is not None else last_stored_ms
        if anchor is not None:
            return anchor + tf, end_ms
        if job.start_time is not None:
            return domain.align_up(int(job.start_time.timestamp() * 1000), tf), end_ms
        return None, end_ms

    async def _page_through(self, job: JobRecord, stats: JobStats, lost: asyncio.Event) -> None:
        spec = domain.EXCHANGES[job.exchange]
        tf = domain.timeframe_ms(job.timeframe)
        client = self._client(job.exchange)
        last_stored = None
        if job.mode == "INGEST_MODE_INCREMENTAL":
            last_stored = await self._db("last bar", lambda: self._store.last_bar_ms(
                job.exchange, job.symbol, job.timeframe))
        # The exchange's clock bounds the range and every cursor, never this machine's:
        # an exchange (or the replay server) behind our clock has no bars after its now.
        exchange_now, retries = await client.server_time_ms()
        stats.add(requests=1 + retries, retries=retries)
        since, end_ms = self._range(job, last_stored, exchange_now)
        start_ms = since if since is not None else end_ms - spec.max_bars_per_request * tf
        if job.start_time is not None and job.mode == "INGEST_MODE_BACKFILL":
            start_ms = int(job.start_time.timestamp() * 1000)
        prev_bar = None if job.cursor_time is None else int(job.cursor_time.timestamp() * 1000)
        gaps_total = 0
        batch: list[Bars] = []
        batched = 0
        batch_start = time.monotonic()
        storing: asyncio.Task[tuple[int | None, int]] | None = None
        anchored = job.cursor_time is not None or last_stored is not None
        empty_range = since is not None and since >= end_ms
        if empty_range:
            fetch = None
        else:
            fetch = asyncio.create_task(client.fetch_page(
                job.symbol, job.timeframe, since, spec.max_bars_per_request))
        try:
            while fetch is not None:
                if lost.is_set():
                    raise LeaseLost(job.id)
                request = PageRequest(since if since is not None else 0,
                                      spec.max_bars_per_request)
                rows, retries = await fetch
                fetch = None
                stats.add(requests=1 + retries, retries=retries)
                bars = Bars.from_rows(rows)
                stats.add(bars_fetched=len(bars))
                lower = since if since is not None else -(2**62)
                # Bars outside the range belong to other jobs, except bars from the future:
                # those are malformed wherever they land, so they go to validation.
                future = bars.ts_ms + tf > self._now_ms()
                inside = domain.in_range(bars, lower, end_ms)
                page = bars.take(inside | future)
                # Paging follows in-range, aligned bar times only: a malformed time (future,
                # misaligned) must never move the cursor past bars not yet fetched.
                aligned = bars.ts_ms[inside & ~future & (bars.ts_ms % tf == 0)]
                last_received = int(aligned.max()) if aligned.size else None
                if since is None:
                    nxt = None if last_received is None else last_received + tf
                    first = int(aligned.min()) if aligned.size else end_ms
                    start_ms = min(start_ms, first)
                else:
                    nxt = domain.next_since(spec, tf, request, last_received)
                more = nxt is not None and nxt < end_ms and not (
                    spec.paging is Paging.RECENT and not len(page))
                if more:  # fetch the next page while this one is validated and stored
                    fetch = asyncio.create_task(client.fetch_page(
                        job.symbol, job.timeframe, nxt, spec.max_bars_per_request))
                cursor = (min(nxt, end_ms) - tf) if nxt is not None else (
                    last_received if last_received is not None else end_ms - tf)
                batch.append(page)
                batched += len(page)
                due = time.monotonic() - batch_start >= self._config.batch_max_s
                busy = storing is not None and not storing.done()
                if fetch is None or batched >= self._config.batch_bars or (due and not busy):
                    # One batch stores while the next pages are fetched; batches commit in
                    # order, each with the cursor of its last page. While the previous
                    # batch is still storing, a due batch keeps growing (up to batch_bars)
                    # instead of stopping the fetching to wait for it: fewer, larger
                    # batches when storing is the slower side.
                    if storing is not None:
                        prev_bar, gaps = await storing
                        gaps_total += gaps
                    merged, batch, batched = Bars.concat(batch), [], 0
                    batch_start = time.monotonic()
                    storing = asyncio.create_task(self._store_page(
                        job, stats, merged, tf, prev_bar, cursor, start_ms, end_ms))
                since = nxt
            self._fetched(job)
            if storing is not None:
                prev_bar, gaps = await storing
                gaps_total += gaps
                storing = None
        finally:
            for task in (fetch, storing):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
        v = stats.values
        warning = outcome_warning(job, v, empty_range=empty_range, anchored=anchored,
                                  start_ms=start_ms, end_ms=end_ms, exchange_now=exchange_now)
        info = domain.progress(start_ms, end_ms, end_ms, tf, v["bars_stored"])
        message = (f"done: {v['bars_stored']} new bars stored, already stored: "
                   f"{v['bars_duplicate']}, {v['bars_quarantined']} quarantined")
        prog = {"fraction": 1.0, "done": info.total, "total": info.total, "unit": "bars",
                "message": f"{message}; warning: {warning}" if warning else message}
        if await self._db("finish", lambda: self._store.finish_job(
                job=job, owner=self.owner, state="JOB_STATE_SUCCEEDED", stats=stats,
                progress=prog, error=None)):
            await self._event(job, "EVENT_TYPE_INGESTION_SUCCEEDED",
                              "SEVERITY_WARNING" if warning else "SEVERITY_INFO",
                              f"ingested {stats.values['bars_stored']} bars of {job.exchange} "
                              f"{job.symbol} {job.timeframe}" + (f" ({warning})" if warning
                                                                 else ""), stats)
            if gaps_total and not self._validator.records_findings:
                # With a validation service the gaps are its facts: it records and announces
                # them (one event per fact); ingestion announces them only without one.
                await self._event(job, "EVENT_TYPE_GAP_DETECTED", "SEVERITY_WARNING",
                                  f"{gaps_total} gaps in {job.exchange} {job.symbol} "
                                  f"{job.timeframe}", stats, gaps=gaps_total)
        else:
            raise LeaseLost(job.id)

    async def _store_page(self, job: JobRecord, stats: JobStats, page: Bars, tf: int,
                          prev_bar: int | None, cursor: int, start_ms: int,
                          end_ms: int) -> tuple[int | None, int]:
        """Validate a page and commit its accepted bars with the cursor; return the last
        accepted bar and the gaps found before it."""
        verdict = await self._validate(job, page, tf)
        accepted = page.take(verdict.accepted)
        accepted = accepted.take(np.argsort(accepted.ts_ms, kind="stable"))
        rejected = page.take(np.array([r.index for r in verdict.rejections], dtype=np.int64))
        stats.add(bars_quarantined=len(verdict.rejections))
        gaps, _missing = domain.count_gaps(accepted.ts_ms, tf, prev_bar)
        stats.add(gaps_found=gaps)
        if len(accepted):
            prev_bar = int(accepted.ts_ms[-1])
        info = domain.progress(start_ms, end_ms, cursor + tf, tf, stats.values["bars_stored"])
        prog = {"fraction": info.fraction, "done": info.done, "total": info.total,
                "unit": info.unit, "message": info.message}
        rejects = [(r.index, r.rules, r.reason) for r in verdict.rejections]
        await self._db("commit page", lambda: self._store.commit_page(
            job=job, owner=self.owner, lease_s=self._config.lease_s, bars=accepted,
            rejects=rejects, rejected=rejected, cursor_ms=cursor, stats=stats,
            progress=prog))
        return prev_bar, gaps

    async def _validate(self, job: JobRecord, page: Bars, tf: int) -> domain.Verdict:
        local = domain.sanity_check(page, tf, self._now_ms())
        delay = 0.2
        for attempt in range(self._config.retry_attempts):
            try:
                remote = await self._validator.validate(job.exchange, job.symbol,
                                                        job.timeframe, page)
                return combine(local, remote)
            except ValidationUnavailable as exc:
                if attempt + 1 == self._config.retry_attempts:
                    raise FetchFailed(f"validation unavailable: {exc}", transient=True) from exc
                logger.warning("validation unavailable (%s); retrying", exc)
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
                delay = min(delay * 2, self._config.retry_max_s)
        raise AssertionError("unreachable")


class NoBars(Exception):
    """The exchange returned no bar at all for a job's range (the job ends FAILED)."""


def outcome_warning(job: JobRecord, v: dict[str, int], *, empty_range: bool, anchored: bool,
                    start_ms: int, end_ms: int, exchange_now: int) -> str:
    """Decide how a job that fetched nothing ends (documented in docs/api.md).

    * The range is empty at the exchange's clock (an incremental job already up to
      date, or a range after the exchange's now): SUCCEEDED with a warning.
    * An incremental job with something stored before, whose exchange printed nothing
      since (a quiet market omits empty minutes): SUCCEEDED with a warning.
    * Otherwise, no bar at all from the exchange over the range: raise ``NoBars`` (the
      job ends FAILED, NOT_FOUND: the market is not traded or not served there).
    Return the warning, or "" when bars were fetched.
    """
    def when(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat()

    if empty_range:
        return (f"nothing to fetch: the range ends at {when(end_ms)}, at or before where it "
                f"starts, by the exchange's clock ({when(exchange_now)})")
    if v["bars_fetched"] > 0:
        return ""
    if job.mode == "INGEST_MODE_INCREMENTAL" and anchored:
        return f"no new bars from the exchange up to its clock ({when(exchange_now)})"
    raise NoBars(f"expected bars of {job.exchange} {job.symbol} {job.timeframe} in "
                 f"[{when(start_ms)}, {when(end_ms)}), got none from the exchange")


def utc_ms(value: datetime | None) -> int | None:
    return None if value is None else int(value.astimezone(UTC).timestamp() * 1000)
