"""Domain metrics of the backtest service.

- ``usdcarb_backtest_jobs{kind,state}``: backtests and sweeps by state (sampled from the
  store; every replica reports the same numbers, so dashboards take ``max``);
- ``usdcarb_backtest_queue_depth{lane}`` / ``usdcarb_backtest_queue_oldest_age_seconds{lane}``:
  entries in a lane's Redis stream (queued or running) and the age of the oldest one
  (KEDA scales workers on the same stream);
- ``usdcarb_backtest_stage_seconds{stage}``: queued, load, engine, store time of every run;
- ``usdcarb_backtest_worker_slots{state="busy|idle"}`` and ``usdcarb_backtest_workers_ready``:
  this replica's engine slots (ready once every engine process has its kernels loaded).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from usdcarb.backtest.model import JobState
from usdcarb.platform.telemetry import Sampler

STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
# The runner's laps (usdcarb.backtest.runner._Stages) that are stages of their own; the
# rest (columns, publish) are folded into "store"; "engine" and "encode" are timed in the
# engine process, inside or beside the parent's laps.
_STAGES = {"load": "load", "engine": "engine", "columns": "store", "store": "store",
           "publish": "store"}


class _Slots(Collector):
    def __init__(self, runner: Any) -> None:
        self._runner = runner

    def collect(self) -> Iterator[GaugeMetricFamily]:
        total = int(self._runner.settings.processes)
        busy = min(total, len(self._runner.busy))
        slots = GaugeMetricFamily("usdcarb_backtest_worker_slots",
                                  "Engine slots of this replica, by state.", labels=["state"])
        slots.add_metric(["busy"], busy)
        slots.add_metric(["idle"], total - busy)
        yield slots
        yield GaugeMetricFamily("usdcarb_backtest_workers_ready",
                                "1 once every engine process of this replica is ready.",
                                value=1 if self._runner.ready.is_set() else 0)


class BacktestTelemetry:
    """The backtest service's domain metrics, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry, *, runner: Any, redis: Any, pool: Any,
                 streams: Mapping[str, str], sample_s: float = 2.0) -> None:
        self.registry = registry
        self._redis, self._pool, self._streams = redis, pool, dict(streams)
        registry.register(_Slots(runner))
        self.jobs = Gauge("usdcarb_backtest_jobs", "Backtests and sweeps by state.",
                          ["kind", "state"], registry=registry)
        self.depth = Gauge("usdcarb_backtest_queue_depth",
                           "Entries in a job lane (queued or running).", ["lane"],
                           registry=registry)
        self.oldest = Gauge("usdcarb_backtest_queue_oldest_age_seconds",
                            "Age of the oldest entry in a job lane (0 when empty).", ["lane"],
                            registry=registry)
        self.stages = Histogram("usdcarb_backtest_stage_seconds",
                                "Time of a backtest run's stages.", ["stage"],
                                registry=registry, buckets=STAGE_BUCKETS)
        for kind in ("backtest", "sweep"):
            for state in JobState:
                self.jobs.labels(kind, state.value)
        self.sampler = Sampler("backtest", self.sample, sample_s)
        runner.on_stages = self.observe_stages

    def observe_stages(self, seconds: Mapping[str, float], created: datetime | None) -> None:
        """Record one finished run's stages (``seconds``: the runner's laps)."""
        by_stage: dict[str, float] = {}
        for lap, value in seconds.items():
            stage = _STAGES.get(lap)
            if stage is not None:
                by_stage[stage] = by_stage.get(stage, 0.0) + value
        if created is not None:
            # Queued: from creation until the run began (now minus the run's laps).
            ran = sum(v for k, v in seconds.items() if k not in ("engine", "encode"))
            waited = (datetime.now(UTC) - created).total_seconds() - ran
            by_stage["queued"] = max(0.0, waited)
        for stage, value in by_stage.items():
            self.stages.labels(stage).observe(value)

    async def sample(self) -> None:
        rows = await self._pool.fetch(
            "SELECT 'backtest' AS kind, state, count(*) AS n FROM backtests GROUP BY state "
            "UNION ALL SELECT 'sweep', state, count(*) FROM sweeps GROUP BY state")
        seen = {(r["kind"], r["state"]): int(r["n"]) for r in rows}
        for kind in ("backtest", "sweep"):
            for state in JobState:
                self.jobs.labels(kind, state.value).set(seen.get((kind, state.value), 0))
        now_ms = time.time() * 1000
        for lane, stream in self._streams.items():
            depth = int(await self._redis.xlen(stream))
            first = await self._redis.xrange(stream, count=1) if depth else []
            self.depth.labels(lane).set(depth)
            if first:
                entry_id = first[0][0]
                entry_id = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                self.oldest.labels(lane).set(max(0.0, (now_ms - int(entry_id.split("-")[0]))
                                                 / 1000))
            else:
                self.oldest.labels(lane).set(0)
