"""Use cases of the backtest service: create, follow, cancel and read jobs.

Everything a request can get wrong is checked before anything is written: the version
exists (asked of the strategy service), its parameters fit the kind's schema, the
config is valid for the venues it trades, and every series has bars in the range. A
refused request leaves no job, no queue entry and no event behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from usdcarb.backtest import convert, engine
from usdcarb.backtest.config import RunSpec, parse_config
from usdcarb.backtest.curves import curve_request, equity_to_pb
from usdcarb.backtest.engine.sweep import COST_AXES, LATENCY_AXIS
from usdcarb.backtest.jobs import Lanes
from usdcarb.backtest.lanes import LaneInfo, queued_message
from usdcarb.backtest.loading import (
    range_coverage,
    series_to_load,
    verdict_violations,
)
from usdcarb.backtest.model import BacktestJob, JobState, SweepJob
from usdcarb.backtest.progress import ProgressBus
from usdcarb.backtest.store import BacktestStore
from usdcarb.backtest.strategy_client import ResolvedVersion, StrategyClient
from usdcarb.platform import paging
from usdcarb.platform.errors import FailedPrecondition, InvalidArgument, expected
from usdcarb.platform.ownership import owner_filter, require_owner
from usdcarb.strategy.kinds import BY_SLUG
from usdcarb.v1 import backtest_pb2 as pb
from usdcarb.v1 import common_pb2

T = TypeVar("T")
WATCH_POLL_S = 1.0
CANCEL_WAIT_S = 5.0


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing and the token of the next."""

    items: list[T]
    next_page_token: str


@dataclass(frozen=True, kw_only=True)
class AppSettings:
    market_table: str = "ingestion.market_data"
    verdict_table: str = "validation.series_verdicts"  # validation's series verdicts
    max_bars: int = 20_000_000
    max_sweep_points: int = 10_000
    min_coverage: float = 0.5  # least share of the range a traded series' bars must span
    backtest_slots: int = 1   # this replica's worker slots taking backtests (estimates)
    sweep_slots: int = 1      # ... and taking sweeps
    coverage_memo_s: float = 60.0  # a range found covered is not looked up again for this
                                   # long (0: always; see BacktestApp._coverage)


COVERAGE_MEMO_SIZE = 1024   # covered ranges remembered (``BacktestApp._coverage``)


def parse_name(name: str, collection: str, field: str = "name", suffix: str = "") -> str:
    parts = name.split("/")
    want = 3 if suffix else 2
    if len(parts) != want or parts[0] != collection or not parts[1] or (
            suffix and parts[2] != suffix):
        pattern = f"{collection}/{{id}}" + (f"/{suffix}" if suffix else "")
        raise InvalidArgument.for_field(field, f"a resource name {pattern!r}", name)
    return parts[1]


def _version_name(name: str, field: str) -> str:
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != "strategies" or parts[2] != "versions" or not all(
            parts[1::2]):
        raise InvalidArgument.for_field(
            field, "a version name 'strategies/{strategy}/versions/{version}'", name)
    return name


