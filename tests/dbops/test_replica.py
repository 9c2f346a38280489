"""The read replica: a streaming-replication hot standby serving candle reads.

A real primary and a real standby (pg_basebackup + streaming) on loopback; the services'
own read paths (ingestion's candle reads, validation's context reads) through the
read router, its Prometheus series read back from a registry.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from dbops.dbops_helpers import fast_scratch
from testkit import eventually
from usdcarb.devstack import PostgresServer
from usdcarb.devstack.standby import StandbyServer
from usdcarb.ingestion.store import IngestStore
from usdcarb.platform.db import create_pool
from usdcarb.platform.migrations import apply_migrations
from usdcarb.platform.replica import ReadRouter, ReplicaCollector, open_read_router
from usdcarb.validation.model import Series
from usdcarb.validation.store import MarketData

pytestmark = pytest.mark.integration

MIGRATIONS = Path(__file__).resolve().parents[2] / "services/usdcarb/ingestion/migrations"
T0 = datetime(2023, 3, 10, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)
FAR = datetime(2100, 1, 1, tzinfo=UTC)
SERIES = ("binance", "BTC/USDC", "1m")


@pytest.fixture(scope="module")
def clusters() -> Iterator[tuple[PostgresServer, StandbyServer]]:
    root = fast_scratch("usdcarb-dbops-replica-")
    primary = PostgresServer(root / "pg", fast=True)
    standby = StandbyServer(root / "replica", primary)
    try:
        primary.start()
        primary.create_database("usdcarb")
        standby.start()
        yield primary, standby
    finally:
        standby.stop()
        primary.stop()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Env:
    primary: PostgresServer
    standby: StandbyServer
    pool: asyncpg.Pool
    router: ReadRouter

    def metrics(self) -> str:
        registry = CollectorRegistry()
        registry.register(ReplicaCollector(self.router))
        return generate_latest(registry).decode()


@pytest.fixture
async def env(clusters: tuple[PostgresServer, StandbyServer]) -> AsyncIterator[Env]:
    primary, standby = clusters
    if not standby.is_running():
        standby.start()
    pool = await create_pool(primary.dsn("usdcarb"), 1, 4, search_path="ingestion, public")
    await apply_migrations(pool, "ingestion", MIGRATIONS)
    await pool.execute("TRUNCATE market_data, candle_blocks")
    standby.wait_caught_up()
    router = await open_read_router(pool, standby.dsn("usdcarb"), max_lag_s=5.0, pool_max=4,
                                    search_path="ingestion, public", poll_interval_s=0.1)
    try:
        yield Env(primary, standby, pool, router)
    finally:
        await router.close()
        await pool.close()


async def ingest(pool: asyncpg.Pool, first: int, n: int) -> None:
    ts = [datetime.fromtimestamp((T0_MS + (first + i) * 60_000) / 1000, UTC) for i in range(n)]
    await pool.execute(
        "INSERT INTO market_data (exchange, symbol, timeframe, ts, open, high, low, close, "
        "volume) SELECT $1, $2, $3, t, 1, 1.5, 0.5, 1.1, 10 FROM unnest($4::timestamptz[]) t",
        *SERIES, ts)


async def candles(store: IngestStore) -> int:
    got, _, _ = await store.read(exchange=SERIES[0], symbol=SERIES[1], timeframe=SERIES[2],
                                 start=T0, end=FAR)
    return len(got)


async def test_candle_reads_are_served_by_the_replica_until_it_lags_past_the_bound(
        env: Env) -> None:
    store = IngestStore(env.pool, reads=env.router)
    market = MarketData(env.pool, "ingestion.market_data", reads=env.router)
    await ingest(env.pool, 0, 300)
    env.standby.wait_caught_up()
    await eventually(lambda: env.router.healthy)
    assert await candles(store) == 300
    bars = await market.read(Series(*SERIES), T0_MS, T0_MS + 10_000 * 60_000)
    assert len(bars.open_time_ms) == 300
    assert env.router.reads == {"replica": 2, "primary": 0}
    text = env.metrics()
    assert 'usdcarb_pg_replica_reads_total{target="replica"} 2.0' in text
    assert "usdcarb_pg_replica_healthy 1.0" in text
    assert "usdcarb_pg_replica_lag_seconds " in text

    # Replay paused: the replica no longer sees new bars. A read never returns less than
    # what was committed before it began: still within the bound, the replica has not
    # replayed the new bars, so the primary serves the read; past the bound, the
    # primary serves every read without asking the replica.
    env.standby.psql("SELECT pg_wal_replay_pause()")
    try:
        await ingest(env.pool, 300, 50)
        assert await candles(store) == 350
        assert env.router.reads == {"replica": 2, "primary": 1}
        assert env.router.fallbacks["behind"] == 1
        env.router.max_lag_s = 0.5
        await eventually(lambda: not env.router.healthy, within_s=10)
        assert await candles(store) == 350
        assert env.router.reads == {"replica": 2, "primary": 2}
        assert env.router.fallbacks["lagging"] == 1
        text = env.metrics()
        assert "usdcarb_pg_replica_healthy 0.0" in text
        assert 'usdcarb_pg_replica_fallbacks_total{reason="lagging"} 1.0' in text
        assert 'usdcarb_pg_replica_fallbacks_total{reason="behind"} 1.0' in text
        lag = float(next(line.split()[1] for line in text.splitlines()
                         if line.startswith("usdcarb_pg_replica_lag_seconds ")))
        assert lag > 0.5
    finally:
        env.standby.psql("SELECT pg_wal_replay_resume()")
    await eventually(lambda: env.router.healthy, within_s=10)
    assert await candles(store) == 350
    assert env.router.reads["replica"] == 3
    # What the replica served is what the primary holds (the same bars, not a copy).
    assert env.standby.psql("SELECT count(*) FROM ingestion.market_data",
                            database="usdcarb").strip() == "350"


async def test_reads_fall_back_to_the_primary_without_a_failure_when_the_replica_stops(
        env: Env) -> None:
    store = IngestStore(env.pool, reads=env.router)
    await ingest(env.pool, 0, 2_000)
    env.standby.wait_caught_up()
    await eventually(lambda: env.router.healthy)
    results: list[int] = []
    errors: list[BaseException] = []
    stop = asyncio.Event()

    async def reader() -> None:
        while not stop.is_set():
            try:
                results.append(await candles(store))
            except Exception as exc:  # any failed read fails the test
                errors.append(exc)
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(reader()) for _ in range(4)]
    try:
        await eventually(lambda: env.router.reads["replica"] >= 20)
        await asyncio.to_thread(env.standby.stop, "immediate")  # like a crash
        served = env.router.reads["primary"]
        await eventually(lambda: env.router.reads["primary"] >= served + 20)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert errors == []
    assert set(results) == {2_000}
    assert not env.router.healthy
    assert sum(env.router.fallbacks.values()) >= 20
    assert "usdcarb_pg_replica_healthy 0.0" in env.metrics()

    # Back: the monitor sees it and reads return to it.
    await asyncio.to_thread(env.standby.start)
    await eventually(lambda: env.router.healthy, within_s=30)
    before = env.router.reads["replica"]
    assert await candles(store) == 2_000
    assert env.router.reads["replica"] == before + 1
