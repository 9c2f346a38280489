"""Runs archive imports: plan the files, download a few ahead, verify, parse, validate
over whole files in-process, and settle the files downloaded together in one transaction
(one COPY), while the next group is validated.

Validation: the validation domain's batch rules (per-bar, duplicates within the file,
stale runs, spikes) run here, vectorised over the whole file, in a thread while the next
files download; a file is one batch, so there is no per-page round trip at all. Once an
import has stored bars, the validation service's range use case (ValidateRange: every
rule over the stored range, findings, gaps, series verdicts) runs over what it stored,
off the import's path (``range_validator``: in-process by default, or the RPC).

Any number of processes may run imports: a claimed import is leased, renewed by a
heartbeat and by every file commit; an import whose worker died (SIGKILL) is claimed
again after its lease expires and skips every file already settled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from usdcarb.ingestion import archive
from usdcarb.ingestion.archive import ArchiveFile, FileProblem, Layout, Parsed, Source
from usdcarb.ingestion.archive_store import (
    ArchiveStore,
    FileRecord,
    ImportRecord,
    ImportStats,
    Settle,
)
from usdcarb.ingestion.domain import Bars, Rejection, timeframe_ms
from usdcarb.ingestion.leasing import claim_loop
from usdcarb.ingestion.store import LeaseLost
from usdcarb.validation.domain import model as vmodel
from usdcarb.validation.domain.validate import validate_batch

logger = logging.getLogger(__name__)


RANGE_BARS = 100_000  # bars per ValidateRange over an imported range


@dataclass(frozen=True)
class ArchiveWorkerConfig:
    concurrency: int = 2  # imports at once
    downloads: int = 8  # files downloaded ahead of the one being stored
    group_files: int = 8  # downloaded files validated and stored together
    lease_s: float = 30.0
    poll_s: float = 0.5
    attempts: int = 4  # per file, for transient download failures
    retry_base_s: float = 0.2


def source_of(rec: ImportRecord) -> Source:
    def ms(value: datetime | None, default: int) -> int:
        return default if value is None else int(value.timestamp() * 1000)

    return Source(Layout(rec.layout), rec.location, rec.exchange, rec.symbol, rec.market_id,
                  rec.timeframe, ms(rec.start_time, 0), ms(rec.end_time, 2**62),
                  archive.Granularity(rec.granularity))


def validate_group(files: list[Bars], tf_ms: int, now_ms: int
                   ) -> list[tuple[np.ndarray, tuple[Rejection, ...]]]:
    """Run the validation domain's batch rules once over consecutive whole files; return
    each file's accepted mask and rejections (indices within the file)."""
    whole = Bars.concat(files)
    vb = vmodel.Bars(whole.ts_ms, whole.open, whole.high, whole.low, whole.close, whole.volume)
    verdict = validate_batch(vb, tf_ms=tf_ms, now_ms=now_ms)
    errors = verdict.errors_by_index()
    accepted = np.asarray(verdict.accepted, bool)
    out = []
    start = 0
    for f in files:
        stop = start + len(f)
        rejections = tuple(
            Rejection(i - start, tuple(x.rule for x in errors.get(i, ())) or ("validation",),
                      errors[i][0].message if i in errors else "rejected")
            for i in (start + np.flatnonzero(~accepted[start:stop])).tolist())
        out.append((accepted[start:stop], rejections))
        start = stop
    return out