class BacktestApp:
    """Backtest and sweep jobs."""

    def __init__(self, *, store: BacktestStore, bus: ProgressBus, queue: Lanes,
                 lanes: LaneInfo, strategy: StrategyClient, settings: AppSettings) -> None:
        self._store, self._bus, self._queue, self._lanes = store, bus, queue, lanes
        self._strategy, self.settings = strategy, settings
        # (legs, timeframe, start, end) -> until when (monotonic s) the range counts as
        # covered: ``_coverage``
        self._covered: dict[Any, float] = {}

    # -- validation -----------------------------------------------------------------
    async def _prepare(
        self, version_name: str, config: pb.BacktestConfig, prefix: str
    ) -> tuple[ResolvedVersion, RunSpec]:
        _version_name(version_name, f"{prefix}strategy_version")
        version = await self._strategy.resolve(version_name,
                                               field=f"{prefix}strategy_version")
        try:
            engine.validate_params(version.kind, version.parameters)
            legs = engine.required_series(version.kind, version.parameters)
        except engine.ParameterError as exc:
            raise InvalidArgument(exc.violations) from None
        except ValueError as exc:
            raise InvalidArgument([("parameters", str(exc))]) from None
        spec = parse_config(config, legs, field=f"{prefix}config",
                            max_bars=self.settings.max_bars)
        # The data checks look side by side; refusals keep their order (no bars, thin
        # range, unusable data, no pricing market).
        pool, table = self._store.pool, self.settings.market_table

        async def unusable_spans() -> list[tuple[str, str, str]]:
            if config.allow_unusable_data:
                return []
            return await verdict_violations(pool, legs, timeframe=spec.timeframe,
                                            start=spec.start, end=spec.end,
                                            table=self.settings.verdict_table)

        coverage, unusable, pricing = await asyncio.gather(
            self._coverage(legs, spec),
            unusable_spans(),
            series_to_load(pool, version.kind, version.parameters, spec.engine,
                           timeframe=spec.timeframe, start=spec.start, end=spec.end,
                           table=table),
            return_exceptions=True)
        if isinstance(coverage, BaseException):
            raise coverage
        if isinstance(unusable, BaseException):
            raise unusable
        gaps, thin = coverage
        if gaps:
            raise FailedPrecondition(gaps, reason="NO_MARKET_DATA")
        if thin:
            raise FailedPrecondition(thin, reason="RANGE_MOSTLY_EMPTY")
        if unusable:
            raise FailedPrecondition(unusable, reason="UNUSABLE_MARKET_DATA")
        if isinstance(pricing, BaseException):
            raise pricing
        return version, spec

    async def _coverage(self, legs: Sequence[tuple[str, str]], spec: RunSpec,
                        ) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
        """``range_coverage`` of the run's legs, remembered for ``coverage_memo_s`` once
        a range is found covered.

        Why: its queries are planned over the hypertable's chunks, 5-25 ms of a create
        (most of it on a loaded machine), and a user runs the same range again and
        again. Stored bars of a past range are only ever added to (covering it more), so
        a range found covered stays so; a refusal is never remembered. Bars deleted
        since are still caught: the worker loads the range and fails a run without them.
        """
        key = (tuple(legs), spec.timeframe, spec.start, spec.end)
        now = time.monotonic()
        if self._covered.get(key, 0.0) > now:
            return [], []
        found = await range_coverage(
            self._store.pool, legs, timeframe=spec.timeframe, timeframe_ms=spec.timeframe_ms,
            start=spec.start, end=spec.end, table=self.settings.market_table,
            minimum=self.settings.min_coverage)
        if not any(found) and self.settings.coverage_memo_s > 0:
            if len(self._covered) >= COVERAGE_MEMO_SIZE:
                self._covered = {k: t for k, t in self._covered.items() if t > now}
                while len(self._covered) >= COVERAGE_MEMO_SIZE:   # the oldest go first
                    del self._covered[next(iter(self._covered))]
            self._covered[key] = now + self.settings.coverage_memo_s
        return found

    # -- backtests ------------------------------------------------------------------
    async def create_backtest(
        self, *, strategy_version: str, config: pb.BacktestConfig, creator: str,
        request_id: str, prefix: str = "backtest.",
    ) -> BacktestJob:
        if request_id:
            existing = await self._store.pool.fetchval(
                "SELECT id FROM backtests WHERE request_id = $1", request_id)
            if existing is not None:
                return await self._store.get_backtest(existing)
        # where the job will stand, looked up in Redis while the checks run
        ahead = asyncio.ensure_future(self._lanes.position(
            self._queue.backtests, "backtest", self.settings.backtest_slots))
        try:
            version, _spec = await self._prepare(strategy_version, config, prefix)
        except BaseException:
            ahead.cancel()
            with contextlib.suppress(BaseException):
                await ahead
            raise
        position = await ahead
        queued = common_pb2.Progress(unit="bars", message=queued_message(position, "backtest"))
        job, created = await self._store.insert_backtest(BacktestJob(
            id=f"bt-{uuid.uuid4().hex[:16]}", strategy_version=version.name,
            config=convert.to_json(config), strategy_kind=version.kind,
            parameters=version.parameters, creator=creator, request_id=request_id or None,
            progress=convert.to_json(queued)))
        if created:
            await self._bus.publish(job.id, pb.BacktestEvent(
                backtest=job.name, state=common_pb2.JOB_STATE_QUEUED,
                progress=pb.BacktestProgress(progress=queued, queue=position),
            ).SerializeToString())
            try:
                await self._queue.backtests.enqueue("backtest", job.id)
            except Exception:
                await self._store.end_backtest(job.id, JobState.FAILED, {
                    "code": 14, "message": "could not queue the job; retry"})
                raise
        return job

    async def get_backtest(self, name: str) -> tuple[BacktestJob, common_pb2.Progress | None]:
        job = await self._store.get_backtest(parse_name(name, "backtests"))
        return job, await self._live_progress(job)

    async def _live_progress(self, job: BacktestJob) -> common_pb2.Progress | None:
        if job.state != JobState.RUNNING:
            return None
        latest = await self._bus.latest(job.id)
        if latest is None:
            return None
        event = pb.BacktestEvent.FromString(latest[1])
        return event.progress.progress if event.HasField("progress") else None

    async def list_backtests(self, *, page_size: int, page_token: str, state: str | None,
                             strategy: str, owner: str = "") -> Page[BacktestJob]:
        size = paging.page_size(page_size)
        by = owner_filter(owner)
        filters = {"state": state, "strategy": strategy,
                   **({"owner": by} if by is not None else {})}
        key = paging.decode_token(page_token, filters)
        after = (datetime.fromisoformat(key[0]), str(key[1])) if key else None
        rows = await self._store.list_backtests(limit=size + 1, after=after, state=state,
                                                strategy=strategy, owner=by)
        return _page(rows, size, lambda r: [r.create_time, r.id], filters)

    async def cancel_backtest(self, name: str) -> BacktestJob:
        job_id = parse_name(name, "backtests")
        job = await self._store.get_backtest(job_id)
        # A job's owner is written once by its INSERT and ids are never reused, so this
        # read cannot be overtaken by a change of owner before the guarded UPDATE.
        require_owner(job.owner, resource=job.name)
        if job.state.terminal:
            return job
        await self._bus.request_cancel(job_id)
        ended = await self._store.end_backtest(job_id, JobState.CANCELLED, None,
                                               from_states=[JobState.QUEUED.value])
        if ended is not None:
            seq = await self._bus.publish(job_id, convert.final_backtest_event(ended)
                                          .SerializeToString())
            await self._store.set_last_sequence("backtests", job_id, seq)
            return ended
        deadline = time.monotonic() + CANCEL_WAIT_S
        while time.monotonic() < deadline:
            job = await self._store.get_backtest(job_id)
            if job.state.terminal:
                break
            await asyncio.sleep(0.05)
        return job

    async def watch_backtest(self, name: str, after_sequence: int = 0,
                             ) -> AsyncIterator[pb.BacktestEvent]:
        job_id = parse_name(name, "backtests")
        if after_sequence < 0:
            raise InvalidArgument.for_field("after_sequence", "a number >= 0", after_sequence)
        await self._store.get_backtest(job_id)
        async for event in self._follow(
                job_id, after_sequence, pb.BacktestEvent, lambda e: e.HasField("completed"),
                self._final_backtest):
            yield event

    async def _final_backtest(self, job_id: str) -> tuple[Any, int] | None:
        job = await self._store.get_backtest(job_id)
        if not job.state.terminal:
            return None
        return convert.final_backtest_event(job), job.last_sequence

    async def _follow(self, job_id: str, after: int, message: Any,
                      is_last: Callable[[Any], bool],
                      final: Callable[[str], Any]) -> AsyncIterator[Any]:
        """Replay the job's progress stream after ``after``, then follow it to the end.

        If the job has ended but its stream lacks the last event (expired, or the worker
        died between storing and publishing), the last event is rebuilt from the store.
        """
        last_seen = after
        checked = time.monotonic()
        async for batch in self._bus.follow(job_id, after):
            for seq, payload in batch:
                event = message.FromString(payload)
                event.sequence = seq
                last_seen = seq
                yield event
                if is_last(event):
                    return
            if not batch or time.monotonic() - checked > WATCH_POLL_S:
                checked = time.monotonic()
                ended = await final(job_id)
                if ended is not None:
                    # One more look: the worker writes the store before the stream.
                    await asyncio.sleep(0.2)
                    tail = await self._bus.latest(job_id)
                    if tail is not None and tail[0] > last_seen:
                        continue
                    event, stored_seq = ended
                    seq = max(stored_seq, last_seen + 1)
                    if seq > after:
                        event.sequence = seq
                        yield event
                    return

    async def run_backtest(
        self, *, strategy_version: str, config: pb.BacktestConfig, creator: str,
        request_id: str, interval_s: float,
    ) -> AsyncIterator[pb.BacktestEvent]:
        """Create the job, then stream its events, progress at most every ``interval_s``."""
        job = await self.create_backtest(strategy_version=strategy_version, config=config,
                                         creator=creator,
                                         request_id=request_id, prefix="")
        sent = -math.inf
        # (the job is known to exist: no look-up as watch_backtest makes)
        async for event in self._follow(
                job.id, 0, pb.BacktestEvent, lambda e: e.HasField("completed"),
                self._final_backtest):
            now = time.monotonic()
            if event.HasField("progress") and event.state == common_pb2.JOB_STATE_RUNNING \
                    and event.progress.progress.fraction < 1.0 and now - sent < interval_s:
                continue
            sent = now
            yield event

    async def list_trades(self, parent: str, page_size: int,
                          page_token: str) -> Page[pb.Trade]:
        job_id = parse_name(parent, "backtests", field="parent")
        await self._store.get_backtest(job_id)
        size = paging.page_size(page_size, default=500, maximum=10_000)
        filters = {"parent": parent}
        key = paging.decode_token(page_token, filters)
        rows = await self._store.list_trades(job_id, after_seq=int(key[0]) if key else 0,
                                             limit=size + 1)
        trades = [pb.Trade(
            time=convert.timestamp(r["time"]), venue=r["venue"], symbol=r["symbol"],
            side=pb.SIDE_BUY if r["side"] > 0 else pb.SIDE_SELL, quantity=r["quantity"],
            price=r["price"], fee=r["fee"], slippage=r["slippage"],
            round_trip=r["round_trip"], signal_bar=r["signal_bar"],
            signal_edge_bps=r["signal_edge_bps"]) for r in rows[:size]]
        token = paging.encode_token([rows[size - 1]["seq"]], filters) if len(rows) > size else ""
        return Page(trades, token)

    async def equity_curve(self, name: str, max_points: int, layout: int, *,
                           page_size: int = 0, page_token: str = "") -> pb.EquityCurve:
        job_id = parse_name(name, "backtests", suffix="equityCurve")
        request = curve_request(name, max_points, page_size, page_token)
        job = await self._store.get_backtest(job_id)
        columns = await self._store.get_equity(job_id)
        if columns is None:
            raise FailedPrecondition(
                [("STATE", f"backtests/{job_id}",
                  expected("a succeeded backtest", job.state.value))],
                reason="BACKTEST_NOT_SUCCEEDED")
        return equity_to_pb(name, columns, layout, request)

    # -- sweeps ---------------------------------------------------------------------
    async def create_sweep(self, *, sweep: pb.Sweep, creator: str,
                           request_id: str) -> SweepJob:
        if request_id:
            existing = await self._store.pool.fetchval(
                "SELECT id FROM sweeps WHERE request_id = $1", request_id)
            if existing is not None:
                return await self._store.get_sweep(existing)
        if sweep.config.robustness.enabled:
            raise InvalidArgument.for_field(
                "sweep.config.robustness.enabled",
                "false for a sweep (a robustness panel is for backtests; sweep the "
                "execution cost axes instead)", True)
        version, spec = await self._prepare(sweep.strategy_version, sweep.config,
                                            "sweep.")
        axes = self._check_axes(version, sweep.axes)
        objective = sweep.objective or "sharpe"
        if objective not in convert.METRIC_NAMES:
            raise InvalidArgument.for_field("sweep.objective",
                                            f"one of {sorted(convert.METRIC_NAMES)}", objective)
        walk_forward = None
        if sweep.HasField("walk_forward"):
            walk_forward = convert.to_json(sweep.walk_forward)
            _check_walk_forward(sweep.walk_forward, spec)
        cross_validation = None
        if sweep.HasField("cross_validation"):
            if walk_forward is not None:
                raise InvalidArgument.for_field(
                    "sweep.cross_validation", "no walk_forward beside it (one mode per sweep)",
                    "both")
            _check_cross_validation(sweep.cross_validation, spec)
            cross_validation = convert.to_json(sweep.cross_validation)
        position = await self._lanes.position(self._queue.sweeps, "sweep",
                                              self.settings.sweep_slots)
        job, created = await self._store.insert_sweep(SweepJob(
            id=f"sw-{uuid.uuid4().hex[:16]}", strategy_version=version.name,
            config=convert.to_json(sweep.config), axes=axes, objective=objective,
            walk_forward=walk_forward, cross_validation=cross_validation,
            strategy_kind=version.kind,
            parameters=version.parameters, creator=creator, request_id=request_id or None,
            progress=convert.to_json(common_pb2.Progress(
                message=queued_message(position, "sweep")))))
        if created:
            await self._bus.publish(job.id, pb.SweepEvent(
                sweep=job.name, state=common_pb2.JOB_STATE_QUEUED,
                progress=common_pb2.Progress(message=queued_message(position, "sweep")),
                queue=position).SerializeToString())
            try:
                await self._queue.sweeps.enqueue("sweep", job.id)
            except Exception:
                await self._store.end_sweep(job.id, JobState.FAILED, {
                    "code": 14, "message": "could not queue the job; retry"})
                raise
        return job

    def _check_axes(self, version: ResolvedVersion,
                    axes: Sequence[pb.ParameterAxis]) -> list[dict[str, Any]]:
        spec = BY_SLUG[version.kind]
        props = spec.schema["properties"]
        violations: list[tuple[str, str]] = []
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        if not axes:
            violations.append(("sweep.axes", expected("at least one axis", [])))
        points = 1
        for i, axis in enumerate(axes):
            f = f"sweep.axes[{i}]"
            if axis.path in COST_AXES:
                if axis.path in seen:
                    violations.append((f"{f}.path", expected("each axis once", axis.path)))
                seen.add(axis.path)
                if not axis.values:
                    violations.append((f"{f}.values", expected("at least one value", [])))
                for j, value in enumerate(axis.values):
                    if axis.path == LATENCY_AXIS:
                        ok = float(value).is_integer() and 0 <= value <= 10_000
                        what = "a whole number of bars from 0 to 10,000"
                    else:
                        ok = math.isfinite(value) and 0.0 < value <= 100.0
                        what = "a multiplier above 0 and at most 100"
                    if not ok:
                        violations.append((f"{f}.values[{j}]", expected(what, value)))
                points *= max(1, len(axis.values))
                out.append({"path": axis.path, "values": [float(v) for v in axis.values]})
                continue
            key = axis.path.removeprefix(spec.param_key + ".")
            numeric = [k for k, p in props.items() if p.get("type") in ("number", "integer")]
            if key not in numeric:
                violations.append((f"{f}.path", expected(
                    f"a numeric parameter of {spec.slug} among {numeric} or an execution "
                    f"cost among {list(COST_AXES)}", axis.path)))
                continue
            if key in seen:
                violations.append((f"{f}.path", expected("each parameter once", axis.path)))
            seen.add(key)
            if not axis.values:
                violations.append((f"{f}.values", expected("at least one value", [])))
            for j, value in enumerate(axis.values):
                inner = dict(version.parameters[spec.param_key])
                inner[key] = int(value) if props[key]["type"] == "integer" and \
                    float(value).is_integer() else value
                try:
                    engine.validate_params(version.kind, {spec.param_key: inner})
                except ValueError:
                    violations.append((f"{f}.values[{j}]", expected(
                        f"a value {key} accepts ({_bounds(props[key])})", value)))
            points *= max(1, len(axis.values))
            out.append({"path": axis.path, "values": [float(v) for v in axis.values]})
        if points > self.settings.max_sweep_points:
            violations.append(("sweep.axes", expected(
                f"at most {self.settings.max_sweep_points} combinations", points)))
        if violations:
            raise InvalidArgument(violations)
        return out

    async def get_sweep(self, name: str) -> SweepJob:
        return await self._store.get_sweep(parse_name(name, "sweeps"))

    async def list_sweeps(self, *, page_size: int, page_token: str,
                          owner: str = "") -> Page[SweepJob]:
        size = paging.page_size(page_size)
        by = owner_filter(owner)
        filters: dict[str, Any] = {"owner": by} if by is not None else {}
        key = paging.decode_token(page_token, filters)
        after = (datetime.fromisoformat(key[0]), str(key[1])) if key else None
        rows = await self._store.list_sweeps(limit=size + 1, after=after, owner=by)
        return _page(rows, size, lambda r: [r.create_time, r.id], filters)

    async def cancel_sweep(self, name: str) -> SweepJob:
        job_id = parse_name(name, "sweeps")
        job = await self._store.get_sweep(job_id)
        require_owner(job.owner, resource=job.name)  # write-once owner, as for backtests
        if job.state.terminal:
            return job
        await self._bus.request_cancel(job_id)
        ended = await self._store.end_sweep(job_id, JobState.CANCELLED, None,
                                            from_states=[JobState.QUEUED.value])
        if ended is not None:
            seq = await self._bus.publish(job_id, convert.final_sweep_event(ended)
                                          .SerializeToString())
            await self._store.set_last_sequence("sweeps", job_id, seq)
            return ended
        deadline = time.monotonic() + CANCEL_WAIT_S
        while time.monotonic() < deadline:
            job = await self._store.get_sweep(job_id)
            if job.state.terminal:
                break
            await asyncio.sleep(0.05)
        return job

    async def watch_sweep(self, name: str, after_sequence: int = 0
                          ) -> AsyncIterator[pb.SweepEvent]:
        job_id = parse_name(name, "sweeps")
        if after_sequence < 0:
            raise InvalidArgument.for_field("after_sequence", "a number >= 0", after_sequence)
        await self._store.get_sweep(job_id)

        async def final(jid: str) -> tuple[Any, int] | None:
            job = await self._store.get_sweep(jid)
            if not job.state.terminal:
                return None
            return convert.final_sweep_event(job), job.last_sequence

        async for event in self._follow(job_id, after_sequence, pb.SweepEvent,
                                        lambda e: e.HasField("outcome"), final):
            yield event


