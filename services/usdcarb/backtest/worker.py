"""What a worker's child process runs: the engine, reporting through Redis.

CPU work never runs on the event loop: each worker slot owns a one-process
``ProcessPoolExecutor`` (forked from the engine forkserver, engine_server.py, not from
the service, which runs grpc threads). The child gets a picklable task (kind, parameters,
EngineConfig, and a ``handoff.FrameRef``: it reads the market data itself), runs the
engine and makes a backtest's output ready to store (``finish.py``: the stored columns go back through a file beside the frame). It
reports progress itself — numbered events on the job's Redis progress stream, at most
every ``min_interval_s`` — and polls the job's cancel key, returning False to the
engine's callback when it is set so the engine raises Cancelled and the slot is freed.
Progress therefore reaches every replica's watchers without passing through the parent.
"""

from __future__ import annotations

import math
import os
import select
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from usdcarb.backtest import engine
from usdcarb.backtest.convert import metrics_to_pb, timestamp
from usdcarb.backtest.engine import EngineConfig, MarketFrame, Progress
from usdcarb.backtest.engine.robust import run_cross_validation
from usdcarb.backtest.finish import Finished, early, finish
from usdcarb.backtest.handoff import FrameRef, read_frame
from usdcarb.backtest.progress import Channels, SyncProgress
from usdcarb.v1 import backtest_pb2 as pb
from usdcarb.v1 import common_pb2

_buses: dict[tuple[str, Channels], SyncProgress] = {}
CANCEL_POLL_S = 0.1
# The frame of the last job (mapped from its file, unlinked since: the pages stay while
# mapped), under its key, when it is at most ``FrameRef``'s sender's budget; the parent
# knows which key its engine process holds (runner.Runner._held) and then sends only
# the key. The engine never writes to a frame's arrays, so a kept frame stays the bars
# its key names (test_market_memo).
_frames: dict[str, MarketFrame] = {}


class FrameNotHeld(Exception):
    """The parent sent a frame's key that this engine process does not hold (it
    answers by sending the frame)."""


def frame_of(ref: FrameRef, keep: bool) -> MarketFrame:
    """The frame ``ref`` names: the one held under its key, else read from its file
    (and held from now on when ``keep``, in place of the one held before)."""
    if ref.held:
        frame = _frames.get(ref.key)
        if frame is None:
            raise FrameNotHeld(ref.key)
        return frame
    frame = read_frame(ref)
    _frames.clear()
    if keep and ref.key:
        _frames[ref.key] = frame
    return frame


def _bus(url: str, channels: Channels) -> SyncProgress:
    key = (url, channels)
    if key not in _buses:
        _buses[key] = SyncProgress(url, channels)
    return _buses[key]


@dataclass(frozen=True)
class BacktestTask:
    """One backtest for a child process."""

    job_id: str
    kind: str
    params: Mapping[str, Any]
    config: EngineConfig
    market: FrameRef
    redis_url: str
    channels: Channels
    progress_every: int
    min_interval_s: float
    keep_frame: bool = False   # hold the frame for the next job (``frame_of``)


@dataclass(frozen=True)
class SweepTask:
    """One sweep (grid, or walk-forward when ``walk_forward`` = (in, out, step) bars)."""

    job_id: str
    kind: str
    params: Mapping[str, Any]
    axes: Mapping[str, Sequence[float]]
    config: EngineConfig
    market: FrameRef
    objective: str
    walk_forward: tuple[int, int, int] | None
    redis_url: str
    channels: Channels
    min_interval_s: float
    span: tuple[int, int] | None = None   # a chunk: grid positions [lo, hi), no events
    cross_validation: tuple[int, int, int] | None = None   # k-fold: (folds, purge, embargo)
    keep_frame: bool = False   # hold the frame for the next job (``frame_of``)


class _Reporter:
    """Throttle publishing and cancel polling inside the engine's callback."""

    def __init__(self, bus: SyncProgress, job_id: str, min_interval_s: float) -> None:
        self.bus, self.job_id, self.min_interval_s = bus, job_id, min_interval_s
        self._published = self._polled = 0.0

    def cancelled(self, final: bool) -> bool:
        now = time.monotonic()
        if final or now - self._polled >= CANCEL_POLL_S:
            self._polled = now
            return self.bus.cancel_requested(self.job_id)
        return False

    def due(self, final: bool) -> bool:
        now = time.monotonic()
        if final or now - self._published >= self.min_interval_s:
            self._published = now
            return True
        return False


