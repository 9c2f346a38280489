"""Worker slots of one replica: take jobs from the queue and see each to its outcome.

Each slot loops: claim a job (a reclaimed one first), move it to RUNNING in
PostgreSQL (counting the attempt), load its market data on the event loop (block-cache
reads are I/O), run the engine in the slot's own child process (handing it the data
through a file: handoff.py; or only its key, when that process holds these very bars from
its last job), which also encodes what is stored (finish.py), then store the outcome
and publish the last event, a domain event and (on success) the version's move to
BACKTESTED. The final event is published only once the result, its trades and its
curve are committed in one transaction. The queue entry is acknowledged only once the
outcome is stored, so a replica that dies mid-job leaves the entry pending; another slot
reclaims it after the idle timeout and the job is re-run, or FAILED with a reason once
it has used up its attempts. It is never left RUNNING.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.rpc import status_pb2

from usdcarb.backtest import convert, engine, engine_server
from usdcarb.backtest.chunks import ChunkBoard, grid_points, spans
from usdcarb.backtest.config import RunSpec, parse_config
from usdcarb.backtest.engine_server import StartMethod
from usdcarb.backtest.fingerprint import Fingerprint, config_hash
from usdcarb.backtest.finish import Stored, curves_of, stored_of, take_curves, take_trades
from usdcarb.backtest.handoff import (
    FrameRef,
    create_frame,
    discard,
    held_frame,
    remove_orphans,
)
from usdcarb.backtest.jobs import JobEntry, JobQueue, Lanes
from usdcarb.backtest.lanes import LaneInfo
from usdcarb.backtest.loading import Loaded, load_market, series_to_load
from usdcarb.backtest.marketmemo import MarketMemo
from usdcarb.backtest.model import BacktestJob, EquityColumns, JobState, SweepJob
from usdcarb.backtest.progress import ProgressBus
from usdcarb.backtest.results import (
    backtest_result,
    cross_validation_bars,
    snake,
    sweep_outcome,
    walk_forward_bars,
)
from usdcarb.backtest.store import BacktestStore
from usdcarb.backtest.strategy_client import StrategyClient
from usdcarb.backtest.worker import (
    BacktestTask,
    FrameNotHeld,
    SweepTask,
    exit_with_parent,
    progress_every,
    run_backtest_task,
    run_sweep_task,
    warm_up,
)
from usdcarb.platform.errors import DomainError
from usdcarb.platform.events import DomainEvent, publish
from usdcarb.platform.replica import ReadRouter
from usdcarb.v1 import backtest_pb2 as pb
from usdcarb.v1 import common_pb2

logger = logging.getLogger(__name__)


class TakenOver(Exception):
    """This attempt lost its job to another worker: leave the queue entry to it."""


class _EncodingFailed(Exception):
    """The engine process's stored columns could not be had (the cause says why)."""


@dataclass(frozen=True, kw_only=True)
class RunnerSettings:
    """How a replica runs jobs."""

    processes: int = 1
    max_attempts: int = 3
    market_table: str = "ingestion.market_data"
    redis_url: str = "redis://127.0.0.1:6379/0"
    progress_interval_s: float = 0.1
    heartbeat_s: float = 2.0
    max_bars: int = 20_000_000
    ready_ttl_s: float = 15.0   # a replica's readiness mark outlives it by at most this
    chunk_points: int = 250     # grid sweeps larger than this run in chunks (0: never)
    market_memo_mb: int = 256   # market data blocks kept in memory (marketmemo.py)
    held_frame_mb: int = 128    # a frame up to this size stays in its engine process for
                                # the next job over the same bars (worker.frame_of)
    # how engine processes start: forked from the engine forkserver (engine_server.py), or
    # spawned (a replica whose NUMBA_CACHE_DIR differs from the forkserver's: tests)
    engine_start: StartMethod = "forkserver"


WARM_UP_TRIES = 3
SWEEP_BLOCK_MS = 250   # a slot serving both lanes looks at the sweep lane this often


