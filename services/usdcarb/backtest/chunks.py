"""Sweeps in chunks: any worker slot of any replica takes a span of a grid's points.

A grid sweep of more than ``chunk_points`` combinations is split by the slot that starts
it into spans [lo, hi) of the grid order, queued as "sweep-chunk" entries (with the
sweep's attempt) in the sweep lane. Each chunk's points go to a Redis hash of the
attempt (``put``: written once per span, so a chunk re-run after its worker died cannot
count twice) and the slot that puts the last span merges them in grid order and ends
the sweep. On a cancel, the first span to see it ends the sweep CANCELLED with the points
recorded by then (a span running elsewhere at that moment is not waited for). Every point is computed by the same kernel from the same initial state
whatever span it is in, so a chunked sweep equals a single-worker one bit for bit
(floats travel as JSON reprs, which round-trip exactly).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from usdcarb.backtest.engine import SweepPoint
from usdcarb.backtest.progress import Channels


def grid_points(axes: Mapping[str, Sequence[float]]) -> int:
    return math.prod(len(v) for v in axes.values())


def spans(total: int, size: int) -> list[tuple[int, int]]:
    """Consecutive spans of at most ``size`` covering [0, total)."""
    return [(lo, min(total, lo + size)) for lo in range(0, total, size)]


def dump_points(points: Sequence[SweepPoint]) -> str:
    return json.dumps([[p.params, p.metrics] for p in points])


def load_points(text: str) -> list[SweepPoint]:
    return [SweepPoint(params=params, metrics=metrics) for params, metrics in json.loads(text)]


class ChunkBoard:
    """The chunks of one sweep attempt in Redis: results, spans left, points done."""

    def __init__(self, redis: Any, channels: Channels) -> None:
        self._redis = redis
        self.channels = channels

    def _keys(self, job: str, attempt: int) -> tuple[str, str, str]:
        base = f"{self.channels.prefix}:chunks:{job}:{attempt}"
        return base, base + ":left", base + ":done"

    async def open(self, job: str, attempt: int, count: int) -> None:
        results, left, done = self._keys(job, attempt)
        ttl = self.channels.ttl_s
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(results, done)
            pipe.set(left, count, ex=ttl)
            pipe.set(done, 0, ex=ttl)
            await pipe.execute()

    async def put(self, job: str, attempt: int, lo: int, points: Sequence[SweepPoint],
                  consumer: str) -> tuple[int, int] | None:
        """Record span ``lo``'s points; return (spans left, points done), or None when
        this span was already recorded (a re-run)."""
        results, left, done = self._keys(job, attempt)
        if not await self._redis.hsetnx(results, str(lo), dump_points(points)):
            return None
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(results, f"by:{lo}", consumer)
            pipe.expire(results, self.channels.ttl_s)
            pipe.incrby(done, len(points))
            pipe.decr(left)
            _, _, finished, remaining = await pipe.execute()
        return int(remaining), int(finished)

    async def take(self, job: str, attempt: int) -> tuple[list[SweepPoint], dict[int, str]]:
        """Every recorded point in grid order, and which consumer computed each span."""
        results, _, _ = self._keys(job, attempt)
        raw = {(k.decode() if isinstance(k, bytes) else k):
               (v.decode() if isinstance(v, bytes) else v)
               for k, v in (await self._redis.hgetall(results)).items()}
        points: list[SweepPoint] = []
        for lo in sorted(int(k) for k in raw if not k.startswith("by:")):
            points += load_points(raw[str(lo)])
        by = {int(k[3:]): v for k, v in raw.items() if k.startswith("by:")}
        return points, by
