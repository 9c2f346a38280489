"""Paper runs in the backtest service: the API (start, read, page, watch) and the
supervisor that runs each RUNNING paper run on some replica.

Why here: the backtest service owns the engine and the schema the runs are stored in,
and its replicas are the ones sized for engine work; the strategy service only records
deployments. Every replica runs a supervisor: it takes over any RUNNING run whose lease
is free or expired (``PaperRunner.claim``) and follows it until the run stops, its
deployment is no longer ACTIVE (checked with the strategy service), or its lease is lost.
Everything a reader needs is in PostgreSQL, so any replica serves the reads and watches.
The holder of a run also keeps its ingestion follow jobs, one per market (``paper.follow``),
on a task of their own; a run that stops has them cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import grpc

from usdcarb.backtest import convert
from usdcarb.backtest.engine import required_series
from usdcarb.backtest.ingestion_client import IngestionUnavailable
from usdcarb.backtest.loading import series_to_load
from usdcarb.backtest.paper.follow import FollowJob, FollowJobs
from usdcarb.backtest.paper.runner import PaperRunner, paper_spec
from usdcarb.backtest.paper.tracking import PaperTracker, check_bound
from usdcarb.backtest.strategy_client import StrategyClient
from usdcarb.platform import db, events, paging
from usdcarb.platform.errors import FailedPrecondition, InvalidArgument, NotFound
from usdcarb.platform.events import DomainEvent
from usdcarb.platform.ownership import require_owner
from usdcarb.v1 import backtest_pb2 as pb
from usdcarb.v1 import common_pb2

log = logging.getLogger("usdcarb.backtest.paper")
SUFFIX = "/paperRun"
# Ingestion or the database could not answer now: the next look retries.
_RETRY_LATER: tuple[type[BaseException], ...] = (IngestionUnavailable, *db.UNAVAILABLE)
STATES = {"RUNNING": pb.PAPER_RUN_STATE_RUNNING, "STOPPED": pb.PAPER_RUN_STATE_STOPPED,
          "FAILED": pb.PAPER_RUN_STATE_FAILED}


def deployment_of(name: str, field: str = "name") -> str:
    """"strategies/{s}/deployments/{d}/paperRun" → "strategies/{s}/deployments/{d}"."""
    parts = name.split("/")
    if (len(parts) != 5 or parts[0] != "strategies" or parts[2] != "deployments"
            or parts[4] != "paperRun" or not parts[1] or not parts[3]):
        raise InvalidArgument.for_field(
            field, "'strategies/{strategy}/deployments/{deployment}/paperRun'", name)
    return "/".join(parts[:4])


def run_to_pb(row: asyncpg.Record) -> pb.PaperRun:
    out = pb.PaperRun(
        name=row["deployment"] + SUFFIX, strategy_version=row["strategy_version"],
        config=pb.BacktestConfig.FromString(row["config"]), state=STATES[row["state"]],
        bars=row["bars"], equity=row["equity"] or 0.0, fills=row["fills"],
        late_bars=row["late_bars"],
        sequence=row["bars"] + (0 if row["state"] == "RUNNING" else 1))
    if row["bars"]:
        out.last_bar_time.CopyFrom(convert.timestamp(
            row["start_ms"] + (row["bars"] - 1) * row["bar_ms"]))
    for venue, asset, amount in row["balances"] or []:
        out.balances.append(pb.PaperBalance(venue=venue, asset=asset,
                                            amount=amount if amount is not None else 0.0))
    if row["metrics"]:
        out.metrics.CopyFrom(convert.metrics_to_pb(row["metrics"]))
    out.create_time.CopyFrom(convert.timestamp(row["create_time"]))
    out.update_time.CopyFrom(convert.timestamp(row["update_time"]))
    if row["state"] == "STOPPED":
        out.outcome.CopyFrom(common_pb2.Outcome(result=common_pb2.Outcome.RESULT_OK))
    elif row["state"] == "FAILED":
        error = convert.status_from_json(row["error"])
        out.outcome.CopyFrom(common_pb2.Outcome(result=common_pb2.Outcome.RESULT_FAILED))
        if error is not None:
            out.outcome.error.CopyFrom(error)
    return out


class PaperService:
    """Paper runs of a backtest replica (``pool``: the service's, ``reads``: market data)."""

    def __init__(self, pool: asyncpg.Pool, strategy: StrategyClient, *, market_table: str,
                 replica: str, reads: Any = None, lease_s: float = 15.0,
                 poll_s: float = 0.25, active_check_s: float = 2.0,
                 max_runs: int = 200, redis: Any = None,
                 divergence_check_s: float = 5.0, follow_jobs: FollowJobs | None = None,
                 follow_check_s: float = 5.0) -> None:
        self._pool = pool
        self._reads = reads or pool
        self._strategy = strategy
        self._table = market_table
        self.runner = PaperRunner(pool, market_table=market_table, replica=replica,
                                  lease_s=lease_s, poll_s=poll_s, is_active=self._active,
                                  on_event=None if redis is None else self._publish)
        self._redis = redis
        # divergence reports, and the bound check of the runs this replica follows; bars
        # read from the primary, as the runner reads them (a lagging read replica would
        # show the newest bars as gaps)
        self.tracker = PaperTracker(pool, market_table=market_table, emit=self.runner.emit)
        self._divergence_check_s = divergence_check_s
        self._monitor_task: asyncio.Task[None] | None = None
        self._active_check_s = active_check_s
        self._checked: dict[str, tuple[float, bool]] = {}
        self._max_runs = max_runs
        # Ingestion follow jobs of the runs (None: no ingestion service is configured;
        # the runs follow whatever bars are stored).
        self.follow_jobs = follow_jobs
        self._follow_check_s = follow_check_s
        self._follow_checked: dict[str, float] = {}
        self._orphans_checked = -math.inf
        self._jobs_task: asyncio.Task[None] | None = None
        self._tasks: dict[str, asyncio.Task[str]] = {}
        self._stop = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    # -- API ---------------------------------------------------------------------------
    async def start_run(self, *, name: str, config: pb.BacktestConfig, stale_after_bars: int,
                        creator: str, max_divergence: float = 0.0) -> pb.PaperRun:
        deployment = deployment_of(name)
        d = await self._strategy.deployment(deployment)
        require_owner(d.owner, resource=name)
        if d.environment == "DEPLOYMENT_ENVIRONMENT_LIVE":
            raise FailedPrecondition(
                [("DEPLOYMENT", deployment, "a LIVE deployment is never traded here: this "
                  "platform handles no exchange credentials and sends no order")],
                reason="LIVE_TRADING_UNSUPPORTED")
        if d.state != "DEPLOYMENT_STATE_ACTIVE":
            raise FailedPrecondition(
                [("DEPLOYMENT", deployment, f"expected an ACTIVE deployment, got {d.state}")],
                reason="DEPLOYMENT_NOT_ACTIVE")
        existing = await self._row(deployment)
        if existing is not None:
            return run_to_pb(existing)
        version = await self._strategy.resolve(d.version, field="deployment.version")
        stale = stale_after_bars or 2
        if not 1 <= stale <= 1440:
            raise InvalidArgument.for_field("stale_after_bars", "from 1 to 1440", stale)
        check_bound(max_divergence)
        spec = paper_spec(config, required_series(version.kind, version.parameters))
        keys = await series_to_load(self._reads, version.kind, version.parameters,
                                    spec.engine, timeframe=spec.timeframe, start=spec.start,
                                    end=spec.end, table=self._table)
        created = await self.runner.create(
            deployment=deployment, strategy_version=version.name, kind=version.kind,
            params=version.parameters, config=config, keys=keys, stale_after_bars=stale,
            creator=creator)
        if created:
            await self.tracker.set_bound(deployment, max_divergence)
        row = await self._row(deployment)
        assert row is not None
        if created:
            await self._changed(deployment, f"{name} of {version.name} started on "
                                f"{', '.join(f'{v}:{s}' for v, s in keys)}", "SEVERITY_INFO")
        return run_to_pb(row)

    async def _publish(self, event: DomainEvent) -> None:
        await events.publish(self._redis, event)

    async def _changed(self, deployment: str, summary: str, severity: str) -> None:
        await self.runner.emit(DomainEvent(
            type="EVENT_TYPE_DEPLOYMENT_CHANGED", source="backtest",
            subject=deployment + SUFFIX, summary=summary, severity=severity,
            data={"deployment": deployment}))

    async def _row(self, deployment: str) -> asyncpg.Record | None:
        return await self._pool.fetchrow(
            "SELECT * FROM paper_runs WHERE deployment = $1", deployment)

    async def get_run(self, name: str) -> pb.PaperRun:
        deployment = deployment_of(name)
        row = await self._row(deployment)
        if row is None:
            raise NotFound("paper run", name, reason="PAPER_RUN_NOT_FOUND")
        return run_to_pb(row)

    async def list_fills(self, parent: str, page_size: int,
                         page_token: str) -> pb.ListPaperFillsResponse:
        deployment = deployment_of(parent, "parent")
        await self.get_run(parent)
        size = paging.page_size(page_size, default=500, maximum=10_000)
        filters = {"parent": parent}
        key = paging.decode_token(page_token, filters)
        rows = await self._pool.fetch(
            """SELECT * FROM paper_fills WHERE deployment = $1 AND seq > $2
               ORDER BY seq LIMIT $3""", deployment, int(key[0]) if key else -1, size + 1)
        fills = [pb.Trade(
            time=convert.timestamp(r["time_ms"]), venue=r["venue"], symbol=r["symbol"],
            side=pb.SIDE_BUY if r["side"] > 0 else pb.SIDE_SELL, quantity=r["quantity"],
            price=r["price"], fee=r["fee"], slippage=r["slippage"],
            round_trip=r["round_trip"], signal_bar=r["signal_bar"],
            signal_edge_bps=r["signal_edge_bps"]) for r in rows[:size]]
        token = paging.encode_token([rows[size - 1]["seq"]], filters) if len(rows) > size else ""
        return pb.ListPaperFillsResponse(fills=fills, next_page_token=token)

    async def list_equity(self, parent: str, page_size: int,
                          page_token: str) -> pb.ListPaperEquityResponse:
        deployment = deployment_of(parent, "parent")
        await self.get_run(parent)
        size = paging.page_size(page_size, default=1000, maximum=50_000)
        filters = {"parent": parent}
        key = paging.decode_token(page_token, filters)
        rows = await self._pool.fetch(
            """SELECT bar, time_ms, equity, drawdown, exposure, missing FROM paper_bars
               WHERE deployment = $1 AND bar > $2 ORDER BY bar LIMIT $3""",
            deployment, int(key[0]) if key else -1, size + 1)
        points = [pb.PaperEquityPoint(time=convert.timestamp(r["time_ms"]), equity=r["equity"],
                                      drawdown=r["drawdown"], exposure=r["exposure"],
                                      missing=list(r["missing"])) for r in rows[:size]]
        token = paging.encode_token([rows[size - 1]["bar"]], filters) if len(rows) > size else ""
        return pb.ListPaperEquityResponse(points=points, next_page_token=token)

    async def watch_run(self, name: str, after_sequence: int,
                        interval_s: float = 0.2) -> AsyncIterator[pb.PaperRun]:
        """The run's state whenever its sequence moves past ``after_sequence``; ends once
        the run has stopped (read from PostgreSQL: any replica serves it)."""
        last = after_sequence
        first = True
        while True:
            run = await self.get_run(name)
            sent = False
            if run.sequence > last or (first and after_sequence == 0):
                last = run.sequence
                sent = True
                yield run
            first = False
            if run.state != pb.PAPER_RUN_STATE_RUNNING:
                if not sent:
                    yield run   # a finished run: its final state at once
                return
            await asyncio.sleep(interval_s)

    # -- supervisor ----------------------------------------------------------------------
    async def _active(self, deployment: str) -> bool:
        now = time.monotonic()
        seen = self._checked.get(deployment)
        if seen is not None and now - seen[0] < self._active_check_s:
            return seen[1]
        try:
            d = await self._strategy.deployment(deployment)
            active = d.state == "DEPLOYMENT_STATE_ACTIVE"
        except NotFound:
            active = False
        except (grpc.aio.AioRpcError, Exception) as exc:  # the strategy service is down:
            log.warning("deployment %s not checked: %s", deployment, exc)  # keep running
            active = True
        self._checked[deployment] = (now, active)
        return active

    async def _follow(self, deployment: str) -> str:
        try:
            why = await self.runner.follow(deployment, self._stop)
            if why == "deployment stopped":
                await self._changed(deployment, f"{deployment}{SUFFIX} stopped with its "
                                    "deployment", "SEVERITY_INFO")
        except Exception as exc:
            if self._stop.is_set():   # shutting down (the pool may be closing): the run
                log.info("paper run %s left on shutdown: %s", deployment, exc)  # stays
                return "replica shutting down"                            # RUNNING
            if isinstance(exc, db.UNAVAILABLE):
                # The database cannot answer now (restart, failover): a pause, not a
                # failure. The run stays RUNNING under this replica's lease; the
                # supervisor claims it again (``claimable``) once the database answers,
                # and it resumes from its last committed bar (a bar commits whole or not
                # at all, so none is processed twice or skipped).
                log.warning("paper run %s paused, the database is unavailable: %s",
                            deployment, exc)
                return "paused: database unavailable"
            log.exception("paper run %s failed", deployment)
            await self.runner.stop(deployment, failed=convert.status_to_json(
                convert.error_status(exc)))
            why = f"failed: {exc}"
            await self._changed(deployment, f"{deployment}{SUFFIX} failed: {exc}",
                                "SEVERITY_ERROR")
        if why == "deployment stopped" or why.startswith(("failed", "run ")):
            await self._unfollow(deployment)
        log.info("paper run %s on %s: %s", deployment, self.runner.replica, why)
        return why

    # -- follow jobs -------------------------------------------------------------------
    async def _unfollow(self, deployment: str) -> None:
        """Cancel the stopped run's follow jobs now (else the next orphan check does)."""
        self._follow_checked.pop(deployment, None)
        if self.follow_jobs is None:
            return
        try:
            stopped = await self.follow_jobs.stop(deployment)
            if stopped:
                log.info("paper run %s: follow jobs %s cancelled", deployment, stopped)
        except _RETRY_LATER as exc:
            log.warning("paper run %s: follow jobs not cancelled yet: %s", deployment, exc)

    async def _reconcile_follow(self) -> None:
        """Start the missing follow jobs of the runs held here; cancel those of runs
        that stopped (any replica's)."""
        if self.follow_jobs is None:
            return
        now = time.monotonic()
        for dep in self.following():
            if now - self._follow_checked.get(dep, -math.inf) < self._follow_check_s:
                continue
            self._follow_checked[dep] = now
            try:
                started = await self.follow_jobs.ensure(dep)
                if started:
                    log.info("paper run %s: follow jobs %s started", dep, started)
            except IngestionUnavailable as exc:
                log.warning("paper run %s: follow jobs not started yet: %s", dep, exc)
        if now - self._orphans_checked >= self._follow_check_s:
            self._orphans_checked = now
            try:
                await self.follow_jobs.stop_orphans()
            except IngestionUnavailable as exc:
                log.warning("follow jobs of stopped runs not cancelled yet: %s", exc)

    async def list_follow_jobs(self, deployment: str) -> list[FollowJob]:
        """The follow jobs of a run, every generation (empty without ingestion)."""
        return [] if self.follow_jobs is None else await self.follow_jobs.jobs(deployment)

    async def supervise_once(self) -> None:
        """Start following each claimable run not followed yet (up to ``max_runs``)."""
        for dep, task in list(self._tasks.items()):
            if task.done():
                del self._tasks[dep]
        for dep in await self.runner.claimable():
            if dep in self._tasks or len(self._tasks) >= self._max_runs:
                continue
            if await self.runner.claim(dep):
                self._tasks[dep] = asyncio.create_task(self._follow(dep))

    async def _every_poll(self, what: str, step: Callable[[], Awaitable[None]]) -> None:
        """Run ``step`` every few polls until stopped; a failure is logged, not raised."""
        while not self._stop.is_set():
            try:
                await step()
            except db.UNAVAILABLE as exc:
                log.warning("%s: the database is unavailable (%s)", what, exc)
            except Exception:
                log.exception(what)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.runner.poll_s * 4)

    def start(self) -> None:
        self._stop.clear()
        self._loop_task = asyncio.create_task(
            self._every_poll("paper supervisor", self.supervise_once))
        if self.follow_jobs is not None:
            # On a task of their own: a slow or absent ingestion service never holds up
            # the takeover of runs.
            self._jobs_task = asyncio.create_task(
                self._every_poll("paper follow jobs", self._reconcile_follow))
        self._monitor_task = asyncio.create_task(self.tracker.monitor(
            self.following, self._stop, self._divergence_check_s))

    async def close(self) -> None:
        """Stop following (the runs stay RUNNING: another replica takes them over)."""
        self._stop.set()
        if self._jobs_task is not None:   # a call to ingestion in flight is not waited for
            self._jobs_task.cancel()
            await asyncio.gather(self._jobs_task, return_exceptions=True)
        tasks = [t for t in (self._loop_task, self._monitor_task, *self._tasks.values())
                 if t is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        try:   # hand the runs over at once rather than after the lease
            await self._pool.execute(
                """UPDATE paper_runs SET lease_until = now() WHERE lease_owner = $1
                     AND state = 'RUNNING'""", self.runner.replica)
        except Exception as exc:   # the pool closed first: the leases simply expire
            log.info("paper leases of %s left to expire: %s", self.runner.replica, exc)

    def following(self) -> list[str]:
        return sorted(d for d, t in self._tasks.items() if not t.done())
