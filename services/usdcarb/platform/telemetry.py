"""Metrics of the platform's own parts: the asyncpg pool, Redis calls, periodic samplers.

A service's composition root makes one ``CollectorRegistry`` for its domain metrics
(``domain_registry()``), instruments its pool and Redis client into it, and hands it to
``run_service(collectors=[registry])`` so it is served beside the gRPC metrics. Names
follow Prometheus conventions (``usdcarb_`` prefix, base units, ``_total`` counters) and
labels stay low-cardinality: never a resource id, a user or a symbol.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

# Redis commands are counted by name; anything else is "other" (names are a closed set,
# but a typo'd or module command must not grow a label).
_REDIS_COMMANDS = frozenset({
    "GET", "SET", "DEL", "EXISTS", "EXPIRE", "PEXPIRE", "INCR", "INCRBY", "EVALSHA", "EVAL",
    "XADD", "XREAD", "XREADGROUP", "XACK", "XCLAIM", "XAUTOCLAIM", "XPENDING", "XLEN",
    "XRANGE", "XREVRANGE", "XGROUP", "XINFO", "XTRIM", "XDEL", "PUBLISH", "PING", "HSET", "HGET",
    "HGETALL", "HDEL", "SADD", "SREM", "SMEMBERS", "ZADD", "ZRANGE", "ZREM", "MGET", "SCAN",
})
_BLOCK = ("BLOCK", b"BLOCK", "block", b"block")
FAST_BUCKETS = (0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                2.5, 5.0)


def domain_registry() -> CollectorRegistry:
    """Return an empty registry for a service's domain metrics (no process collectors:
    the server's own registry has those)."""
    return CollectorRegistry(auto_describe=True)


class _PoolCollector(Collector):
    def __init__(self, pool: Any) -> None:
        self._pool = pool

    def collect(self) -> Iterator[GaugeMetricFamily]:
        size = self._pool.get_size()
        idle = self._pool.get_idle_size()
        connections = GaugeMetricFamily(
            "usdcarb_db_pool_connections", "Connections of the asyncpg pool, by state.",
            labels=["state"])
        connections.add_metric(["in_use"], size - idle)
        connections.add_metric(["idle"], idle)
        yield connections
        yield GaugeMetricFamily("usdcarb_db_pool_max_connections",
                                "Most connections the pool may open.",
                                value=self._pool.get_max_size())
        # asyncpg has no acquire hook and its Pool has __slots__ (no wrapping): callers
        # blocked in acquire() are the getters of its internal queue.
        queue = getattr(self._pool, "_queue", None)
        yield GaugeMetricFamily("usdcarb_db_pool_waiting",
                                "Callers waiting for a free connection of the pool.",
                                value=len(getattr(queue, "_getters", ()) or ()))


def instrument_pool(pool: Any, registry: CollectorRegistry) -> None:
    """Export the pool's size, connections in use and callers waiting for one."""
    registry.register(_PoolCollector(pool))


def instrument_redis(client: Any, registry: CollectorRegistry) -> None:
    """Time every command the client sends (pipelines count once, as PIPELINE)."""
    latency = Histogram("usdcarb_redis_command_seconds",
                        "Round trip of a Redis command, by command.", ["command"],
                        registry=registry, buckets=FAST_BUCKETS)
    execute = client.execute_command

    @functools.wraps(execute)
    async def timed(*args: Any, **options: Any) -> Any:
        name = str(args[0]).upper() if args else "OTHER"
        name = name.split(" ", 1)[0]
        if any(a in _BLOCK for a in args[1:]):
            # XREAD(GROUP) ... BLOCK waits for entries on purpose: kept apart so the
            # latency of the other commands is not the consumers' idle time.
            name = "blocking"
        started = time.perf_counter()
        try:
            return await execute(*args, **options)
        finally:
            known = name in _REDIS_COMMANDS or name == "blocking"
            latency.labels(name if known else "other").observe(
                time.perf_counter() - started)

    client.execute_command = timed
    make_pipeline = client.pipeline

    @functools.wraps(make_pipeline)
    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = make_pipeline(*args, **kwargs)
        run = pipe.execute

        @functools.wraps(run)
        async def timed_run(*a: Any, **k: Any) -> Any:
            started = time.perf_counter()
            try:
                return await run(*a, **k)
            finally:
                latency.labels("PIPELINE").observe(time.perf_counter() - started)

        pipe.execute = timed_run
        return pipe

    client.pipeline = pipeline


class Sampler:
    """Run ``sample()`` every ``interval_s`` in the background (gauges of state that lives
    in PostgreSQL or Redis: queue depth, dead letters, series lag). A failed sample is
    logged and retried next interval; the gauges keep their last values."""

    def __init__(self, name: str, sample: Callable[[], Awaitable[None]],
                 interval_s: float = 5.0) -> None:
        self.name = name
        self._sample = sample
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"sampler-{self.name}")

    async def _run(self) -> None:
        failing = False
        while True:
            try:
                await self._sample()
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not failing:  # once per outage, not every interval
                    logger.warning("metrics sampler %s failed: %s: %s", self.name,
                                   type(exc).__name__, exc)
                failing = True
            await asyncio.sleep(self._interval_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
