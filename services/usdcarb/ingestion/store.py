"""PostgreSQL store of the ingestion service (asyncpg).

Contract: tables are unqualified (the pool's search_path names the schema). A batch of
pages is stored by ``commit_page`` in ONE transaction: binary COPY straight into
``market_data`` for the bars not stored yet, a merge over the stored ones only (an
original bar never overwrites an original one, so re-ingesting changes nothing; it does
replace a gap-filled one; see usdcarb.marketdata.writer.write_series), the rejected
bars, and the job's cursor, stats and progress.
The job update is fenced by the worker's lease: if another worker took the job over, or
it was cancelled, the transaction rolls back and ``LeaseLost`` is raised. A crash
therefore never loses or duplicates a bar: the cursor moves only with the bars.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import numpy as np

from usdcarb.ingestion.domain import Bars, timeframe_ms
from usdcarb.ingestion.model import JobRecord, JobStats, SeriesCoverage
from usdcarb.marketdata.cache import CandleCache
from usdcarb.marketdata.reader import Candles
from usdcarb.marketdata.writer import write_series
from usdcarb.platform.errors import NotFound
from usdcarb.platform.replica import ReadRouter

_JOB_COLUMNS = ("id, exchange, symbol, timeframe, mode, start_time, end_time, state, progress, "
                "stats, cursor_time, error, creator, create_time, update_time, finish_time, "
                "version, lease_owner, owner")


class LeaseLost(Exception):
    """The job is no longer held by this worker (taken over or cancelled)."""


def _ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _job(row: asyncpg.Record) -> JobRecord:
    return JobRecord(**dict(row))


class IngestStore:
    """Ingest jobs with leases, market data writes and candle reads."""

    def __init__(self, pool: Any, *, reads: ReadRouter | None = None) -> None:
        self._pool = pool
        self._cache = CandleCache(table="market_data", blocks="candle_blocks")
        # Candle reads (GetCandles, StreamCandles): the read replica when it is healthy.
        self._reads = reads or ReadRouter(pool)

    # -- jobs ---------------------------------------------------------------------------
    async def create_job(self, *, exchange: str, symbol: str, timeframe: str, mode: str,
                         start: datetime | None, end: datetime | None, creator: str,
                         request_id: str) -> JobRecord:
        """Insert a queued job; a repeated ``request_id`` returns the first job."""
        async with self._pool.acquire() as conn, conn.transaction():
            if request_id:
                row = await conn.fetchrow(
                    f"SELECT {_JOB_COLUMNS} FROM ingest_jobs WHERE request_id = $1", request_id)
                if row is not None:
                    return _job(row)
            row = await conn.fetchrow(
                f"""INSERT INTO ingest_jobs (id, exchange, symbol, timeframe, mode, start_time,
                    end_time, creator, request_id, owner)
                    VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$8)
                    ON CONFLICT (request_id) DO NOTHING RETURNING {_JOB_COLUMNS}""",
                uuid.uuid4().hex[:20], exchange, symbol, timeframe, mode, start, end, creator,
                request_id or None)
            if row is None:  # lost a race on the same request id
                row = await conn.fetchrow(
                    f"SELECT {_JOB_COLUMNS} FROM ingest_jobs WHERE request_id = $1", request_id)
            return _job(row)

    async def get_job(self, job_id: str) -> JobRecord:
        row = await self._pool.fetchrow(
            f"SELECT {_JOB_COLUMNS} FROM ingest_jobs WHERE id = $1", job_id)
        if row is None:
            raise NotFound("ingest job", f"ingestJobs/{job_id}")
        return _job(row)

    async def list_jobs(self, *, limit: int, after: tuple[datetime, str] | None,
                        state: str | None, exchange: str | None,
                        owner: str | None = None) -> list[JobRecord]:
        """Jobs newest first, keyset-paged on (create_time, id)."""
        rows = await self._pool.fetch(
            f"""SELECT {_JOB_COLUMNS} FROM ingest_jobs
                WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR exchange = $2)
                  AND ($3::timestamptz IS NULL OR (create_time, id) < ($3, $4))
                  AND ($6::text IS NULL OR owner = $6)
                ORDER BY create_time DESC, id DESC LIMIT $5""",
            state, exchange, after[0] if after else None, after[1] if after else "", limit,
            owner)
        return [_job(r) for r in rows]

    async def cancel_job(self, job_id: str, authorize: Callable[[str], None]) -> JobRecord:
        """Cancel a queued or running job; a finished job is returned unchanged.

        ``authorize(owner)`` runs on the row locked FOR UPDATE, in the transaction of the
        cancel, and raises to refuse it (nothing is written then).
        """
        async with self._pool.acquire() as conn, conn.transaction():
            owner = await conn.fetchval(
                "SELECT owner FROM ingest_jobs WHERE id = $1 FOR UPDATE", job_id)
            if owner is None:
                raise NotFound("ingest job", f"ingestJobs/{job_id}")
            authorize(owner)
            row = await conn.fetchrow(
                f"""UPDATE ingest_jobs SET state = 'JOB_STATE_CANCELLED', finish_time = now(),
                       update_time = now(), version = version + 1, lease_owner = NULL,
                       progress = progress || '{{"message": "cancelled"}}'::jsonb
                    WHERE id = $1 AND state IN ('JOB_STATE_QUEUED', 'JOB_STATE_RUNNING')
                    RETURNING {_JOB_COLUMNS}""", job_id)
            if row is None:
                row = await conn.fetchrow(
                    f"SELECT {_JOB_COLUMNS} FROM ingest_jobs WHERE id = $1", job_id)
        return _job(row)

    async def claim_job(self, owner: str, lease_s: float, *,
                        follow: bool = False) -> JobRecord | None:
        """Take the oldest queued job, or a running one whose lease expired: FOLLOW jobs
        only when ``follow``, else any other (a follow job never ends: it runs in its own
        worker, never in one of the slots of jobs that do)."""
        row = await self._pool.fetchrow(
            f"""UPDATE ingest_jobs SET state = 'JOB_STATE_RUNNING', lease_owner = $1,
                   lease_until = now() + make_interval(secs => $2), update_time = now(),
                   version = version + 1
                WHERE id = (SELECT id FROM ingest_jobs
                            WHERE (state = 'JOB_STATE_QUEUED'
                                   OR (state = 'JOB_STATE_RUNNING' AND lease_until < now()))
                              AND (mode = 'INGEST_MODE_FOLLOW') = $3
                            ORDER BY create_time FOR UPDATE SKIP LOCKED LIMIT 1)
                RETURNING {_JOB_COLUMNS}""", owner, lease_s, follow)
        return _job(row) if row is not None else None

    async def renew_lease(self, job_id: str, owner: str, lease_s: float) -> bool:
        status = await self._pool.execute(
            """UPDATE ingest_jobs SET lease_until = now() + make_interval(secs => $3)
               WHERE id = $1 AND lease_owner = $2 AND state = 'JOB_STATE_RUNNING'""",
            job_id, owner, lease_s)
        return bool(status.endswith(" 1"))

    async def release_leases(self, owner: str) -> int:
        """Let the RUNNING jobs ``owner`` holds be taken over at once (a worker shutting
        down, its tasks ended); return how many."""
        status = await self._pool.execute(
            """UPDATE ingest_jobs SET lease_until = now() WHERE lease_owner = $1
                 AND state = 'JOB_STATE_RUNNING'""", owner)
        return int(status.split()[-1])

    async def set_cursor(self, job_id: str, owner: str, cursor_ms: int) -> bool:
        """Move a held job's cursor without storing a bar (where a follow job starts)."""
        status = await self._pool.execute(
            """UPDATE ingest_jobs SET cursor_time = $3, update_time = now(),
                   version = version + 1
               WHERE id = $1 AND lease_owner = $2 AND state = 'JOB_STATE_RUNNING'""",
            job_id, owner, _ts(cursor_ms))
        return bool(status.endswith(" 1"))

    async def commit_page(self, *, job: JobRecord, owner: str, lease_s: float, bars: Bars,
                          rejects: Sequence[tuple[int, tuple[str, ...], str]], rejected: Bars,
                          cursor_ms: int, stats: JobStats, progress: dict[str, Any]) -> int:
        """Store a page's accepted ``bars`` (ascending, unique), its rejects and the job
        state in one transaction; return the bars newly written. A concurrent writer of the
        same bars (another job, an archive import) that commits first makes the COPY fail
        with a unique violation: the transaction is retried and then merges them."""
        for attempt in range(3):
            try:
                return await self._commit_page(
                    job=job, owner=owner, lease_s=lease_s, bars=bars, rejects=rejects,
                    rejected=rejected, cursor_ms=cursor_ms, stats=stats, progress=progress)
            except asyncpg.UniqueViolationError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _commit_page(self, *, job: JobRecord, owner: str, lease_s: float, bars: Bars,
                           rejects: Sequence[tuple[int, tuple[str, ...], str]],
                           rejected: Bars, cursor_ms: int, stats: JobStats,
                           progress: dict[str, Any]) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            # Binary COPY straight into the hypertable for bars not stored yet; a merge
            # only over stored ones (usdcarb.marketdata.writer.write_series).
            inserted, _ = await write_series(
                conn, exchange=job.exchange, symbol=job.symbol, timeframe=job.timeframe,
                timeframe_ms=timeframe_ms(job.timeframe), open_time_ms=bars.ts_ms,
                open_=bars.open, high=bars.high, low=bars.low, close=bars.close,
                volume=bars.volume, source=job.exchange)
            if rejects:
                await conn.copy_records_to_table(
                    "ingest_rejects", columns=["job_id", "exchange", "symbol", "timeframe",
                                               "open_time_ms", "open", "high", "low",
                                               "close", "volume", "rules", "reason"],
                    records=[(job.id, job.exchange, job.symbol, job.timeframe,
                              int(rejected.ts_ms[i]), float(rejected.open[i]),
                              float(rejected.high[i]), float(rejected.low[i]),
                              float(rejected.close[i]), float(rejected.volume[i]),
                              list(rules), reason)
                             for i, (_, rules, reason) in enumerate(rejects)])
            values = dict(stats.values)
            values["bars_stored"] += inserted
            values["bars_duplicate"] += len(bars) - inserted
            status = await conn.execute(
                """UPDATE ingest_jobs SET cursor_time = $3, stats = $4, progress = $5,
                       lease_until = now() + make_interval(secs => $6), update_time = now(),
                       version = version + 1
                   WHERE id = $1 AND lease_owner = $2 AND state = 'JOB_STATE_RUNNING'""",
                job.id, owner, _ts(cursor_ms), values, progress, lease_s)
            if not status.endswith(" 1"):
                raise LeaseLost(job.id)
        # Counted only once committed: a retried page (database outage) is not counted twice.
        stats.add(bars_stored=inserted, bars_duplicate=len(bars) - inserted)
        return inserted

    async def finish_job(self, *, job: JobRecord, owner: str, state: str, stats: JobStats,
                         progress: dict[str, Any], error: dict[str, Any] | None) -> bool:
        status = await self._pool.execute(
            """UPDATE ingest_jobs SET state = $3, stats = $4, progress = $5, error = $6,
                   finish_time = now(), update_time = now(), version = version + 1,
                   lease_owner = NULL, lease_until = NULL
               WHERE id = $1 AND lease_owner = $2 AND state = 'JOB_STATE_RUNNING'""",
            job.id, owner, state, stats.values, progress, error)
        return bool(status.endswith(" 1"))

    # -- market data ----------------------------------------------------------------------
    async def last_bar_ms(self, exchange: str, symbol: str, timeframe: str) -> int | None:
        value = await self._pool.fetchval(
            """SELECT ts FROM market_data WHERE exchange = $1 AND symbol = $2
               AND timeframe = $3 ORDER BY ts DESC LIMIT 1""", exchange, symbol, timeframe)
        return None if value is None else int(value.timestamp() * 1000)

    async def coverage(self, exchange: str) -> list[SeriesCoverage]:
        rows = await self._pool.fetch(
            """SELECT symbol, timeframe, min(ts) AS first, max(ts) AS last, count(*) AS n
               FROM market_data WHERE exchange = $1 GROUP BY symbol, timeframe""", exchange)
        return [SeriesCoverage(exchange, r["symbol"], r["timeframe"], r["first"], r["last"],
                               int(r["n"])) for r in rows]

    async def read(self, *, exchange: str, symbol: str, timeframe: str, start: datetime,
                   end: datetime, with_source: bool = False) -> tuple[Candles, list[str],
                                                                      np.ndarray]:
        """Read candles (binary COPY) and, if asked, each bar's source as dictionary codes."""
        async def read(conn: Any) -> tuple[Candles, list[str], np.ndarray]:
            candles = await self._cache.read(conn, exchange=exchange, symbol=symbol,
                                             timeframe=timeframe,
                                             timeframe_ms=timeframe_ms(timeframe),
                                             start=start, end=end)
            sources = [exchange]
            codes = np.zeros(len(candles), np.int32)
            if with_source and len(candles) and (candles.provenance != 1).any():
                rows = await conn.fetch(
                    """SELECT ts, source FROM market_data WHERE exchange = $1 AND symbol = $2
                       AND timeframe = $3 AND ts >= $4 AND ts < $5 AND provenance <> 1""",
                    exchange, symbol, timeframe, start, end)
                index = {s: i for i, s in enumerate(sources)}
                for r in rows:
                    src = r["source"] or exchange
                    code = index.setdefault(src, len(index))
                    if code == len(sources):
                        sources.append(src)
                    ms = int(r["ts"].timestamp() * 1000)
                    pos = int(np.searchsorted(candles.open_time_ms, ms))
                    codes[pos] = code
            return candles, sources, codes

        return await self._reads.run(read)