def progress_every(bars: int) -> int:
    """Bars between engine callbacks: about 200 per run, at least 5,000 bars apart."""
    return max(5_000, bars // 200)


def run_backtest_task(task: BacktestTask) -> tuple[Finished, float]:
    """Run one backtest in the child; return it ready to store (``finish.py``: the
    stored columns go through a file beside the frame) and the engine's wall time."""
    bus = _bus(task.redis_url, task.channels)
    reporter = _Reporter(bus, task.job_id, task.min_interval_s)
    name = f"backtests/{task.job_id}"
    if reporter.cancelled(True):
        raise engine.Cancelled(name)
    market = frame_of(task.market, task.keep_frame)
    times = market.time_ms

    def on_progress(p: Progress) -> bool:
        final = p.bars_done >= p.bars_total
        if reporter.cancelled(final):
            return False
        if reporter.due(final):
            total = max(p.bars_total, 1)
            event = pb.BacktestEvent(
                backtest=name, state=common_pb2.JOB_STATE_RUNNING,
                progress=pb.BacktestProgress(
                    progress=common_pb2.Progress(
                        fraction=p.bars_done / total, done=p.bars_done, total=p.bars_total,
                        unit="bars", message="simulating"),
                    bar_time=timestamp(int(times[min(max(p.bars_done, 1), len(times)) - 1])),
                    equity=p.equity if math.isfinite(p.equity) else 0.0,
                    partial_metrics=metrics_to_pb(p.metrics)))
            bus.publish(task.job_id, event.SerializeToString())
        return True

    encoded, on_baseline = early(times)
    started = time.perf_counter()
    out = engine.run_backtest(task.kind, task.params, task.config, market,
                              on_progress=on_progress, progress_every=task.progress_every,
                              on_baseline=on_baseline)
    elapsed = time.perf_counter() - started
    return finish(task.market, name, times, out, encoded), elapsed


def run_sweep_task(task: SweepTask) -> list[Any]:
    """Run a grid sweep (list of SweepPoint) or a walk-forward (list of Fold)."""
    bus = _bus(task.redis_url, task.channels)
    reporter = _Reporter(bus, task.job_id, task.min_interval_s)
    name = f"sweeps/{task.job_id}"
    unit = "folds" if task.walk_forward or task.cross_validation else "combinations"
    if reporter.cancelled(True):
        raise engine.Cancelled(name)
    market = frame_of(task.market, task.keep_frame)

    def on_progress(done: int, total: int) -> bool:
        final = done >= total
        if reporter.cancelled(final):
            return False
        if task.span is None and reporter.due(final):   # a chunk's parent reports
            event = pb.SweepEvent(
                sweep=name, state=common_pb2.JOB_STATE_RUNNING,
                progress=common_pb2.Progress(fraction=done / max(total, 1), done=done,
                                             total=total, unit=unit, message="sweeping"))
            bus.publish(task.job_id, event.SerializeToString())
        return True

    if task.cross_validation is not None:
        folds, purge, embargo = task.cross_validation
        return list(run_cross_validation(
            task.kind, task.params, task.axes, task.config, market, folds=folds,
            purge_bars=purge, embargo_bars=embargo, objective=task.objective,
            on_progress=on_progress))
    if task.walk_forward is None:
        return list(engine.run_sweep(task.kind, task.params, task.axes, task.config,
                                     market, on_progress=on_progress, span=task.span))
    ins, oos, step = task.walk_forward
    return list(engine.run_walk_forward(
        task.kind, task.params, task.axes, task.config, market, in_sample_bars=ins,
        out_of_sample_bars=oos, step_bars=step, objective=task.objective,
        on_progress=on_progress))


def warm_up() -> str:
    """Load every kernel specialisation the service calls (compiled at setup into numba's
    on-disk cache; compiled here on a cold cache), so no job ever compiles."""
    from usdcarb.backtest.engine.warm import warm_up as warm_engine

    return warm_engine()


def exit_with_parent(service_pid: int) -> None:
    """Pool initializer: end this engine process when the service that started it dies.

    A SIGKILLed service cannot shut its pool down, and an orphaned engine process would
    otherwise live on (holding memory and a resource tracker) until the machine stops.
    The service is not this process's parent (that is the forkserver, engine_server.py),
    so it is watched by a pidfd, which becomes readable when the service has ended.
    """
    try:
        fd = os.pidfd_open(service_pid)
    except ProcessLookupError:
        os._exit(1)

    def watch() -> None:
        select.select([fd], [], [])
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-service", daemon=True).start()
