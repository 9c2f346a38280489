"""A PostgreSQL restart while a paper run follows its bars (issue 18): the database's
errors pause the run — it stays RUNNING, the replica's supervisor claims it again once
the database answers — and no bar is processed twice or skipped: its fills and equity
equal a backtest of the same stored bars. PostgreSQL of its own (restarted here), the
strategy service in-process on the session's."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path
from typing import Any

import grpc
import pytest
from tests.paper.paper_helpers import (
    BAR_MS,
    KEYS,
    KIND,
    PARAMS,
    START_MS,
    bars,
    config,
    deploy_paper,
)
from tests.paper.test_paper_runner import (
    assert_equal_to_backtest,
    backtest_of,
    paper_fills,
    store,
)

from testkit import eventually
from usdcarb.backtest.paper.service import PaperService
from usdcarb.backtest.strategy_client import StrategyClient
from usdcarb.devstack import PostgresServer, scratch_dir
from usdcarb.platform import db
from usdcarb.platform.db import create_pool
from usdcarb.platform.migrations import apply_migrations
from usdcarb.platform.testing import DevServiceToken, authed_channel, start_in_process
from usdcarb.strategy.main import SERVICE as STRATEGY
from usdcarb.strategy.main import build as build_strategy
from usdcarb.v1 import strategy_pb2_grpc

pytestmark = pytest.mark.integration
SERVICES = Path(__file__).resolve().parents[2] / "services" / "usdcarb"
CHUNK = 25   # bars stored per venue at a time: fewer than stale_after_bars (30)


async def committed(bt: Any, dep: str) -> Any:
    try:
        return await bt.fetchrow("SELECT state, bars, error FROM paper_runs "
                                 "WHERE deployment = $1", dep)
    except db.UNAVAILABLE:
        return None


async def test_postgres_restart_pauses_the_run_and_no_bar_is_twice_or_skipped(
        service_pool: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="usdcarb.backtest.paper")
    root = scratch_dir("usdcarb-paper-pg-")
    pg = PostgresServer(root / "pg", fast=True)
    n = 300
    t, c, v = bars(n, seed=5)
    try:
        await asyncio.to_thread(pg.start)
        await asyncio.to_thread(pg.create_database, "usdcarb")
        await asyncio.to_thread(pg.psql, "CREATE EXTENSION IF NOT EXISTS timescaledb",
                                database="usdcarb")
        ing = await create_pool(pg.dsn("usdcarb"), 1, 4, search_path="ingestion, public")
        bt = await create_pool(pg.dsn("usdcarb"), 1, 6, search_path="backtest, public")
        await apply_migrations(ing, "ingestion", SERVICES / "ingestion" / "migrations")
        await apply_migrations(bt, "backtest", SERVICES / "backtest" / "migrations")
        table = "ingestion.market_data"
        async with await start_in_process([STRATEGY], build_strategy(
                await service_pool("strategy"))) as ss, authed_channel(ss.address) as sch:
            dep = await deploy_paper(strategy_pb2_grpc.StrategyServiceStub(sch), PARAMS)
            strategy = StrategyClient(grpc.aio.insecure_channel(ss.address),
                                      DevServiceToken("backtest"))
            paper = PaperService(bt, strategy, market_table=table, replica="r1", lease_s=2.0,
                                 poll_s=0.05)
            assert await paper.runner.create(
                deployment=dep, strategy_version="strategies/x/versions/v1", kind=KIND,
                params=PARAMS, config=config(), keys=KEYS, stale_after_bars=30)
            paper.start()
            try:
                for i in range(0, n, CHUNK):
                    s = slice(i, i + CHUNK)
                    for k, (venue, _) in enumerate(KEYS):
                        await store(ing, table, venue, t[s], c[k, s], v[k, s])
                    if i == 100:   # bars keep arriving; the database goes away under it
                        await eventually(lambda: at_least(bt, dep, 100), within_s=120)
                        await asyncio.to_thread(pg.restart)
                        await eventually(lambda: committed(bt, dep), within_s=60)
                await eventually(lambda: at_least(bt, dep, n), within_s=120)
                row = await committed(bt, dep)
                assert row["state"] == "RUNNING" and row["bars"] == n, row["error"]
                assert paper.following() == [dep]
            finally:
                await paper.close()
                await strategy.close()
        assert "paused, the database is unavailable" in caplog.text
        seen = await bt.fetch("SELECT bar, time_ms FROM paper_bars WHERE deployment = $1 "
                              "ORDER BY bar", dep)
        assert [(r["bar"], r["time_ms"]) for r in seen] == [
            (k, START_MS + k * BAR_MS) for k in range(n)]
        equity = [r["equity"] for r in await bt.fetch(
            "SELECT equity FROM paper_bars WHERE deployment = $1 ORDER BY bar", dep)]
        assert_equal_to_backtest(await paper_fills(bt, dep), equity,
                                 await backtest_of(ing, table, START_MS, n))
        await ing.close()
        await bt.close()
    finally:
        await asyncio.to_thread(pg.stop)
        shutil.rmtree(root, ignore_errors=True)


async def at_least(bt: Any, dep: str, k: int) -> bool:
    row = await committed(bt, dep)
    if row is not None:
        assert row["state"] == "RUNNING", row["error"]   # never FAILED by the outage
    return row is not None and row["bars"] >= k