class ArchiveWorker:
    def __init__(self, store: ArchiveStore, config: ArchiveWorkerConfig,
                 *, session_factory: Any = None, range_validator: Any = None) -> None:
        self._store = store
        self._config = config
        # validate_range(exchange, symbol, timeframe, start_ms, end_ms): InProcessValidator
        # or RemoteValidator (usdcarb.ingestion.validation); None without validation.
        self._range_validator = range_validator
        self._range_tasks: set[asyncio.Task[None]] = set()
        # One range validation per series at a time (they lock the series' verdicts).
        self._range_locks: dict[tuple[str, str, str], asyncio.Lock] = {}
        self.owner = f"archive-{uuid.uuid4().hex[:12]}"
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._session_factory = session_factory
        self._session: Any = None

    def wake(self) -> None:
        self._wake.set()

    async def _http(self) -> Any:
        if self._session is None:
            import aiohttp

            self._session = (self._session_factory() if self._session_factory else
                             aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(
                                 total=300, sock_connect=10, sock_read=60)))
        return self._session

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for task in list(self._range_tasks):
            task.cancel()
        await asyncio.gather(*self._range_tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def run(self) -> None:
        # Any claim failure (the database restarting) is tried again at the next poll.
        await claim_loop(stopping=self._stopping, wake=self._wake, poll_s=self._config.poll_s,
                         room=lambda: len(self._tasks) < self._config.concurrency,
                         claim=lambda: self._store.claim(self.owner, self._config.lease_s),
                         start=self._start, transient=(Exception,), what="archive")

    def _start(self, rec: ImportRecord) -> None:
        task = asyncio.create_task(self.run_import(rec), name=f"archive-{rec.id}")
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()

    async def _heartbeat(self, rec: ImportRecord, lost: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(self._config.lease_s / 3)
            with contextlib.suppress(OSError, TimeoutError):
                if not await self._store.renew_lease(rec.id, self.owner, self._config.lease_s):
                    lost.set()
                    return

    async def run_import(self, rec: ImportRecord) -> None:
        lost = asyncio.Event()
        beat = asyncio.create_task(self._heartbeat(rec, lost))
        stats = ImportStats.of(rec.stats)
        try:
            await self._run(rec, stats, lost)
        except LeaseLost:
            logger.info("archive import %s: lease lost (cancelled or taken over)", rec.id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("archive import %s failed", rec.id)
            with contextlib.suppress(Exception):
                await self._store.finish(
                    rec, self.owner, "JOB_STATE_FAILED", stats,
                    dict(rec.progress, message=f"failed: internal error ({type(exc).__name__})"),
                    {"code": 13, "message": f"internal error ({type(exc).__name__})"})
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat

    async def _load(self, f: ArchiveFile, src: Source, tf_ms: int
                    ) -> tuple[Parsed, int, str] | FileProblem:
        session = await self._http() if archive.is_url(f.location) else None
        delay = self._config.retry_base_s
        for attempt in range(self._config.attempts):
            try:
                return await archive.load_file(f, src, session, tf_ms=tf_ms)
            except FileProblem as problem:
                if not problem.transient or attempt + 1 == self._config.attempts:
                    return problem
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    async def _run(self, rec: ImportRecord, stats: ImportStats, lost: asyncio.Event) -> None:
        src = source_of(rec)
        tf_ms = timeframe_ms(rec.timeframe)
        files = archive.plan(src)
        settled = await self._store.settled(rec.id)
        todo = [(i, f) for i, f in enumerate(files) if f.key not in settled]
        stats.values["files_total"] = len(files)
        progress = {"fraction": len(settled) / max(len(files), 1), "done": len(settled),
                    "total": len(files), "unit": "files",
                    "message": f"{len(todo)} of {len(files)} files to import"}
        await self._store.set_progress(rec, self.owner, self._config.lease_s, stats, progress)
        # A bounded window of downloads runs ahead of the file being settled: memory stays
        # at `downloads` files however long the range.
        ahead: deque[tuple[int, ArchiveFile, asyncio.Task[Any]]] = deque()
        queue = iter(todo)

        def top_up() -> None:
            while len(ahead) < self._config.downloads:
                nxt = next(queue, None)
                if nxt is None:
                    return
                ahead.append((nxt[0], nxt[1], asyncio.create_task(
                    self._load(nxt[1], src, tf_ms))))

        top_up()
        # Stages overlap: files download, unzip and parse (tasks, threads) ahead; a group
        # is validated (a thread) while the group before it is COPYing.
        committing: asyncio.Task[None] | None = None
        try:
            while ahead:
                if lost.is_set():
                    raise LeaseLost(rec.id)
                # The next file, and every later one already downloaded: validated together
                # (the rules' fixed cost is paid once per group, and spikes see the days
                # around), then settled together, in order, in one transaction.
                seq, f, task = ahead.popleft()
                group = [(seq, f, await task)]
                while ahead and ahead[0][2].done() and len(group) < self._config.group_files:
                    seq, f, task = ahead.popleft()
                    group.append((seq, f, task.result()))
                top_up()
                settle = await self._judge(group, tf_ms)
                if committing is not None:
                    await committing
                committing = asyncio.create_task(self._commit(rec, stats, progress, settle,
                                                              tf_ms))
            if committing is not None:
                await committing
                committing = None
        finally:
            for _, _, task in ahead:
                task.cancel()
            if committing is not None:
                committing.cancel()
            await asyncio.gather(*(t for _, _, t in ahead),
                                 *([committing] if committing is not None else []),
                                 return_exceptions=True)
        await self._finish(rec, stats, progress)
        if self._range_validator is not None and stats.values["bars_stored"]:
            task = asyncio.create_task(self._validate_range(rec, src, tf_ms))
            self._range_tasks.add(task)
            task.add_done_callback(self._range_tasks.discard)

    async def range_reports_done(self) -> None:
        """Wait for the range validations of finished imports (benchmarks, tests)."""
        while self._range_tasks:
            await asyncio.gather(*list(self._range_tasks), return_exceptions=True)

    async def _validate_range(self, rec: ImportRecord, src: Source, tf_ms: int) -> None:
        lock = self._range_locks.setdefault((rec.exchange, rec.symbol, rec.timeframe),
                                            asyncio.Lock())
        try:
            async with lock:
                await validate_imported(self._store, self._range_validator, rec)
        except Exception as exc:  # the bars are stored; ValidateRange can be asked later
            logger.warning("archive import %s: ValidateRange failed (%s)", rec.id, exc)

    async def _judge(self, group: list[tuple[int, ArchiveFile,
                                             tuple[Parsed, int, str] | FileProblem]],
                     tf_ms: int) -> list[Settle]:
        """Validate the group's files together (in a thread); return what to settle."""
        parts: list[Bars] = []
        counts: list[np.ndarray] = []
        for _, f, got in group:
            if isinstance(got, FileProblem):
                continue
            bars, trades = got[0].bars, got[0].trades
            inside = (bars.ts_ms >= f.start_ms) & (bars.ts_ms < f.end_ms)
            parts.append(bars if inside.all() else bars.take(inside))
            counts.append(trades if inside.all() else trades[inside])
        verdicts: list[tuple[np.ndarray, tuple[Rejection, ...]]] = []
        if parts:
            now = int(time.time() * 1000)
            verdicts = await asyncio.to_thread(validate_group, parts, tf_ms, now)
        it = iter(zip(parts, counts, verdicts, strict=True))
        out = []
        for seq, f, got in group:
            if isinstance(got, FileProblem):
                out.append(Settle(FileRecord(f.key, f.location, "FAILED",
                                             reason=got.reason.value, message=str(got),
                                             seq=seq)))
                continue
            parsed, size, digest = got
            bars, trades, (accepted, rejections) = next(it)
            good, good_trades = bars.take(accepted), trades[accepted]
            if len(good) > 1 and not (np.diff(good.ts_ms) > 0).all():
                order = np.argsort(good.ts_ms, kind="stable")
                good, good_trades = good.take(order), good_trades[order]
            rejected = bars.take(np.array([r.index for r in rejections], dtype=np.int64))
            rejects = tuple(Rejection(j, r.rules, r.reason) for j, r in enumerate(rejections))
            out.append(Settle(FileRecord(
                f.key, f.location, "STORED", bars_read=len(bars), bytes=size, sha256=digest,
                seq=seq, message=f"{parsed.unit} times{', header' if parsed.header else ''}"),
                good, rejects, rejected, good_trades))
        return out

    async def _commit(self, rec: ImportRecord, stats: ImportStats, progress: dict[str, Any],
                      settle: list[Settle], tf_ms: int) -> None:
        for s in settle:
            if s.file.state == "FAILED":
                logger.warning("archive import %s: %s: %s", rec.id, s.file.key, s.file.message)
        last = settle[-1].file
        message = (f"{last.key}: {last.message}" if last.state == "FAILED"
                   else f"{last.key}: {len(settle[-1].bars or ())} bars")
        await self._store.commit_files(
            rec=rec, owner=self.owner, lease_s=self._config.lease_s, files=settle,
            stats=stats, progress=dict(progress, message=message), tf_ms=tf_ms)

    async def _finish(self, rec: ImportRecord, stats: ImportStats,
                      progress: dict[str, Any]) -> None:
        files = await self._store.settled(rec.id)
        failed = sorted((f for f in files.values() if f.state == "FAILED"), key=lambda f: f.seq)
        v = stats.values
        summary = (f"{v['files_stored']} files stored ({v['bars_stored']} new bars, "
                   f"{v['bars_duplicate']} already stored, {v['bars_quarantined']} "
                   f"quarantined)")
        prog = dict(progress, fraction=1.0, done=len(files), total=v["files_total"])
        if failed:
            missing = all(f.reason == archive.Reason.MISSING for f in failed)
            listed = "; ".join(f"{f.key}: {f.reason}" for f in failed[:5])
            more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
            message = (f"{len(failed)} of {v['files_total']} files not imported "
                       f"({listed}{more}); {summary}")
            prog["message"] = f"failed: {message}"
            error = {"code": 5 if missing else 15, "message": message[:1000]}
            await self._store.finish(rec, self.owner, "JOB_STATE_FAILED", stats, prog, error)
        else:
            prog["message"] = f"done: {summary}"
            await self._store.finish(rec, self.owner, "JOB_STATE_SUCCEEDED", stats, prog, None)


async def validate_imported(store: ArchiveStore, validator: Any, rec: ImportRecord) -> None:
    """ValidateRange over what an import stored (its range, clipped to the stored bars),
    in windows of RANGE_BARS bars (bounded memory for years of bars): findings, gaps and
    verdicts of the imported bars. ``validator``: InProcessValidator or RemoteValidator."""
    src, tf_ms = source_of(rec), timeframe_ms(rec.timeframe)
    extent = await store.extent(rec.exchange, rec.symbol, rec.timeframe, src.start_ms,
                                src.end_ms)
    if extent is None:
        return
    lo, hi = extent[0], extent[1] + tf_ms
    step = RANGE_BARS * tf_ms
    for start in range(lo, hi, step):
        await validator.validate_range(rec.exchange, rec.symbol, rec.timeframe, start,
                                       min(hi, start + step))


def utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