def _bounds(prop: dict[str, Any]) -> str:
    parts = [f"{k} {prop[k]}" for k in ("minimum", "exclusiveMinimum", "maximum") if k in prop]
    return ", ".join(parts) or prop.get("type", "")


def _check_walk_forward(wf: pb.WalkForwardSpec, spec: RunSpec) -> None:
    violations = []
    bars = {}
    for name in ("in_sample", "out_of_sample", "step"):
        d = getattr(wf, name)
        if name == "step" and not wf.HasField("step"):
            continue
        n = spec.bars_for(d.ToMilliseconds())
        bars[name] = n
        if n < 1:
            violations.append((f"sweep.walk_forward.{name}",
                               expected(f"at least one {spec.timeframe} bar", d.ToJsonString())))
    if not violations and bars["in_sample"] + bars["out_of_sample"] > spec.bars:
        violations.append(("sweep.walk_forward", expected(
            f"in_sample + out_of_sample within the range's {spec.bars} bars",
            bars["in_sample"] + bars["out_of_sample"])))
    if violations:
        raise InvalidArgument(violations)


def _check_cross_validation(cv: pb.CrossValidationSpec, spec: RunSpec) -> None:
    violations = []
    if not 2 <= cv.folds <= 20:
        violations.append(("sweep.cross_validation.folds",
                           expected("a whole number from 2 to 20", cv.folds)))
    margins = 0
    for name in ("purge", "embargo"):
        d = getattr(cv, name)
        ms = d.ToMilliseconds()
        if ms < 0:
            violations.append((f"sweep.cross_validation.{name}",
                               expected("a duration of 0 or more", d.ToJsonString())))
        margins += max(0, spec.bars_for(ms))
    if not violations:
        block = spec.bars // cv.folds
        if block < 2:
            violations.append(("sweep.cross_validation.folds", expected(
                f"at most {spec.bars // 2} folds for the range's {spec.bars} bars", cv.folds)))
        elif spec.bars - block - margins < 2:
            violations.append(("sweep.cross_validation", expected(
                f"training bars left beside each of the {cv.folds} blocks of {block} bars "
                f"after purge and embargo", spec.bars - block - margins)))
    if violations:
        raise InvalidArgument(violations)


def _page(rows: list[T], size: int, key: Any, filters: dict[str, Any]) -> Page[T]:
    if len(rows) <= size:
        return Page(rows, "")
    items = rows[:size]
    return Page(items, paging.encode_token(key(items[-1]), filters))

