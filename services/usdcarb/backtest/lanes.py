"""What a queued job is told: its place in its lane, a wait estimate, and whether any
worker is ready yet — shared through Redis by every replica.

- Readiness: a replica whose engine processes have warmed up (kernels loaded or compiled)
  keeps its name in the sorted set ``<prefix>:ready`` with an expiry as score, renewed
  while it lives; no live member means a job waits for a warm-up ("warming up").
- Estimate: each lane keeps a moving mean of its jobs' run times; a queued job's estimate
  is that mean times the jobs ahead of it, divided by the slots serving the lane
  (``slots`` as this replica knows them: a conservative figure with several replicas).
"""

from __future__ import annotations

import time
from typing import Any

from google.protobuf import duration_pb2

from usdcarb.backtest.jobs import JobQueue
from usdcarb.backtest.progress import Channels
from usdcarb.v1 import backtest_pb2 as pb

MEAN_WEIGHT = 0.2     # weight of the newest run in the lane's moving mean
DEFAULT_SECONDS = {"backtest": 1.0, "sweep": 30.0}   # before any run was measured


class LaneInfo:
    """Readiness and lane statistics (asyncio Redis client)."""

    def __init__(self, redis: Any, channels: Channels) -> None:
        self._redis = redis
        self.channels = channels

    async def mark_ready(self, replica: str, ttl_s: float) -> None:
        await self._redis.zadd(self.channels.ready, {replica: time.time() + ttl_s})

    async def clear_ready(self, replica: str) -> None:
        await self._redis.zrem(self.channels.ready, replica)

    async def any_ready(self) -> bool:
        now = time.time()
        await self._redis.zremrangebyscore(self.channels.ready, "-inf", now)
        return int(await self._redis.zcount(self.channels.ready, now, "+inf")) > 0

    async def record(self, lane: str, seconds: float) -> None:
        """Fold one job's run time into the lane's moving mean."""
        key = self.channels.lane_seconds(lane)
        old = await self._redis.get(key)
        mean = seconds if old is None else (
            (1 - MEAN_WEIGHT) * float(old) + MEAN_WEIGHT * seconds)
        await self._redis.set(key, repr(mean), ex=self.channels.ttl_s)

    async def mean_seconds(self, lane: str) -> float:
        value = await self._redis.get(self.channels.lane_seconds(lane))
        return DEFAULT_SECONDS.get(lane, 1.0) if value is None else float(value)

    async def position(self, queue: JobQueue, lane: str, slots: int) -> pb.QueuePosition:
        """Where a job about to join ``lane`` (served by ``slots`` slots) stands."""
        ahead = await queue.length()
        seconds = await self.mean_seconds(lane) * ahead / max(1, slots)
        estimate = duration_pb2.Duration()
        estimate.FromNanoseconds(int(seconds * 1e9))
        return pb.QueuePosition(ahead=ahead, estimate=estimate,
                                warming_up=not await self.any_ready())


def queued_message(position: pb.QueuePosition, lane: str) -> str:
    """The status line of a queued job."""
    wait = position.estimate.ToNanoseconds() / 1e9
    head = ("warming up: the engine is loading its kernels; then queued"
            if position.warming_up else "queued")
    return f"{head}: {position.ahead} ahead in the {lane} lane, about {wait:.1f} s"