class Runner:
    """The worker slots of one replica.

    Lanes: with two slots or more, slot 0 takes only backtests and the others take a
    waiting backtest first, else a sweep; with one slot it does the same as the others.
    So a backtest never waits behind a sweep where two slots exist (the default where
    the machine has two cores).
    """

    def __init__(self, *, store: BacktestStore, bus: ProgressBus, queue: Lanes,
                 lanes: LaneInfo, strategy: StrategyClient, redis: Any,
                 settings: RunnerSettings, name: str | None = None,
                 reads: ReadRouter | None = None) -> None:
        self._store, self._bus, self._queue, self._lanes = store, bus, queue, lanes
        # Market loads: the read replica when it is healthy, else the primary.
        self._reads = reads or ReadRouter(store.pool)
        self._chunks = ChunkBoard(redis, bus.channels)
        self._memo = MarketMemo(settings.market_memo_mb << 20)
        self._strategy, self._redis, self.settings = strategy, redis, settings
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self._tasks: list[asyncio.Task[None]] = []
        self._executors: list[ProcessPoolExecutor] = []
        # per slot: the key of the frame its engine process holds (worker.frame_of)
        self._held: list[str | None] = []
        self.busy: set[str] = set()
        # Called with (stage laps, the job's create_time) after each run (telemetry).
        self.on_stages: Any = None
        self._warm = 0
        self.ready = asyncio.Event()  # set once every slot has warmed up its process
        self._stopping = False

    @property
    def backtest_slots(self) -> int:
        return self.settings.processes

    @property
    def sweep_slots(self) -> int:
        return max(1, self.settings.processes - 1)

    async def ready_check(self) -> bool:
        """Health: NOT_SERVING until every engine process has its kernels loaded."""
        return self.ready.is_set()

    async def start(self) -> None:
        await self._queue.ensure_groups()
        removed = await asyncio.to_thread(remove_orphans)
        if removed:
            logger.info("removed %d hand-off files left by engine jobs of dead processes",
                        removed)
        for i in range(self.settings.processes):
            self._executors.append(self._new_executor())
            self._held.append(None)
            self._tasks.append(asyncio.create_task(self._slot(i), name=f"backtest-slot-{i}"))
        if self.settings.processes == 0:
            self.ready.set()
        else:
            self._tasks.append(asyncio.create_task(self._beacon(), name="backtest-ready"))

    async def _beacon(self) -> None:
        """Keep this replica's readiness mark alive in Redis once its slots are warm."""
        await self.ready.wait()
        while True:
            try:
                await self._lanes.mark_ready(self.name, self.settings.ready_ttl_s)
            except Exception as exc:
                logger.warning("could not mark replica %s ready: %s", self.name, exc)
            await asyncio.sleep(self.settings.ready_ttl_s / 3)

    async def stop(self) -> None:
        """Stop taking jobs; a job in flight stays pending and is reclaimed elsewhere."""
        # The flag, not only the cancel: a cancel that lands inside a Redis call can be
        # swallowed by the client, and a slot must never claim a job after this.
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        # Bounded: shutdown must finish within the service's grace even if a slot is
        # stuck in a call that does not honour cancellation; its engine process is
        # killed below either way.
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=10.0)
            for task in stuck:
                logger.warning("worker task %s did not stop within 10 s", task.get_name())
        for executor in self._executors:
            _kill(executor)
        with contextlib.suppress(Exception):
            await self._lanes.clear_ready(self.name)

    def _new_executor(self) -> ProcessPoolExecutor:
        # Not forked from this process (it runs grpc threads); each child exits with us.
        return ProcessPoolExecutor(
            max_workers=1, mp_context=engine_server.context(self.settings.engine_start),
            initializer=exit_with_parent, initargs=(os.getpid(),))

    async def _slot(self, index: int) -> None:
        consumer = f"{self.name}-{index}"
        started = time.perf_counter()
        for attempt in range(1, WARM_UP_TRIES + 1):
            if self._stopping:
                return
            try:
                version = await _first_call(self._executors[index], warm_up)
                logger.info("worker %s ready in %.2f s (engine %s)", consumer,
                            time.perf_counter() - started, version)
                break
            except BrokenProcessPool:
                # The engine process died (killed; a cache file being rewritten by
                # another process while this one loaded it): a new one tries again.
                logger.warning("worker %s engine process died warming up (try %d of %d)",
                               consumer, attempt, WARM_UP_TRIES)
                if self._stopping:
                    return
                _kill(self._executors[index])
                self._executors[index] = self._new_executor()
                self._held[index] = None
            except Exception:
                logger.exception("worker %s warm-up failed; jobs will compile on first use",
                                 consumer)
                break
        self._warm += 1
        if self._warm == self.settings.processes:
            self.ready.set()
        while not self._stopping:
            try:
                claimed = await self._claim(index, consumer)
                if claimed is None or self._stopping:
                    continue   # (stopping: the entry stays pending for another replica)
                await self._handle(index, consumer, *claimed)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("worker %s failed to handle a job; continuing", consumer)
                await asyncio.sleep(1.0)

    async def _claim(self, index: int, consumer: str) -> tuple[JobQueue, JobEntry] | None:
        lanes = self._queue
        if self.settings.processes > 1 and index == 0:   # the backtest-only slot
            entry = await lanes.backtests.claim(consumer)
            return None if entry is None else (lanes.backtests, entry)
        # Wait on the backtest lane (a backtest starts at once), then look at the sweep
        # lane without waiting (a sweep starts within SWEEP_BLOCK_MS).
        entry = await lanes.backtests.claim(consumer, block_ms=SWEEP_BLOCK_MS)
        if entry is not None:
            return lanes.backtests, entry
        entry = await lanes.sweeps.claim(consumer, block_ms=None)
        return None if entry is None else (lanes.sweeps, entry)

    async def _handle(self, index: int, consumer: str, queue: JobQueue,
                      entry: JobEntry) -> None:
        self.busy.add(entry.job_id)
        beat = asyncio.create_task(self._heartbeat(consumer, queue, entry))
        started = time.perf_counter()
        try:
            if entry.type == "sweep":
                await self._run_sweep(index, consumer, entry)
            elif entry.type == "sweep-chunk":
                await self._run_chunk(index, consumer, entry)
            else:
                await self._run_backtest(index, consumer, entry)
            await queue.ack(entry)
            with contextlib.suppress(Exception):
                await self._lanes.record(entry.type, time.perf_counter() - started)
        except TakenOver:
            logger.warning("%s job %s was taken over by another worker; its result is "
                           "dropped here", entry.type, entry.job_id)
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            self.busy.discard(entry.job_id)

    async def _heartbeat(self, consumer: str, queue: JobQueue, entry: JobEntry) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            try:
                await queue.heartbeat(consumer, entry)
            except Exception as exc:
                logger.warning("heartbeat of %s failed: %s", entry.job_id, exc)

    async def _execute(self, index: int, fn: Callable[[Any], Any], task: Any) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executors[index], fn, task)
        except BrokenProcessPool as exc:
            # The child died (killed, out of memory): replace it so the slot lives on.
            _kill(self._executors[index])
            self._executors[index] = self._new_executor()
            self._held[index] = None
            raise DomainError("the engine process stopped unexpectedly (killed or out of "
                              "memory): expected a result, got none", reason="WORKER_LOST") from exc

    # -- backtests ------------------------------------------------------------------
    async def _run_backtest(self, index: int, consumer: str, entry: JobEntry) -> None:
        s = self.settings
        job, run = await self._store.start_backtest(
            entry.job_id, consumer, s.max_attempts,
            convert.lost_worker_error(s.max_attempts, s.max_attempts))
        if job is None:
            return
        if not run:
            await self._ensure_final_backtest(job)
            return
        name = job.name
        if await self._bus.cancel_requested(job.id):
            await self._end_backtest(job, JobState.CANCELLED, None)
            return
        await self._bus.publish(job.id, pb.BacktestEvent(
            backtest=name, state=common_pb2.JOB_STATE_RUNNING,
            progress=pb.BacktestProgress(progress=common_pb2.Progress(
                unit="bars", message=f"attempt {job.attempts}: loading market data")),
        ).SerializeToString())
        clock = _Stages()
        try:
            spec = self._spec(job.config, job.strategy_kind, job.parameters)
            loaded, ref = await self._load(index, job.strategy_kind, job.parameters, spec)
            bars = len(loaded.frame)
            clock.lap("load")
            try:
                fin, elapsed = await self._engine(index, run_backtest_task, BacktestTask(
                    job_id=job.id, kind=job.strategy_kind, params=job.parameters,
                    config=spec.engine, market=ref, redis_url=s.redis_url,
                    channels=self._bus.channels, progress_every=progress_every(bars),
                    min_interval_s=s.progress_interval_s, keep_frame=bool(ref.key)),
                    loaded)
            except BaseException:
                discard(ref)
                raise
        except engine.Cancelled:
            await self._end_backtest(job, JobState.CANCELLED, None)
            return
        except Exception as exc:
            await self._fail_backtest(job, exc)
            return
        # process: the hand-off to the engine process and back with the trade columns;
        # engine: the engine's own time in it
        clock.lap("process", engine=elapsed)
        # The engine process goes on encoding the curve columns while the trades are
        # stored; they are written as soon as they are there (store.succeed_backtest),
        # and the final event's curve, reduced meanwhile, comes with the next call.
        columns = asyncio.ensure_future(self._execute(index, stored_of, ref.path))
        collect = asyncio.ensure_future(self._execute(index, curves_of, ref.path))
        made: list[Stored] = []
        curves: asyncio.Future[EquityColumns] | None = None

        async def equity() -> EquityColumns:
            try:
                made.append(await columns)
                return await asyncio.to_thread(take_curves, ref, fin, made[0])
            except Exception as exc:
                raise _EncodingFailed() from exc

        try:
            # the stored columns, mapped (valid after the files are discarded)
            try:
                trades = await asyncio.to_thread(take_trades, ref, fin)
            except Exception as exc:
                raise _EncodingFailed() from exc
            out = fin.output
            fp = Fingerprint(strategy_version_id=job.strategy_version.rsplit("/", 1)[-1],
                             data_snapshot_hash=loaded.snapshot_hash,
                             config_hash=config_hash(spec.canonical),
                             engine_version=out.engine_version)
            result = backtest_result(out, bars=bars, fingerprint=pb.Fingerprint(
                **snake(fp.to_dict())), elapsed=elapsed, trade_count=fin.trade_count)
            curves = asyncio.ensure_future(equity())
            stored = await self._store.succeed_backtest(
                job, result=convert.to_json(result), digest=fp.digest, trades=trades,
                equity=curves)
        except _EncodingFailed as exc:
            await self._fail_backtest(job, exc.__cause__ or exc)
            return
        finally:
            with contextlib.suppress(Exception):
                await columns
            with contextlib.suppress(Exception):
                await collect   # the engine process is done with the files
            if curves is not None:   # (not awaited by a store finding the job taken over)
                with contextlib.suppress(Exception):
                    await curves
            discard(ref)
        if not stored:
            raise TakenOver(job.id)
        # encode: the stored curve columns, in the engine process from the engine's end
        # to their file written (beside the process and store stages)
        clock.seconds["encode"] = round(made[0].seconds, 4)
        try:
            curve = pb.EquityCurve.FromString((await collect).curve)
        except Exception:   # (stored and committed: the event goes out without it)
            logger.exception("backtest %s: the final event's curve could not be had",
                             job.id)
            curve = pb.EquityCurve()
        clock.lap("store")
        final = pb.BacktestEvent(
            backtest=name, state=common_pb2.JOB_STATE_SUCCEEDED,
            completed=pb.BacktestCompleted(
                outcome=convert.outcome(JobState.SUCCEEDED, None), result=result,
                equity_curve=curve))
        await self._publish_final_backtest(job.id, final)
        clock.lap("publish")
        logger.info("backtest %s of %d bars: %s", job.id, bars, clock,
                    extra={"stages": clock.seconds})
        if self.on_stages is not None:
            self.on_stages(clock.seconds, job.create_time)
        m = out.metrics
        await self._domain_event("EVENT_TYPE_BACKTEST_SUCCEEDED", name, (
            f"backtest of {job.strategy_version} succeeded: total return "
            f"{convert.metric_value(m, 'total_return'):.4%}, "
            f"{int(convert.metric_value(m, 'round_trips') or 0)} round trips"),
            "SEVERITY_INFO", {"strategyVersion": job.strategy_version,
                              "fingerprint": fp.digest, "bars": bars,
                              "totalReturn": convert.metric_value(m, "total_return"),
                              "sharpe": convert.metric_value(m, "sharpe")})
        creator = job.creator or "an anonymous caller"
        await self._strategy.mark_backtested(
            job.strategy_version, f"{name} (run by {creator}) succeeded")

    async def _load(self, index: int, kind: str, params: dict[str, Any], spec: RunSpec,
                    ) -> tuple[Loaded, FrameRef]:
        """Read the markets the run trades and those pricing its assets (as of now)
        straight into a frame file the engine process maps (the caller discards it); or,
        when slot ``index``'s engine process holds these very bars already (the frame of
        its last job), only check and hash them and send it their key (``held``)."""
        table = self.settings.market_table
        keys = await series_to_load(self._store.pool, kind, params, spec.engine,
                                    timeframe=spec.timeframe, start=spec.start, end=spec.end,
                                    table=table)
        made: list[FrameRef] = []

        def buffers(bars: int, k: int) -> tuple[Any, Any, Any]:
            ref, time_ms, closes, volumes = create_frame(bars, keys)
            made.append(ref)
            return time_ms, closes, volumes

        held = self._held[index]
        try:
            loaded = await load_market(self._reads, keys, timeframe=spec.timeframe,
                                       timeframe_ms=spec.timeframe_ms, start_ms=spec.start_ms,
                                       end_ms=spec.end_ms, table=table,
                                       memo=self._memo, buffers=buffers,
                                       held=lambda key: key == held)
        except BaseException:
            for ref in made:
                discard(ref)
            raise
        keep = 8 * len(loaded.frame) * (1 + 2 * len(keys)) <= self.settings.held_frame_mb << 20
        if not loaded.placed:
            return loaded, held_frame(len(loaded.frame), keys, loaded.snapshot_hash)
        return loaded, dataclasses.replace(made[0], key=loaded.snapshot_hash if keep else "")

    async def _engine(self, index: int, fn: Callable[[Any], Any], task: Any,
                      loaded: Loaded) -> Any:
        """Run ``task`` in slot ``index``'s engine process, which keeps the frame (when it
        has a key) for the next job over the same bars. A frame sent by key that the
        process turns out not to hold is written into the job's file and sent after all
        (the same file name: the caller's ``discard`` still removes everything)."""
        ref: FrameRef = task.market
        self._held[index] = None   # until the process has answered with the new frame
        try:
            out = await self._execute(index, fn, task)
        except FrameNotHeld:
            assert loaded.place is not None

            def buffers(bars: int, k: int) -> tuple[Any, Any, Any]:
                _, time_ms, closes, volumes = create_frame(bars, ref.series, held=ref)
                return time_ms, closes, volumes

            await loaded.place(buffers)
            ref = dataclasses.replace(ref, held=False)
            out = await self._execute(index, fn, dataclasses.replace(task, market=ref))
        self._held[index] = ref.key or None
        return out

    def _spec(self, config: dict[str, Any], kind: str, params: dict[str, Any]) -> RunSpec:
        cfg = json_format.ParseDict(config, pb.BacktestConfig())
        return parse_config(cfg, engine.required_series(kind, params),
                            max_bars=self.settings.max_bars)

    async def _fail_backtest(self, job: BacktestJob, exc: BaseException) -> None:
        if not isinstance(exc, DomainError | ValueError):
            logger.error("backtest %s failed unexpectedly", job.id, exc_info=exc)
        status = convert.error_status(exc, f"backtests/{job.id}")
        await self._end_backtest(job, JobState.FAILED, status)

    async def _end_backtest(self, job: BacktestJob, state: JobState,
                            status: status_pb2.Status | None) -> None:
        ended = await self._store.end_backtest(
            job.id, state, None if status is None else convert.status_to_json(status),
            worker=job.worker, attempts=job.attempts)
        if ended is None:
            return
        await self._publish_final_backtest(job.id, convert.final_backtest_event(ended))
        if state == JobState.FAILED:
            await self._domain_event(
                "EVENT_TYPE_BACKTEST_FAILED", ended.name,
                f"backtest of {ended.strategy_version} failed: "
                f"{status.message if status else ''}", "SEVERITY_WARNING",
                {"strategyVersion": ended.strategy_version,
                 "code": status.code if status else 0})

    async def _ensure_final_backtest(self, job: BacktestJob) -> None:
        """Publish the last event of a job that ended without one (attempts used up)."""
        latest = await self._bus.latest(job.id)
        if latest is not None and pb.BacktestEvent.FromString(latest[1]).HasField("completed"):
            return
        await self._publish_final_backtest(job.id, convert.final_backtest_event(job))
        if job.state == JobState.FAILED:
            await self._domain_event(
                "EVENT_TYPE_BACKTEST_FAILED", job.name,
                f"backtest of {job.strategy_version} failed: worker lost", "SEVERITY_WARNING",
                {"strategyVersion": job.strategy_version, "reason": "WORKER_LOST"})
        elif job.state == JobState.SUCCEEDED:
            # Its worker stored the result, then could not publish (Redis restarting):
            # without this its notification was lost (issue 19's soak). The event's key
            # is the same as the worker's, so had it gone out it would count once.
            await self._domain_event(
                "EVENT_TYPE_BACKTEST_SUCCEEDED", job.name,
                f"backtest of {job.strategy_version} succeeded", "SEVERITY_INFO",
                {"strategyVersion": job.strategy_version, "reason": "TAKEN_OVER"})

    async def _publish_final_backtest(self, job_id: str, event: pb.BacktestEvent) -> None:
        seq = await self._bus.publish(job_id, event.SerializeToString())
        await self._store.set_last_sequence("backtests", job_id, seq)

    async def _domain_event(self, type_: str, subject: str, summary: str, severity: str,
                            data: dict[str, Any]) -> None:
        # One key per job and ending: a worker that takes a job over and publishes its
        # ending again makes the same event for consumers (one delivery per subscription).
        try:
            await publish(self._redis, DomainEvent(type=type_, source="backtest",
                                                   subject=subject, summary=summary,
                                                   severity=severity, data=data,
                                                   key=f"{subject}:{type_}"))
        except Exception as exc:
            logger.warning("could not publish %s for %s: %s", type_, subject, exc)

    # -- sweeps ---------------------------------------------------------------------
    async def _run_sweep(self, index: int, consumer: str, entry: JobEntry) -> None:
        s = self.settings
        job, run = await self._store.start_sweep(
            entry.job_id, consumer, s.max_attempts,
            convert.lost_worker_error(s.max_attempts, s.max_attempts))
        if job is None:
            return
        if not run:
            latest = await self._bus.latest(job.id)
            if latest is None or not pb.SweepEvent.FromString(latest[1]).HasField("outcome"):
                await self._publish_final_sweep(job.id, convert.final_sweep_event(job))
                if job.state == JobState.SUCCEEDED:  # as _ensure_final_backtest does
                    await self._domain_event(
                        "EVENT_TYPE_SWEEP_FINISHED", job.name,
                        f"sweep of {job.strategy_version} finished", "SEVERITY_INFO",
                        {"strategyVersion": job.strategy_version, "objective": job.objective,
                         "best": (job.points or [])[:3]})
            return
        if await self._bus.cancel_requested(job.id):
            await self._end_sweep(job, JobState.CANCELLED, None)
            return
        grid = {a["path"]: [float(v) for v in a["values"]] for a in job.axes}
        if (not job.walk_forward and not job.cross_validation
                and 0 < s.chunk_points < grid_points(grid)):
            await self._split_sweep(job, grid_points(grid))
            return
        await self._bus.publish(job.id, pb.SweepEvent(
            sweep=job.name, state=common_pb2.JOB_STATE_RUNNING,
            progress=common_pb2.Progress(message=f"attempt {job.attempts}: loading market data"),
        ).SerializeToString())
        try:
            spec = self._spec(job.config, job.strategy_kind, job.parameters)
            wf = walk_forward_bars(job.walk_forward, spec) if job.walk_forward else None
            cv = (cross_validation_bars(job.cross_validation, spec) if job.cross_validation
                  else None)
            axes = {a["path"]: [float(v) for v in a["values"]] for a in job.axes}
            loaded, ref = await self._load(index, job.strategy_kind, job.parameters, spec)
            try:
                found = await self._engine(index, run_sweep_task, SweepTask(
                    job_id=job.id, kind=job.strategy_kind, params=job.parameters, axes=axes,
                    config=spec.engine, market=ref, objective=job.objective,
                    walk_forward=wf, redis_url=s.redis_url, channels=self._bus.channels,
                    min_interval_s=s.progress_interval_s, cross_validation=cv,
                    keep_frame=bool(ref.key)), loaded)
            finally:
                discard(ref)
        except engine.Cancelled as exc:
            points, folds = self._finished(job, exc.partial, loaded.frame.time_ms, spec)
            await self._end_sweep(job, JobState.CANCELLED, None, points=points, folds=folds)
            return
        except Exception as exc:
            if not isinstance(exc, DomainError | ValueError):
                logger.error("sweep %s failed unexpectedly", job.id, exc_info=exc)
            await self._end_sweep(job, JobState.FAILED,
                                  convert.error_status(exc, f"sweeps/{job.id}"))
            return
        await self._succeed_sweep(job, found, loaded.frame.time_ms, spec)

    async def _succeed_sweep(self, job: SweepJob, found: Sequence[Any], times: Any,
                             spec: RunSpec | None) -> None:
        spec = spec or self._spec(job.config, job.strategy_kind, job.parameters)
        points, folds, analysis = sweep_outcome(job, found, times, spec,
                                                spec.engine.periods_per_year)
        unit, total = (("folds", len(found)) if job.walk_forward or job.cross_validation
                       else ("combinations", len(found)))
        progress = convert.to_json(common_pb2.Progress(fraction=1.0, done=total, total=total,
                                                       unit=unit, message="done"))
        if not await self._store.succeed_sweep(job, points=points, folds=folds,
                                               progress=progress, analysis=analysis):
            raise TakenOver(job.id)
        ended = await self._store.get_sweep(job.id)
        await self._publish_final_sweep(job.id, convert.final_sweep_event(ended))
        # The summary a notification reports: the best points, or each fold's
        # out-of-sample result of a walk-forward.
        summary: dict[str, Any] = {"strategyVersion": job.strategy_version, unit: total,
                                   "objective": job.objective, "best": points[:3]}
        if folds:
            summary["outOfSample"] = [
                {"index": f.get("index"), "chosenParameters": f.get("chosenParameters"),
                 "metrics": f.get("outOfSampleMetrics")} for f in folds[:20]]
        await self._domain_event(
            "EVENT_TYPE_SWEEP_FINISHED", job.name,
            f"sweep of {job.strategy_version} finished: {total} {unit}", "SEVERITY_INFO",
            summary)

    # -- sweeps in chunks (chunks.py) ---------------------------------------------
    async def _split_sweep(self, job: SweepJob, total: int) -> None:
        parts = spans(total, self.settings.chunk_points)
        await self._chunks.open(job.id, job.attempts, len(parts))
        for lo, hi in parts:
            await self._queue.sweeps.enqueue("sweep-chunk", job.id, lo=str(lo), hi=str(hi),
                                             attempt=str(job.attempts))
        await self._bus.publish(job.id, pb.SweepEvent(
            sweep=job.name, state=common_pb2.JOB_STATE_RUNNING,
            progress=common_pb2.Progress(
                done=0, total=total, unit="combinations",
                message=f"attempt {job.attempts}: {len(parts)} chunks of up to "
                        f"{self.settings.chunk_points} combinations queued")).SerializeToString())

    async def _run_chunk(self, index: int, consumer: str, entry: JobEntry) -> None:
        s = self.settings
        lo, hi = int(entry.fields["lo"]), int(entry.fields["hi"])
        attempt = int(entry.fields["attempt"])
        job = await self._store.get_sweep(entry.job_id)
        if job.state != JobState.RUNNING or job.attempts != attempt:
            return   # the sweep ended, or a later attempt re-split it
        grid = {a["path"]: [float(v) for v in a["values"]] for a in job.axes}
        found: list[Any] = []
        if not await self._bus.cancel_requested(job.id):
            try:
                spec = self._spec(job.config, job.strategy_kind, job.parameters)
                loaded, ref = await self._load(index, job.strategy_kind, job.parameters, spec)
                try:
                    found = await self._engine(index, run_sweep_task, SweepTask(
                        job_id=job.id, kind=job.strategy_kind, params=job.parameters,
                        axes=grid, config=spec.engine, market=ref, objective=job.objective,
                        walk_forward=None, redis_url=s.redis_url, channels=self._bus.channels,
                        min_interval_s=s.progress_interval_s, span=(lo, hi),
                        keep_frame=bool(ref.key)), loaded)
                finally:
                    discard(ref)
            except engine.Cancelled as exc:
                found = list(exc.partial)
            except Exception as exc:
                if not isinstance(exc, DomainError | ValueError):
                    logger.error("sweep %s chunk %d failed unexpectedly", job.id, lo,
                                 exc_info=exc)
                await self._end_sweep(job, JobState.FAILED,
                                      convert.error_status(exc, f"sweeps/{job.id}"))
                return
        counted = await self._chunks.put(job.id, attempt, lo, found, consumer)
        if counted is None:
            return
        left, done = counted
        total = grid_points(grid)
        await self._bus.publish(job.id, pb.SweepEvent(
            sweep=job.name, state=common_pb2.JOB_STATE_RUNNING,
            progress=common_pb2.Progress(fraction=done / total, done=done, total=total,
                                         unit="combinations", message="sweeping in chunks"),
        ).SerializeToString())
        cancelled = await self._bus.cancel_requested(job.id)
        if left > 0 and not cancelled:
            return
        # The last span merges; on a cancel the first span to see it ends the sweep at
        # once with the points finished so far (its own partial ones included), so a
        # cancel never waits for the queued spans to drain (they find the sweep ended).
        merged, _by = await self._chunks.take(job.id, attempt)
        if cancelled or len(merged) < total:
            points, folds = self._finished(job, merged, None, None)
            await self._end_sweep(job, JobState.CANCELLED, None, points=points, folds=folds)
            return
        await self._succeed_sweep(job, merged, None, None)

    @staticmethod
    def _finished(job: SweepJob, found: Sequence[Any], times: Any, spec: RunSpec | None,
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Stored form of finished points (ranked best first) or folds."""
        points, folds, _ = sweep_outcome(job, found, times, spec, 1.0)
        return points, folds

    async def _end_sweep(self, job: SweepJob, state: JobState,
                         status: status_pb2.Status | None, *,
                         points: list[dict[str, Any]] | None = None,
                         folds: list[dict[str, Any]] | None = None) -> None:
        # The stored progress is the queued snapshot (running progress only goes through
        # Redis): keep where the sweep stopped, so its last event and GetSweep say so.
        latest = await self._bus.latest(job.id)
        reached = None if latest is None else pb.SweepEvent.FromString(latest[1]).progress
        ended = await self._store.end_sweep(
            job.id, state, None if status is None else convert.status_to_json(status),
            worker=job.worker, attempts=job.attempts,
            progress=convert.to_json(reached) if reached and reached.total else None,
            points=points, folds=folds)
        if ended is not None:
            await self._publish_final_sweep(job.id, convert.final_sweep_event(ended))

    async def _publish_final_sweep(self, job_id: str, event: pb.SweepEvent) -> None:
        seq = await self._bus.publish(job_id, event.SerializeToString())
        await self._store.set_last_sequence("sweeps", job_id, seq)


class _Stages:
    """Wall time of a job's stages, for the log (``process`` = hand-off + ``engine``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str, **inner: float) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(now - self._last, 4)
        self.seconds.update({k: round(v, 4) for k, v in inner.items()})
        self._last = now

    def __str__(self) -> str:
        return ", ".join(f"{k} {v:.3f}s" for k, v in self.seconds.items())


async def _first_call(executor: ProcessPoolExecutor, fn: Callable[[], Any]) -> Any:
    """``fn()`` in ``executor``, submitted from a thread of its own: a new executor starts
    its process inside ``submit``, and a forkserver still loading the engine (or compiling
    it, on an empty cache) holds that call until it forks. A daemon thread, not the loop's
    default executor, which a stopping service would wait for."""
    submitted: Future[Any] = Future()   # -> the call's own future

    def submit() -> None:
        # (InvalidStateError: the awaiting task was cancelled meanwhile, the runner stopped)
        try:
            call = executor.submit(fn)
        except BaseException as exc:
            with contextlib.suppress(InvalidStateError):
                submitted.set_exception(exc)
            return
        with contextlib.suppress(InvalidStateError):
            submitted.set_result(call)

    threading.Thread(target=submit, name="engine-start", daemon=True).start()
    call: Future[Any] = await asyncio.wrap_future(submitted)
    return await asyncio.wrap_future(call)


def _kill(executor: ProcessPoolExecutor) -> None:
    # The executor API cannot stop a running call; its processes are ours to end.
    processes = dict(getattr(executor, "_processes", None) or {})
    for process in processes.values():
        with contextlib.suppress(Exception):
            process.kill()
    executor.shutdown(wait=False, cancel_futures=True)
