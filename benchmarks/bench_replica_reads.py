"""Candle reads through the read router: replica (read-your-writes) vs the primary.

A real primary and a streaming-replication standby on loopback (usdcarb.devstack). The
ingestion store's candle read (what GetCandles runs) over one series, through
``ReadRouter``: served by the primary alone (no replica configured) and by the replica
(which first checks it has replayed the primary's position: two small queries, the primary's asked while the replica connection is acquired). Ratios:
replica time / primary time, per read size, with and without the read-your-writes check.
No target was set by the issue; what matters is that a large read costs the same on
either and a small one pays a few round trips.

    .venv/bin/python benchmarks/run.py --only replica_reads [--bars N] [--repeat K]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from usdcarb.devstack import PostgresServer, scratch_dir
from usdcarb.devstack.standby import StandbyServer
from usdcarb.ingestion.store import IngestStore
from usdcarb.platform.db import create_pool
from usdcarb.platform.migrations import apply_migrations
from usdcarb.platform.replica import ReadRouter, open_read_router

MIGRATIONS = Path(__file__).resolve().parents[1] / "services/usdcarb/ingestion/migrations"
T0 = datetime(2023, 3, 10, tzinfo=UTC)
SERIES = ("binance", "BTC/USDC", "1m")


async def timed(store: IngestStore, start: datetime, end: datetime, repeat: int) -> float:
    """Median seconds of one read of [start, end)."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        got, _, _ = await store.read(exchange=SERIES[0], symbol=SERIES[1],
                                     timeframe=SERIES[2], start=start, end=end)
        times.append(time.perf_counter() - t)
        assert len(got) > 0
    return statistics.median(times)


async def bench(bars: int, repeat: int) -> None:
    root = scratch_dir("usdcarb-bench-replica-")
    primary = PostgresServer(root / "pg", fast=True)
    standby = StandbyServer(root / "replica", primary)
    try:
        primary.start()
        primary.create_database("usdcarb")
        standby.start()
        pool = await create_pool(primary.dsn("usdcarb"), 1, 4, search_path="ingestion, public")
        await apply_migrations(pool, "ingestion", MIGRATIONS)
        t = time.perf_counter()
        await pool.execute(
            "INSERT INTO market_data (exchange, symbol, timeframe, ts, open, high, low, close, "
            "volume) SELECT $1, $2, $3, $4::timestamptz + make_interval(mins => i), "
            "1 + i * 1e-7, 1.5, 0.5, 1.1, 10 FROM generate_series(0, $5 - 1) i",
            *SERIES, T0, bars)
        print(f"stored {bars:,} bars in {time.perf_counter() - t:.1f}s")
        on_primary = IngestStore(pool, reads=ReadRouter(pool))
        end = T0 + timedelta(minutes=bars)
        await timed(on_primary, T0, end, 1)  # builds the block cache (replicated too)
        # As autovacuum would in time: hint bits are not WAL-logged, so until a vacuum
        # marks the new rows all-visible the standby checks each (TOASTed block chunks
        # included) against the commit log: ~2x slower small reads there.
        await pool.execute("VACUUM (ANALYZE) market_data")
        await pool.execute("VACUUM (ANALYZE) candle_blocks")
        await asyncio.to_thread(standby.wait_caught_up)
        router = await open_read_router(pool, standby.dsn("usdcarb"), max_lag_s=5.0,
                                        pool_max=4, search_path="ingestion, public")
        on_replica = IngestStore(pool, reads=router)
        loose = await open_read_router(pool, standby.dsn("usdcarb"), max_lag_s=5.0,
                                       pool_max=4, search_path="ingestion, public",
                                       read_your_writes=False)
        on_loose = IngestStore(pool, reads=loose)
        try:
            print(f"{'read':<22}{'primary':>11}{'replica':>11}{'ratio':>7}"
                  f"{'replica, no read-your-writes':>30}{'ratio':>7}")
            for label, span in (("1 day (1,440 bars)", timedelta(days=1)),
                                ("1 week (10,080 bars)", timedelta(days=7)),
                                (f"all ({bars:,} bars)", end - T0)):
                k = repeat if span < timedelta(days=30) else max(3, repeat // 20)
                p = await timed(on_primary, T0, T0 + span, k)
                r = await timed(on_replica, T0, T0 + span, k)
                n = await timed(on_loose, T0, T0 + span, k)
                print(f"{label:<22}{p * 1e3:>9.2f}ms{r * 1e3:>9.2f}ms{r / p:>6.2f}x"
                      f"{n * 1e3:>28.2f}ms{n / p:>6.2f}x")
            assert router.reads["replica"] > 0 and router.reads["primary"] == 0, router.reads
            assert loose.reads["replica"] > 0 and loose.reads["primary"] == 0, loose.reads
            print(f"replica served {router.reads['replica']} reads, "
                  f"lag {router.lag_s or 0:.2f}s, fallbacks {router.fallbacks}")
        finally:
            await loose.close()
            await router.close()
            await pool.close()
    finally:
        standby.stop()
        primary.stop()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=60)
    args, _ = parser.parse_known_args(argv)
    asyncio.run(bench(args.bars, args.repeat))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
