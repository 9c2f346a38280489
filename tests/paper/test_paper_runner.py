"""Paper runs against real PostgreSQL + TimescaleDB: bars stored by the ingestion writer
arrive on two venues; the runner commits them bar by bar and its fills and equity equal
a backtest of the same version over the same stored bars; a SIGKILLed runner is taken
over by another replica with no bar processed twice or skipped; a stopped run's runner
exits (issue 18)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from typing import Any

import asyncpg
import numpy as np
import pytest
from tests.paper.paper_helpers import BAR_MS, KEYS, KIND, PARAMS, START_MS, bars, config

from testkit import eventually
from usdcarb.backtest.engine import run_backtest
from usdcarb.backtest.engine.params import required_series
from usdcarb.backtest.loading import load_market
from usdcarb.backtest.paper.runner import PaperRunner, paper_spec
from usdcarb.marketdata.writer import write_series

pytestmark = pytest.mark.integration

DEP = "strategies/usdc-spread/deployments/d1"


async def store(ing: asyncpg.Pool, table: str, venue: str, t: Any, c: Any, v: Any) -> None:
    """Store bars as ingestion does (one transaction, the hypertable's writer)."""
    keep = ~np.isnan(c)
    if not keep.any():
        return
    async with ing.acquire() as conn, conn.transaction():
        await write_series(conn, exchange=venue, symbol="USDC/USDT", timeframe="1m",
                           timeframe_ms=BAR_MS, open_time_ms=t[keep], open_=c[keep],
                           high=c[keep], low=c[keep], close=c[keep], volume=v[keep],
                           table=table)


async def pools(service_pool: Any) -> tuple[asyncpg.Pool, asyncpg.Pool, str, str]:
    ing = await service_pool("ingestion")
    bt = await service_pool("backtest")
    ing_schema = await ing.fetchval("SELECT current_schema()")
    bt_schema = await bt.fetchval("SELECT current_schema()")
    return ing, bt, f"{ing_schema}.market_data", bt_schema


async def backtest_of(ing: asyncpg.Pool, table: str, start_ms: int, n: int) -> Any:
    """The same version backtested over the same stored bars, as the service loads them."""
    spec = paper_spec(config(), required_series(KIND, PARAMS))
    loaded = await load_market(ing, KEYS, timeframe="1m", timeframe_ms=BAR_MS,
                               start_ms=start_ms, end_ms=start_ms + n * BAR_MS, table=table)
    return run_backtest(KIND, PARAMS, spec.engine, loaded.frame)


async def paper_fills(bt: asyncpg.Pool, dep: str) -> list[tuple[Any, ...]]:
    rows = await bt.fetch(
        """SELECT seq, bar, time_ms, venue, symbol, side, quantity, price, fee, slippage,
                  round_trip, signal_bar FROM paper_fills WHERE deployment = $1 ORDER BY seq""",
        dep)
    return [tuple(r) for r in rows]


def assert_equal_to_backtest(fills: list[tuple[Any, ...]], equity: list[float],
                             ref: Any) -> None:
    tr = ref.trades
    assert len(fills) == len(tr.bar) > 10
    assert [f[1] for f in fills] == list(tr.bar)
    assert [f[3] for f in fills] == list(tr.venue)
    assert [f[5] * f[6] for f in fills] == list(tr.side * tr.quantity)
    assert [f[7] for f in fills] == list(tr.price)
    assert [f[8] for f in fills] == list(tr.fee)
    assert [f[10] for f in fills] == list(tr.round_trip)
    assert equity == list(ref.equity)


async def test_paper_run_equals_the_backtest_of_the_same_bars(service_pool: Any) -> None:
    ing, bt, table, _ = await pools(service_pool)
    n = 500
    t, c, v = bars(n + 20)
    runner = PaperRunner(bt, market_table=table, replica="r1")
    assert await runner.create(deployment=DEP, strategy_version="strategies/usdc-spread/"
                               "versions/v1", kind=KIND, params=PARAMS, config=config(),
                               keys=KEYS, stale_after_bars=30)
    assert not await runner.create(deployment=DEP, strategy_version="x", kind=KIND,
                                   params=PARAMS, config=config(), keys=KEYS)
    assert await runner.claim(DEP)
    assert not await PaperRunner(bt, market_table=table, replica="r2").claim(DEP)
    for i in range(0, n, 25):   # binance's bars land first, kraken's a moment later
        s = slice(i, i + 25)
        await store(ing, table, "binance", t[s], c[0, s], v[0, s])
        done = await runner.advance(DEP)
        assert done == []        # kraken has not closed these bars yet, and is not stale
        await store(ing, table, "kraken", t[s], c[1, s], v[1, s])
        done = await runner.advance(DEP)
        assert [d.bar for d in done] == list(range(i, i + 25))
        assert all(d.missing == () for d in done)
    run = await bt.fetchrow("SELECT * FROM paper_runs WHERE deployment = $1", DEP)
    assert run["bars"] == n and run["late_bars"] == 0
    equity = [r["equity"] for r in await bt.fetch(
        "SELECT equity FROM paper_bars WHERE deployment = $1 ORDER BY bar", DEP)]
    ref = await backtest_of(ing, table, START_MS, n)
    assert_equal_to_backtest(await paper_fills(bt, DEP), equity, ref)
    assert run["equity"] == ref.equity[-1]
    assert run["fills"] == len(ref.trades.bar)
    assert run["metrics"]["total_pnl"] == ref.metrics["total_pnl"]

    # A venue that stalls: kraken stops; once binance is 2 bars ahead (the bound of this
    # run, set to 2 now), kraken's bar counts as missing, as a backtest's missing bar.
    await bt.execute("UPDATE paper_runs SET stale_after_bars = 2 WHERE deployment = $1", DEP)
    await store(ing, table, "binance", t[n:n + 5], c[0, n:n + 5], v[0, n:n + 5])
    done = await runner.advance(DEP)
    assert [(d.bar, d.missing) for d in done] == [(n + k, ("kraken:USDC/USDT",))
                                                  for k in range(3)]
    await store(ing, table, "kraken", t[n:n + 5], c[1, n:n + 5], v[1, n:n + 5])
    done = await runner.advance(DEP)   # the late bars are not re-processed
    assert [(d.bar, d.missing) for d in done] == [(n + 3, ()), (n + 4, ())]
    assert await bt.fetchval("SELECT late_bars FROM paper_runs WHERE deployment = $1",
                             DEP) == 3
    # The run saw kraken's bars n..n+2 as missing: its result is a backtest of the bars
    # as it saw them, recorded in paper_bars.
    seen = await bt.fetch("SELECT time_ms, closes, volumes, equity FROM paper_bars "
                          "WHERE deployment = $1 ORDER BY bar", DEP)
    book = runner._books[DEP]
    frame = book.frame(np.array([r["time_ms"] for r in seen], np.int64),
                       np.ascontiguousarray(np.array([r["closes"] for r in seen]).T),
                       np.ascontiguousarray(np.array([r["volumes"] for r in seen]).T))
    spec = paper_spec(config(), required_series(KIND, PARAMS))
    assert [r["equity"] for r in seen] == list(run_backtest(KIND, PARAMS, spec.engine,
                                                            frame).equity)
    assert await runner.stop(DEP)
    assert not await runner.claim(DEP)


async def test_sigkilled_runner_is_taken_over_without_a_bar_twice_or_skipped(
        service_pool: Any, postgres: Any) -> None:
    ing, bt, table, schema = await pools(service_pool)
    n = 300
    t, c, v = bars(n, seed=11)
    runner = PaperRunner(bt, market_table=table, replica="setup")
    for dep in (DEP, DEP + "-uninterrupted"):
        await runner.create(deployment=dep, strategy_version="strategies/usdc-spread/"
                            "versions/v1", kind=KIND, params=PARAMS, config=config(),
                            keys=KEYS, stale_after_bars=30)

    def replica(name: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "usdcarb.backtest.paper.runner", "--dsn",
             postgres.dsn("usdcarb"), "--schema", schema, "--market-table", table,
             "--replica", name, "--deployment", DEP, "--lease", "1.0", "--poll", "0.05"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ)

    async def committed() -> int:
        return int(await bt.fetchval("SELECT bars FROM paper_runs WHERE deployment = $1",
                                     DEP))

    first = replica("a")
    second: subprocess.Popen[str] | None = None
    try:
        for i in range(0, n, 20):
            s = slice(i, i + 20)
            await store(ing, table, "binance", t[s], c[0, s], v[0, s])
            await store(ing, table, "kraken", t[s], c[1, s], v[1, s])
            if i == 120:
                try:
                    await eventually(lambda: committed_at_least(bt, 100), within_s=60)
                except AssertionError:
                    first.kill()
                    raise AssertionError(first.communicate()[0]) from None
                first.send_signal(signal.SIGKILL)   # mid-stream: bars keep arriving
                assert first.wait(10) == -signal.SIGKILL
                second = replica("b")
            await asyncio.sleep(0.05)
        await eventually(lambda: committed_at_least(bt, n), within_s=120)
        assert await committed() == n
        holder = await bt.fetchval("SELECT lease_owner FROM paper_runs WHERE deployment = $1",
                                   DEP)
        assert holder == "b"
        # The uninterrupted run of the same version over the same bars, in-process.
        other = PaperRunner(bt, market_table=table, replica="c")
        assert await other.claim(DEP + "-uninterrupted")
        while await other.advance(DEP + "-uninterrupted"):
            pass
        bars_seen = await bt.fetch("SELECT bar, time_ms FROM paper_bars WHERE deployment = $1 "
                                   "ORDER BY bar", DEP)
        assert [(r["bar"], r["time_ms"]) for r in bars_seen] == [
            (k, START_MS + k * BAR_MS) for k in range(n)]
        killed = await paper_fills(bt, DEP)
        straight = await paper_fills(bt, DEP + "-uninterrupted")
        assert killed == straight and len(killed) > 10
        equity = [r["equity"] for r in await bt.fetch(
            "SELECT equity FROM paper_bars WHERE deployment = $1 ORDER BY bar", DEP)]
        assert_equal_to_backtest(killed, equity, await backtest_of(ing, table, START_MS, n))
        # Stopping the run stops its runner: the replica exits, nothing keeps running.
        assert await runner.stop(DEP)
        assert second is not None
        assert second.wait(30) == 0
        out = second.stdout.read() if second.stdout else ""
        assert "run STOPPED" in out, out
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


async def committed_at_least(bt: asyncpg.Pool, k: int) -> bool:
    return int(await bt.fetchval("SELECT bars FROM paper_runs WHERE deployment = $1",
                                 DEP)) >= k
