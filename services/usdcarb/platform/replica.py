"""Route candle reads to a streaming-replication read replica when it is fresh enough.

A service that reads candles (ingestion's GetCandles/StreamCandles, backtest loads,
validation's context reads) gives those reads to :meth:`ReadRouter.run`. The router sends
them to the replica while the replica answers and is within ``max_lag_s`` of the
primary, and to the primary otherwise. A read that fails on the replica because the
replica went away (connection refused or dropped, shutting down, cancelled by a recovery
conflict, pool acquire timed out) is run again on the primary at once: the caller never
sees the replica's failure.

Reads are read-your-writes: before a read runs on the replica, the replica must have
replayed the primary's WAL position as of the read's start (it gets ``catch_up_s`` to do
so, else the read goes to the primary), so a read sees every commit that finished
before it began, as on the primary. Two small queries per read buy that.

Lag, as measured here, is a bound on staleness rather than a replay delay: every
``poll_interval_s`` the monitor samples the primary's current WAL position, then the
replica's replayed position; the replica holds everything the primary had committed at
the time of the newest primary sample at or below the replica's position. The lag is
the age of that sample (about one poll interval when healthy) and keeps growing while
the replica is unreachable or its replay is paused, so it is also what alerts watch.

Metrics (on the service's registry, through :class:`ReplicaCollector`):
``usdcarb_pg_replica_lag_seconds``, ``usdcarb_pg_replica_healthy``,
``usdcarb_pg_replica_max_lag_seconds``, ``usdcarb_pg_replica_reads_total{target}``,
``usdcarb_pg_replica_fallbacks_total{reason}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import asyncpg
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from usdcarb.platform.db import create_pool
from usdcarb.platform.settings import PlatformSettings

logger = logging.getLogger(__name__)

__all__ = ["ReadRouter", "ReplicaCollector", "open_read_router", "service_read_router"]

T = TypeVar("T")

# Errors that mean "the replica cannot serve this read now", never "the read is wrong".
_REPLICA_GONE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.InterfaceError,  # connection closed under us
    asyncpg.CannotConnectNowError,
    asyncpg.exceptions.OperatorInterventionError,  # 57: admin shutdown, crash shutdown
    # 40001 on a hot standby: "canceling statement due to conflict with recovery".
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
)
_PRIMARY_LSN = "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"
_REPLICA_STATE = ("SELECT pg_is_in_recovery() AS standby, "
                  "pg_last_wal_replay_lsn() - '0/0'::pg_lsn AS replayed")
_REPLAYED = "SELECT pg_last_wal_replay_lsn() - '0/0'::pg_lsn"
_HISTORY = 4096  # primary samples kept: ~34 minutes at 0.5 s


class ReadRouter:
    """Run reads on the replica pool when it is healthy and fresh, else on the primary."""

    def __init__(self, primary: Any, replica: Any | None = None, *, max_lag_s: float = 5.0,
                 poll_interval_s: float = 0.5, acquire_timeout_s: float = 2.0,
                 catch_up_s: float = 0.2, read_your_writes: bool = True) -> None:
        self.primary = primary
        self.replica = replica
        self.max_lag_s = max_lag_s
        self.poll_interval_s = poll_interval_s
        self.acquire_timeout_s = acquire_timeout_s
        self.catch_up_s = catch_up_s
        self.read_your_writes = read_your_writes
        self.reads = {"replica": 0, "primary": 0}
        self.fallbacks = {"unreachable": 0, "lagging": 0, "behind": 0, "error": 0}
        self._reachable = False
        self._samples: deque[tuple[float, int]] = deque(maxlen=_HISTORY)
        self._fresh_at: float | None = None  # monotonic time the replica was last known fresh
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ state

    @property
    def lag_s(self) -> float | None:
        """Seconds of primary commits the replica may lack; None before the first look."""
        if self.replica is None or self._fresh_at is None:
            return None
        return max(0.0, time.monotonic() - self._fresh_at)

    @property
    def healthy(self) -> bool:
        """The replica answers and is within the lag bound."""
        lag = self.lag_s
        return self._reachable and lag is not None and lag <= self.max_lag_s

    async def start(self) -> None:
        """Look at the replica once, then keep looking in the background."""
        if self.replica is None or self._task is not None:
            return
        await self.poll()
        self._task = asyncio.create_task(self._monitor(), name="replica-monitor")

    async def close(self) -> None:
        """Stop the monitor and close the replica pool (the primary pool is the caller's)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.replica is not None:
            await self.replica.close()

    async def poll(self) -> None:
        """Sample the primary's WAL position, then the replica's; update lag and health."""
        if self.replica is None:
            return
        try:
            async with asyncio.timeout(self.acquire_timeout_s):
                primary_lsn = int(await self.primary.fetchval(_PRIMARY_LSN))
        except Exception as exc:  # the primary's own health check reports this
            logger.debug("replica monitor: primary not sampled: %s", exc)
            return
        self._samples.append((time.monotonic(), primary_lsn))
        try:
            async with asyncio.timeout(self.acquire_timeout_s):
                row = await self.replica.fetchrow(_REPLICA_STATE)
        except Exception as exc:
            self._set_reachable(False, f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(Exception):
                await self.replica.expire_connections()
            return
        if not row["standby"] or row["replayed"] is None:
            self._set_reachable(False, "not in recovery: it is no replica")
            return
        replayed = int(row["replayed"])
        fresh = [t for t, lsn in self._samples if lsn <= replayed]
        if fresh:
            self._fresh_at = max(fresh[-1], self._fresh_at or fresh[-1])
        elif self._fresh_at is None and self._samples:
            self._fresh_at = self._samples[0][0]  # behind every sample: at least this old
        self._set_reachable(True, "answers")

    def _set_reachable(self, reachable: bool, why: str) -> None:
        if reachable != self._reachable:
            logger.info("read replica %s (%s)", "reachable" if reachable else "unreachable", why)
        self._reachable = reachable

    async def _monitor(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            try:
                await self.poll()
            except Exception:
                logger.exception("replica monitor failed a round")

    # ------------------------------------------------------------------ reads

    async def run(self, read: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``read(conn)`` on the replica when healthy, else (or when it fails there
        because the replica went away, or it has not replayed what the primary had
        committed when the read began) on the primary."""
        if self.replica is not None:
            if self.healthy:
                served, result = await self._on_replica(read)
                if served:
                    self.reads["replica"] += 1
                    return result  # type: ignore[return-value]
            else:
                self.fallbacks["unreachable" if not self._reachable else "lagging"] += 1
        async with self.primary.acquire() as conn:
            result = await read(conn)
        self.reads["primary"] += 1
        return result

    async def _on_replica(self, read: Callable[[Any], Awaitable[T]]) -> tuple[bool, T | None]:
        """Try the read on the replica; (False, None) sends it to the primary."""
        assert self.replica is not None
        # Read-your-writes: the replica must have replayed the primary's position as of
        # now, so the read sees every commit that finished before it began (a backtest
        # right after its ingestion sees every bar). Unknown when the primary is down:
        # then the replica serves what it has. Asked while the replica connection is
        # being acquired.
        position = asyncio.ensure_future(self._primary_position() if self.read_your_writes
                                         else _none())
        try:
            async with asyncio.timeout(self.acquire_timeout_s):
                conn = await self.replica.acquire()
        except _REPLICA_GONE as exc:
            await position
            await self._fallback("unreachable", exc)
            return False, None
        target = await position
        failed: BaseException | None = None
        try:
            if target is not None and not await self._replayed(conn, target):
                self.fallbacks["behind"] += 1
                return False, None
            return True, await read(conn)
        except _REPLICA_GONE as exc:
            failed = exc
        finally:
            await self._release(conn)
        await self._fallback("error", failed)
        return False, None

    async def _primary_position(self) -> int | None:
        try:
            async with asyncio.timeout(self.acquire_timeout_s):
                return int(await self.primary.fetchval(_PRIMARY_LSN))
        except Exception:
            return None

    async def _replayed(self, conn: Any, target: int) -> bool:
        """Wait up to ``catch_up_s`` for the replica to replay WAL position ``target``."""
        deadline = time.monotonic() + self.catch_up_s
        while True:
            replayed = await conn.fetchval(_REPLAYED)
            if replayed is not None and int(replayed) >= target:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.005)

    async def _release(self, conn: Any) -> None:
        """Give the connection back. When the replica dropped it meanwhile the pool's
        reset fails (and the pool discards it): a read that had already finished stands."""
        assert self.replica is not None
        try:
            await self.replica.release(conn)
        except _REPLICA_GONE as exc:
            self._set_reachable(False, f"release failed: {type(exc).__name__}: {exc}")

    async def _fallback(self, reason: str, exc: BaseException) -> None:
        self.fallbacks[reason] += 1
        self._set_reachable(False, f"read failed: {type(exc).__name__}: {exc}")
        if self.replica is not None:
            with contextlib.suppress(Exception):
                await self.replica.expire_connections()


async def _none() -> None:
    return None


class ReplicaCollector(Collector):
    """Expose a router's state on a Prometheus registry."""

    def __init__(self, router: ReadRouter) -> None:
        self._router = router

    def collect(self) -> Iterator[Metric]:
        r = self._router
        reads = CounterMetricFamily("usdcarb_pg_replica_reads",
                                    "Candle reads by the database that served them.",
                                    labels=["target"])
        for target, n in r.reads.items():
            reads.add_metric([target], n)
        yield reads
        if r.replica is None:
            return
        fallbacks = CounterMetricFamily(
            "usdcarb_pg_replica_fallbacks",
            "Candle reads sent to the primary although a replica is configured, by reason.",
            labels=["reason"])
        for reason, n in r.fallbacks.items():
            fallbacks.add_metric([reason], n)
        yield fallbacks
        lag = r.lag_s
        if lag is not None:
            yield GaugeMetricFamily(
                "usdcarb_pg_replica_lag_seconds",
                "Age of the newest primary state the read replica is known to hold.", value=lag)
        yield GaugeMetricFamily("usdcarb_pg_replica_healthy",
                                "1 when the read replica answers within the lag bound.",
                                value=1.0 if r.healthy else 0.0)
        yield GaugeMetricFamily("usdcarb_pg_replica_max_lag_seconds",
                                "Largest replica lag at which reads still go to the replica.",
                                value=r.max_lag_s)


async def open_read_router(primary: Any, replica_dsn: str, *, max_lag_s: float,
                           pool_max: int, search_path: str | None = None,
                           poll_interval_s: float = 0.5,
                           read_your_writes: bool = True) -> ReadRouter:
    """Return a started router: the replica pool on ``replica_dsn`` (none when empty).

    The replica pool opens no connection up front, so a replica that is down at start-up
    costs nothing but the fallback to the primary.
    """
    replica = None
    if replica_dsn:
        replica = await create_pool(replica_dsn, 0, pool_max, attempts=1,
                                    search_path=search_path)
    router = ReadRouter(primary, replica, max_lag_s=max_lag_s, poll_interval_s=poll_interval_s,
                        read_your_writes=read_your_writes)
    await router.start()
    return router


async def service_read_router(settings: PlatformSettings, primary: Any, *,
                              search_path: str | None = None) -> ReadRouter:
    """Return the started router of a service: its replica from ``replica_database_url``
    and ``replica_max_lag_s`` (no replica when the URL is empty)."""
    return await open_read_router(
        primary, settings.replica_database_url.get_secret_value(),
        max_lag_s=settings.replica_max_lag_s, pool_max=settings.db_pool_max,
        search_path=search_path)
