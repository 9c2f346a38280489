"""pgBackRest against a real PostgreSQL + TimescaleDB cluster: PITR and online backups.

The cluster archives every WAL segment into a repository under a scratch folder; each
restore goes into a fresh data directory and is started on its own loopback port.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import numpy as np
import pytest

from dbops.dbops_helpers import fast_scratch
from usdcarb.devstack import PostgresServer
from usdcarb.devstack.pgbackrest import PgBackRest
from usdcarb.marketdata.reader import read_candles
from usdcarb.platform.db import create_pool
from usdcarb.platform.migrations import apply_migrations

pytestmark = pytest.mark.integration

MIGRATIONS = Path(__file__).resolve().parents[2] / "services/usdcarb/ingestion/migrations"
MINUTE_MS = 60_000
T0 = int(datetime(2023, 3, 10, tzinfo=UTC).timestamp() * 1000)
SERIES = ("binance", "BTC/USDC", "1m")


@dataclass
class Archived:
    root: Path
    primary: PostgresServer
    backrest: PgBackRest
    pool: asyncpg.Pool


@pytest.fixture(scope="module")
def archived_cluster() -> Iterator[tuple[Path, PostgresServer, PgBackRest]]:
    root = fast_scratch("usdcarb-dbops-")
    primary = PostgresServer(root / "pg", fast=True)
    backrest = PgBackRest(root / "pgbackrest", primary)
    primary.settings.update(backrest.archive_settings())
    # No replica here: keep pg_wal small (less to write and to delete afterwards).
    primary.settings.update({"wal_keep_size": 0, "min_wal_size": "32MB", "max_wal_size": "256MB"})
    try:
        backrest.write_config()
        primary.start()
        primary.create_database("usdcarb")
        backrest.stanza_create()
        yield root, primary, backrest
    finally:
        primary.stop("immediate")  # a throwaway cluster: no waiting for the archiver
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def archived(archived_cluster: tuple[Path, PostgresServer, PgBackRest]
                   ) -> AsyncIterator[Archived]:
    root, primary, backrest = archived_cluster
    pool = await create_pool(primary.dsn("usdcarb"), 1, 4, search_path="ingestion, public")
    await apply_migrations(pool, "ingestion", MIGRATIONS)
    await pool.execute("TRUNCATE market_data")
    try:
        yield Archived(root, primary, backrest, pool)
    finally:
        await pool.close()


async def ingest(pool: asyncpg.Pool, first: int, n: int, *, price: float = 1.0) -> None:
    """Store bars first..first+n-1 (minutes after T0) of SERIES in one transaction."""
    ts = [datetime.fromtimestamp((T0 + (first + i) * MINUTE_MS) / 1000, UTC) for i in range(n)]
    px = [price + (first + i) * 1e-4 for i in range(n)]
    await pool.execute(
        "INSERT INTO market_data (exchange, symbol, timeframe, ts, open, high, low, close, "
        "volume) SELECT $1, $2, $3, t, p, p + 0.5, p - 0.5, p + 0.1, 10 "
        "FROM unnest($4::timestamptz[], $5::float8[]) AS u(t, p)", *SERIES, ts, px)


async def snapshot(dsn: str) -> tuple[int, str]:
    """Count and content hash of SERIES as the candle reader returns it."""
    conn = await asyncpg.connect(dsn)
    try:
        c = await read_candles(conn, exchange=SERIES[0], symbol=SERIES[1], timeframe=SERIES[2],
                               start=datetime(2000, 1, 1, tzinfo=UTC),
                               end=datetime(2100, 1, 1, tzinfo=UTC))
    finally:
        await conn.close()
    h = hashlib.sha256()
    for col in (c.open_time_ms, c.open, c.high, c.low, c.close, c.volume, c.provenance):
        h.update(np.ascontiguousarray(col).tobytes())
    return len(c), h.hexdigest()


async def until(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected the condition within {timeout_s} s")


def start_restored(root: Path, name: str) -> PostgresServer:
    return PgBackRest.start_restored(root / name, fast=True)


async def test_point_in_time_restore_returns_exactly_the_bars_at_t(archived: Archived) -> None:
    a = archived
    await ingest(a.pool, 0, 2_000)
    full = a.backrest.backup("full")
    # pgBackRest picks the newest backup whose stop time (whole seconds) is <= the target;
    # a T within the second the backup stopped would find none.
    await asyncio.sleep(max(0.0, full.stop + 1 - time.time()))
    await ingest(a.pool, 2_000, 500)
    await a.pool.execute("DELETE FROM market_data WHERE ts < $1",
                         datetime.fromtimestamp((T0 + 10 * MINUTE_MS) / 1000, UTC))
    at_t = await snapshot(a.primary.dsn("usdcarb"))
    target = await a.pool.fetchval("SELECT clock_timestamp()::text")
    assert at_t[0] == 2_490

    # After T: more bars, deletions, and a differential backup on top of the full one.
    await ingest(a.pool, 2_500, 700)
    await a.pool.execute("DELETE FROM market_data WHERE ts >= $1 AND ts < $2",
                         datetime.fromtimestamp((T0 + 100 * MINUTE_MS) / 1000, UTC),
                         datetime.fromtimestamp((T0 + 600 * MINUTE_MS) / 1000, UTC))
    diff = a.backrest.backup("diff")
    assert (full.type, diff.type) == ("full", "diff")
    after = await snapshot(a.primary.dsn("usdcarb"))
    assert after[0] == 2_490 + 700 - 500
    a.backrest.check()  # the segment holding the commits after T reaches the archive

    a.backrest.restore(a.root / "pitr", target_time=target)
    restored = start_restored(a.root, "pitr")
    try:
        assert await snapshot(restored.dsn("usdcarb")) == at_t
        newest = restored.psql("SELECT max(ts) FROM ingestion.market_data", database="usdcarb")
        assert newest.strip().startswith("2023-03-11 17:39:00")  # bar 2_499, nothing after
        # Promoted onto a timeline of its own: it accepts writes.
        restored.psql("INSERT INTO ingestion.market_data (exchange, symbol, timeframe, ts, "
                      "open, high, low, close, volume) VALUES ('x', 'y', '1m', now(), 1, 1, 1, "
                      "1, 1)", database="usdcarb")
    finally:
        restored.stop()


async def test_backup_taken_while_ingesting_restores_consistently(archived: Archived) -> None:
    a = archived
    batch = 50
    written = 0
    stop = asyncio.Event()

    async def writer() -> None:
        nonlocal written
        while not stop.is_set():
            await ingest(a.pool, written, batch)
            written += batch
            await asyncio.sleep(0.005)

    task = asyncio.create_task(writer())
    try:
        await until(lambda: written >= 1_000)
        before = written
        backup = await asyncio.to_thread(a.backrest.backup, "full")
        after = written
        await until(lambda: written >= after + 500)  # keeps writing after the backup's end
    finally:
        stop.set()
        await task
    assert before < after, "expected the ingestion to commit while the backup ran"

    a.backrest.restore(a.root / "online", immediate=True, backup_set=backup.label)
    restored = start_restored(a.root, "online")
    try:
        count, _ = await snapshot(restored.dsn("usdcarb"))
        # A consistent copy holds whole transactions only: a gap-free prefix of the batches,
        # with every batch committed before the backup began and none started after it ended.
        assert count % batch == 0
        # (a batch committed just before the backup's end may not be counted yet)
        assert before <= count <= after + batch
        bounds = restored.psql(
            "SELECT count(*), min(ts), max(ts) FROM ingestion.market_data", database="usdcarb")
        n, lo, hi = bounds.strip().split("|")
        assert int(n) == count
        span = (datetime.fromisoformat(hi) - datetime.fromisoformat(lo)).total_seconds()
        assert span == (count - 1) * 60
        restored.psql("CREATE EXTENSION IF NOT EXISTS amcheck", database="usdcarb")
        restored.psql("SELECT bt_index_check(c.oid) FROM pg_index i JOIN pg_class c "
                      "ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam "
                      "WHERE am.amname = 'btree' AND c.relnamespace IN "
                      "('ingestion'::regnamespace, '_timescaledb_internal'::regnamespace)",
                      database="usdcarb")
    finally:
        restored.stop()
