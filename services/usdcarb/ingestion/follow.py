"""Follow jobs (``INGEST_MODE_FOLLOW``): store each bar of a series as it closes by its
exchange's clock, until the job is cancelled (or its end_time passes).

A follow job is an ingest job like the others — held under a lease, its pages validated
and committed with its cursor by the same code (``Worker._store_page``), taken over by
another process when its lease expires (a restart of the service resumes after its
cursor, bars that closed meanwhile included) — that never ends by itself: after each pass
it waits for the next bar to close and fetches again.

It follows from where the exchange's clock stands when it first runs (or from its
start_time, if later): new bars. History before that is a backfill's job — fetching a
long backlog venue by venue here would deliver one venue's bars far ahead of another's,
which a paper run following both would have to treat as the other's bars missing. The
cursor moves only to a bar received, so a bar an exchange serves late is fetched by a
later pass, never skipped.

Follow jobs run in their own worker with its own number of slots: one never ends, so it
must never hold one of the slots of the jobs that do (``IngestStore.claim_job(follow=)``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from usdcarb.ingestion import domain
from usdcarb.ingestion.domain import Bars, PageRequest, Paging
from usdcarb.ingestion.exchanges import FetchFailed
from usdcarb.ingestion.model import JobRecord, JobStats
from usdcarb.ingestion.store import IngestStore, LeaseLost
from usdcarb.ingestion.validation import CandleValidator
from usdcarb.ingestion.worker import Worker, WorkerConfig, utc_ms
from usdcarb.platform import db

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FollowConfig:
    """How follow jobs run."""

    concurrency: int = 256      # follow jobs one process runs at once
    # Seconds between a job's passes; 0: at the timeframe's cadence, i.e. when the next
    # bar closes by the exchange's clock, plus ``settle_s``. A replay clock that jumps
    # does not move with this machine's: tests set a short fixed interval.
    poll_s: float = 0.0
    settle_s: float = 2.0       # after a bar's close, before asking for it
    retry_s: float = 5.0        # after a pass the exchange could not serve


def next_wait_s(config: FollowConfig, *, tf_ms: int, exchange_now_ms: int,
                elapsed_s: float) -> float:
    """Seconds to wait after a pass that started at ``exchange_now_ms`` and took
    ``elapsed_s``."""
    if config.poll_s > 0:
        return config.poll_s
    next_close = domain.align_down(exchange_now_ms, tf_ms) + tf_ms
    return max(0.0, (next_close - exchange_now_ms) / 1000 - elapsed_s) + config.settle_s


class FollowWorker(Worker):
    """Runs follow jobs only; ``run()`` until ``stop()``."""

    kind = "follow"

    def __init__(self, store: IngestStore, validator: CandleValidator, config: WorkerConfig,
                 follow: FollowConfig, *, redis: Any = None) -> None:
        super().__init__(store, validator, config, redis=redis)
        self.owner = f"follower-{uuid.uuid4().hex[:12]}"
        self._follow = follow

    async def stop(self) -> None:
        """Stop following; the jobs stay RUNNING and another process takes them over at
        once (a rolling restart leaves no venue behind for a lease's length)."""
        await super().stop()
        try:
            await self._store.release_leases(self.owner)
        except db.UNAVAILABLE as exc:   # the leases simply expire
            logger.info("follow leases of %s left to expire: %s", self.owner, exc)

    def running(self) -> list[str]:
        """Names of the tasks still running (one per job held)."""
        return sorted(t.get_name() for t in self._tasks if not t.done())

    def _has_room(self) -> bool:
        return len(self._tasks) < self._follow.concurrency

    async def _claim(self) -> JobRecord | None:
        return await self._store.claim_job(self.owner, self._config.lease_s, follow=True)

    def _start(self, job: JobRecord) -> None:
        self._spawn(job)   # its own slots: a follow job never holds a backfill slot

    async def _page_through(self, job: JobRecord, stats: JobStats, lost: asyncio.Event) -> None:
        """Follow the job's series pass after pass (``Worker.run_job`` holds the lease,
        maps a lost lease and a failure); end SUCCEEDED once its end_time has passed."""
        tf = domain.timeframe_ms(job.timeframe)
        end_limit = utc_ms(job.end_time)
        cursor = utc_ms(job.cursor_time)
        while True:
            # The lease renewed before every pass: a cancelled job stops here, before it
            # asks the exchange anything.
            if lost.is_set() or not await self._db("renew", lambda: self._store.renew_lease(
                    job.id, self.owner, self._config.lease_s)):
                raise LeaseLost(job.id)
            started = time.monotonic()
            try:
                exchange_now, cursor = await self._pass(job, stats, tf, end_limit, cursor)
            except FetchFailed as exc:
                if not exc.transient:
                    raise
                logger.warning("follow job %s: %s; next pass in %.1fs", job.id, exc,
                               self._follow.retry_s)
                wait = self._follow.retry_s
            else:
                if end_limit is not None and exchange_now >= end_limit:
                    await self._finish(job, stats)
                    return
                wait = next_wait_s(self._follow, tf_ms=tf, exchange_now_ms=exchange_now,
                                   elapsed_s=time.monotonic() - started)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(lost.wait(), wait)

    async def _pass(self, job: JobRecord, stats: JobStats, tf: int, end_limit: int | None,
                    cursor: int | None) -> tuple[int, int]:
        """Fetch and store every bar closed after the cursor (or a bar stored since by
        another job); return the exchange's clock the pass ran to and the cursor."""
        spec = domain.EXCHANGES[job.exchange]
        client = self._client(job.exchange)
        now, retries = await client.server_time_ms()
        stats.add(requests=1 + retries, retries=retries)
        end_ms = domain.align_down(now, tf)
        if end_limit is not None:
            end_ms = min(end_ms, end_limit)
        if cursor is None:   # the first pass: the job follows the bars closing from now on
            first = utc_ms(job.start_time)
            origin = domain.align_down(now, tf)
            if first is not None:
                origin = max(origin, domain.align_up(first, tf))
            start = origin - tf
            if not await self._db("start", lambda: self._store.set_cursor(
                    job.id, self.owner, start)):
                raise LeaseLost(job.id)
            cursor = start
        last = await self._db("last bar", lambda: self._store.last_bar_ms(
            job.exchange, job.symbol, job.timeframe))
        since = cursor + tf if last is None else max(cursor, last) + tf
        start_ms, prev_bar = since, last
        while since < end_ms:
            request = PageRequest(since, spec.max_bars_per_request)
            rows, retries = await client.fetch_page(job.symbol, job.timeframe, since,
                                                    request.limit)
            stats.add(requests=1 + retries, retries=retries, bars_fetched=len(rows))
            bars = Bars.from_rows(rows)
            # Only the pass's range: bars after the exchange's clock (the bar still
            # forming, which some exchanges serve) are the next passes' — never
            # quarantined here as the malformed bars they are not.
            inside = domain.in_range(bars, since, end_ms)
            page = bars.take(inside)
            aligned = bars.ts_ms[inside & (bars.ts_ms % tf == 0)]
            last_received = int(aligned.max()) if aligned.size else None
            if len(page):
                moved = last_received if last_received is not None else since - tf
                prev_bar, _ = await self._store_page(job, stats, page, tf, prev_bar, moved,
                                                     start_ms, end_ms)
                cursor = max(cursor, moved)
            nxt = domain.next_since(spec, tf, request, last_received)
            if nxt is None or nxt >= end_ms or (spec.paging is Paging.RECENT and not len(page)):
                break
            since = nxt
        return now, cursor

    async def _finish(self, job: JobRecord, stats: JobStats) -> None:
        v = stats.values
        progress = {"fraction": 1.0, "unit": "bars",
                    "message": f"done: followed to its end time; {v['bars_stored']} new bars "
                               f"stored, {v['bars_quarantined']} quarantined"}
        if not await self._db("finish", lambda: self._store.finish_job(
                job=job, owner=self.owner, state="JOB_STATE_SUCCEEDED", stats=stats,
                progress=progress, error=None)):
            raise LeaseLost(job.id)
        await self._event(job, "EVENT_TYPE_INGESTION_SUCCEEDED", "SEVERITY_INFO",
                          f"followed {job.exchange} {job.symbol} {job.timeframe} to its end "
                          f"({v['bars_stored']} bars stored)", stats)
