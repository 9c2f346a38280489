"""PostgreSQL store of archive imports (tables of migrations/0004_archive_imports.sql).

Contract: an import is leased like an ingest job (``claim``/``renew_lease``/``finish``,
every write fenced by the lease owner and the RUNNING state, else ``LeaseLost``). Files
are settled by ``commit_files`` — one file, or several consecutive files of the import
at once — in ONE transaction: their bars (usdcarb.marketdata.writer.write_series_rows:
one binary COPY into the hypertable where nothing is stored, merge only over stored
bars), their quarantined bars, their ``archive_files`` rows and the import's counters.
A file is settled whole or not at all, and a file whose row exists as STORED is never
read again by that import.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import numpy as np
import numpy.typing as npt

from usdcarb.ingestion.domain import Bars, Rejection
from usdcarb.ingestion.store import LeaseLost
from usdcarb.marketdata.writer import write_series_rows
from usdcarb.platform.errors import NotFound

MAX_MS = 253_402_300_799_000  # 9999-12-31T23:59:59Z: the latest time a datetime holds
STATS_KEYS = ("files_total", "files_stored", "files_failed", "files_skipped", "bytes",
              "bars_read", "bars_stored", "bars_duplicate", "bars_quarantined")
TERMINAL = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED")
_COLUMNS = ("id, layout, location, exchange, symbol, market_id, timeframe, start_time, "
            "end_time, granularity, state, progress, stats, error, creator, owner, "
            "create_time, update_time, finish_time, version, lease_owner")
_FILE_COLUMNS = ("key, location, state, bars_read, bars_stored, bars_duplicate, "
                 "bars_quarantined, bytes, sha256, reason, message, seq")


@dataclass(frozen=True)
class ImportRecord:
    id: str
    layout: str
    location: str
    exchange: str
    symbol: str
    market_id: str
    timeframe: str
    start_time: datetime | None
    end_time: datetime | None
    granularity: str
    state: str
    progress: dict[str, Any]
    stats: dict[str, int]
    error: dict[str, Any] | None
    creator: str
    owner: str
    create_time: datetime
    update_time: datetime
    finish_time: datetime | None
    version: int
    lease_owner: str | None = None
    files: tuple[FileRecord, ...] = ()

    @property
    def name(self) -> str:
        return f"archiveImports/{self.id}"

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


@dataclass(frozen=True)
class FileRecord:
    key: str
    location: str
    state: str  # STORED | FAILED
    bars_read: int = 0
    bars_stored: int = 0
    bars_duplicate: int = 0
    bars_quarantined: int = 0
    bytes: int = 0
    sha256: str = ""
    reason: str = ""
    message: str = ""
    seq: int = 0


@dataclass(frozen=True, eq=False)
class Settle:
    """One file to settle: its record (``bars_read``, bytes, sha256, state, reason) and,
    when STORED, the bars to store (ascending, unique) and its quarantined bars."""

    file: FileRecord
    bars: Bars | None = None
    rejects: tuple[Rejection, ...] = ()
    rejected: Bars | None = None
    trades: npt.NDArray[np.int64] | None = None  # per bar of ``bars``, when published


@dataclass
class ImportStats:
    values: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATS_KEYS, 0))

    @classmethod
    def of(cls, stored: dict[str, Any]) -> ImportStats:
        return cls({k: int(stored.get(k, 0)) for k in STATS_KEYS})


def _record(row: asyncpg.Record, files: tuple[FileRecord, ...] = ()) -> ImportRecord:
    return ImportRecord(**dict(row), files=files)


def _file(row: asyncpg.Record) -> FileRecord:
    return FileRecord(**dict(row))


class ArchiveStore:
    def __init__(self, pool: Any) -> None:
        self._pool = pool

    async def create(self, *, layout: str, location: str, exchange: str, symbol: str,
                     market_id: str, timeframe: str, start: datetime | None,
                     end: datetime | None, granularity: str, creator: str,
                     request_id: str) -> ImportRecord:
        async with self._pool.acquire() as conn, conn.transaction():
            if request_id:
                row = await conn.fetchrow(
                    f"SELECT {_COLUMNS} FROM archive_imports WHERE request_id = $1",
                    request_id)
                if row is not None:
                    return _record(row)
            row = await conn.fetchrow(
                f"""INSERT INTO archive_imports (id, layout, location, exchange, symbol,
                    market_id, timeframe, start_time, end_time, granularity, creator, owner,
                    request_id) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$11,$12)
                    ON CONFLICT (request_id) DO NOTHING RETURNING {_COLUMNS}""",
                uuid.uuid4().hex[:20], layout, location, exchange, symbol, market_id,
                timeframe, start, end, granularity, creator, request_id or None)
            if row is None:
                row = await conn.fetchrow(
                    f"SELECT {_COLUMNS} FROM archive_imports WHERE request_id = $1",
                    request_id)
            return _record(row)

    async def get(self, import_id: str, *, with_files: bool = True) -> ImportRecord:
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM archive_imports WHERE id = $1", import_id)
        if row is None:
            raise NotFound("archive import", f"archiveImports/{import_id}")
        files: tuple[FileRecord, ...] = ()
        if with_files:
            files = tuple(_file(r) for r in await self._pool.fetch(
                f"SELECT {_FILE_COLUMNS} FROM archive_files WHERE import_id = $1 "
                "ORDER BY seq", import_id))
        return _record(row, files)

    async def list(self, *, limit: int, after: tuple[datetime, str] | None,
                   state: str | None, owner: str | None) -> list[ImportRecord]:
        rows = await self._pool.fetch(
            f"""SELECT {_COLUMNS} FROM archive_imports
                WHERE ($1::text IS NULL OR state = $1)
                  AND ($2::timestamptz IS NULL OR (create_time, id) < ($2, $3))
                  AND ($5::text IS NULL OR owner = $5)
                ORDER BY create_time DESC, id DESC LIMIT $4""",
            state, after[0] if after else None, after[1] if after else "", limit, owner)
        return [_record(r) for r in rows]

    async def cancel(self, import_id: str, authorize: Callable[[str], None]) -> ImportRecord:
        async with self._pool.acquire() as conn, conn.transaction():
            owner = await conn.fetchval(
                "SELECT owner FROM archive_imports WHERE id = $1 FOR UPDATE", import_id)
            if owner is None:
                raise NotFound("archive import", f"archiveImports/{import_id}")
            authorize(owner)
            await conn.execute(
                """UPDATE archive_imports SET state = 'JOB_STATE_CANCELLED',
                       finish_time = now(), update_time = now(), version = version + 1,
                       lease_owner = NULL,
                       progress = progress || '{"message": "cancelled"}'::jsonb
                   WHERE id = $1 AND state IN ('JOB_STATE_QUEUED', 'JOB_STATE_RUNNING')""",
                import_id)
        return await self.get(import_id)

    async def claim(self, owner: str, lease_s: float) -> ImportRecord | None:
        row = await self._pool.fetchrow(
            f"""UPDATE archive_imports SET state = 'JOB_STATE_RUNNING', lease_owner = $1,
                   lease_until = now() + make_interval(secs => $2), update_time = now(),
                   version = version + 1
                WHERE id = (SELECT id FROM archive_imports
                            WHERE state = 'JOB_STATE_QUEUED'
                               OR (state = 'JOB_STATE_RUNNING' AND lease_until < now())
                            ORDER BY create_time FOR UPDATE SKIP LOCKED LIMIT 1)
                RETURNING {_COLUMNS}""", owner, lease_s)
        return _record(row) if row is not None else None

    async def renew_lease(self, import_id: str, owner: str, lease_s: float) -> bool:
        status = await self._pool.execute(
            """UPDATE archive_imports SET lease_until = now() + make_interval(secs => $3)
               WHERE id = $1 AND lease_owner = $2 AND state = 'JOB_STATE_RUNNING'""",
            import_id, owner, lease_s)
        return bool(status.endswith(" 1"))

    async def settled(self, import_id: str) -> dict[str, FileRecord]:
        rows = await self._pool.fetch(
            f"SELECT {_FILE_COLUMNS} FROM archive_files WHERE import_id = $1", import_id)
        return {r["key"]: _file(r) for r in rows}

    async def set_progress(self, rec: ImportRecord, owner: str, lease_s: float,
                           stats: ImportStats, progress: dict[str, Any]) -> None:
        status = await self._pool.execute(
            """UPDATE archive_imports SET stats = $3, progress = $4, update_time = now(),
                   lease_until = now() + make_interval(secs => $5), version = version + 1
               WHERE id = $1 AND lease_owner = $2 AND state = 'JOB_STATE_RUNNING'""",
            rec.id, owner, stats.values, progress, lease_s)
        if not status.endswith(" 1"):
            raise LeaseLost(rec.id)

    async def commit_files(self, *, rec: ImportRecord, owner: str, lease_s: float,
                           files: Sequence[Settle], stats: ImportStats,
                           progress: dict[str, Any], tf_ms: int) -> Sequence[FileRecord]:
        """Settle consecutive files (each STORED with its bars, or FAILED with nothing) and
        the import's counters in one transaction; retried when a concurrent writer won a
        COPY race."""
        for attempt in range(3):
            try:
                return await self._commit_files(rec=rec, owner=owner, lease_s=lease_s,
                                                 files=files, stats=stats,
                                                 progress=progress, tf_ms=tf_ms)
            except asyncpg.UniqueViolationError:
                if attempt == 2:
                    raise
                await asyncio.sleep(0.05)
        raise AssertionError("unreachable")

    async def _commit_files(self, *, rec: ImportRecord, owner: str, lease_s: float,
                            files: Sequence[Settle], stats: ImportStats,
                            progress: dict[str, Any], tf_ms: int) -> Sequence[FileRecord]:
        values = dict(stats.values)
        stored = [f for f in files if f.bars is not None and len(f.bars)]
        async with self._pool.acquire() as conn, conn.transaction():
            # Lock the import row first: a cancel or a takeover waits for these files,
            # and they are refused if either came first.
            held = await conn.fetchval(
                """SELECT 1 FROM archive_imports WHERE id = $1 AND lease_owner = $2
                   AND state = 'JOB_STATE_RUNNING' FOR UPDATE""", rec.id, owner)
            if held is None:
                raise LeaseLost(rec.id)
            written = np.zeros(0, bool)
            if stored:
                # The files are consecutive ranges of one series, each ascending and
                # unique: together one ascending series, stored by ONE COPY.
                bars = Bars.concat([f.bars for f in stored if f.bars is not None])
                trades = None
                if all(f.trades is not None for f in stored):
                    trades = np.concatenate([f.trades for f in stored
                                             if f.trades is not None])
                written = await write_series_rows(
                    conn, exchange=rec.exchange, symbol=rec.symbol, timeframe=rec.timeframe,
                    timeframe_ms=tf_ms, open_time_ms=bars.ts_ms, open_=bars.open,
                    high=bars.high, low=bars.low, close=bars.close, volume=bars.volume,
                    source=rec.exchange, trades=trades)
            rejects = [(f, j, r) for f in files if f.rejected is not None
                       for j, r in enumerate(f.rejects)]
            if rejects:
                await conn.copy_records_to_table(
                    "ingest_rejects", columns=["job_id", "exchange", "symbol", "timeframe",
                                               "open_time_ms", "open", "high", "low",
                                               "close", "volume", "rules", "reason"],
                    records=[(f"archiveImports/{rec.id}", rec.exchange, rec.symbol,
                              rec.timeframe, int(rj.ts_ms[j]), float(rj.open[j]),
                              float(rj.high[j]), float(rj.low[j]), float(rj.close[j]),
                              float(rj.volume[j]), list(r.rules), r.reason[:500])
                             for f, j, r in rejects if (rj := f.rejected) is not None])
            settled = []
            at = 0
            for f in files:
                file, n = f.file, len(f.bars) if f.bars is not None else 0
                new = int(written[at:at + n].sum()) if f in stored else 0
                at += n if f in stored else 0
                settled.append(FileRecord(
                    file.key, file.location, file.state, file.bars_read, new, n - new,
                    len(f.rejects), file.bytes, file.sha256, file.reason,
                    file.message[:1000], file.seq))
                if file.state == "STORED":
                    values["files_stored"] += 1
                    values["bars_read"] += file.bars_read
                    values["bars_stored"] += new
                    values["bars_duplicate"] += n - new
                    values["bars_quarantined"] += len(f.rejects)
                else:
                    values["files_failed"] += 1
                values["bytes"] += file.bytes
            await conn.executemany(
                f"""INSERT INTO archive_files (import_id, {_FILE_COLUMNS})
                    VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)
                    ON CONFLICT (import_id, key) DO UPDATE SET state = EXCLUDED.state,
                      bars_read = EXCLUDED.bars_read, bars_stored = EXCLUDED.bars_stored,
                      bars_duplicate = EXCLUDED.bars_duplicate,
                      bars_quarantined = EXCLUDED.bars_quarantined, bytes = EXCLUDED.bytes,
                      sha256 = EXCLUDED.sha256, reason = EXCLUDED.reason,
                      message = EXCLUDED.message, seq = EXCLUDED.seq, update_time = now()""",
                [(rec.id, x.key, x.location, x.state, x.bars_read, x.bars_stored,
                  x.bars_duplicate, x.bars_quarantined, x.bytes, x.sha256, x.reason,
                  x.message, x.seq) for x in settled])
            progress = dict(progress, done=values["files_stored"] + values["files_failed"]
                            + values["files_skipped"])
            total = max(int(progress.get("total", 0)), 1)
            progress["fraction"] = min(1.0, progress["done"] / total)
            await conn.execute(
                """UPDATE archive_imports SET stats = $3, progress = $4, update_time = now(),
                       lease_until = now() + make_interval(secs => $5), version = version + 1
                   WHERE id = $1 AND lease_owner = $2""",
                rec.id, owner, values, progress, lease_s)
        stats.values.update(values)
        return settled

    async def extent(self, exchange: str, symbol: str, timeframe: str, start_ms: int,
                     end_ms: int) -> tuple[int, int] | None:
        """First and last stored bar times of a series within [start_ms, end_ms)."""
        row = await self._pool.fetchrow(
            "SELECT (extract(epoch FROM min(ts)) * 1000)::int8 AS lo, "
            "(extract(epoch FROM max(ts)) * 1000)::int8 AS hi FROM market_data "
            "WHERE exchange = $1 AND symbol = $2 AND timeframe = $3 AND ts >= $4 AND ts < $5",
            exchange, symbol, timeframe, ts(start_ms), ts(min(end_ms, MAX_MS)))
        return None if row is None or row["lo"] is None else (int(row["lo"]), int(row["hi"]))

    async def finish(self, rec: ImportRecord, owner: str, state: str, stats: ImportStats,
                     progress: dict[str, Any], error: dict[str, Any] | None) -> bool:
        status = await self._pool.execute(
            """UPDATE archive_imports SET state = $3, stats = $4, progress = $5, error = $6,
                   finish_time = now(), update_time = now(), version = version + 1,
                   lease_owner = NULL, lease_until = NULL
               WHERE id = $1 AND lease_owner = $2 AND state = 'JOB_STATE_RUNNING'""",
            rec.id, owner, state, stats.values, progress, error)
        return bool(status.endswith(" 1"))


def ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def empty_bars() -> Bars:
    e = np.empty(0, np.float64)
    return Bars(np.empty(0, np.int64), e, e, e, e, e)
