"""The divergence report of a paper run against real PostgreSQL + TimescaleDB and Redis
(issue 18): with every bar on time the report shows no differing fill and equal PnL;
with one venue's bars stored after the runner moved past them it names exactly the fills
that differ from the backtest of the same stored bars, each with the late bar behind it;
a run with a bound publishes EVENT_TYPE_DEPLOYMENT_DIVERGED once per crossing."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta
from functools import partial
from typing import Any

import numpy as np
import pytest
from tests.paper.paper_helpers import BAR_MS, KEYS, KIND, PARAMS, START, START_MS, bars, config
from tests.paper.test_paper_runner import backtest_of, paper_fills, pools, store

from usdcarb.backtest.paper.divergence import LATE_BAR
from usdcarb.backtest.paper.runner import PaperRunner
from usdcarb.backtest.paper.tracking import PaperTracker
from usdcarb.platform import events
from usdcarb.platform.errors import FailedPrecondition, InvalidArgument, NotFound
from usdcarb.platform.events import DomainEvent
from usdcarb.platform.redis import create_redis

pytestmark = pytest.mark.integration

VERSION = "strategies/usdc-spread/versions/v1"
N = 240
DELAYED = range(100, 120)   # kraken's bars of phase 2 stored after the run passed them


def _key(f: Any) -> tuple[Any, ...]:
    """A fill as compared (round-trip numbers aside): time, market, side, size, price."""
    return (f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9])


async def test_divergence_names_the_fills_of_late_bars(service_pool: Any,
                                                       redis_server: Any) -> None:
    ing, bt, table, _ = await pools(service_pool)
    redis = await create_redis(redis_server.url)
    stream = f"test:paper-divergence:{uuid.uuid4().hex[:8]}"
    tracker = PaperTracker(bt, market_table=table,
                           emit=partial(events.publish, redis, stream=stream))
    runner = PaperRunner(bt, market_table=table, replica="r1")
    t, c, v = bars(2 * N + 40, seed=5)
    try:
        # Phase 1: every bar on time. Zero differences, the same PnL.
        on_time = "strategies/usdc-spread/deployments/on-time"
        await runner.create(deployment=on_time, strategy_version=VERSION, kind=KIND,
                            params=PARAMS, config=config(), keys=KEYS, stale_after_bars=2)
        assert await runner.claim(on_time)
        for i in range(0, N, 40):
            s = slice(i, i + 40)
            await store(ing, table, "binance", t[s], c[0, s], v[0, s])
            await store(ing, table, "kraken", t[s], c[1, s], v[1, s])
            await runner.advance(on_time)
        report = await tracker.report(on_time)
        assert report.bars == N - 2 or report.bars == N    # the last bars may wait
        assert report.differences == [] and report.paper_fills == report.backtest_fills > 10
        assert report.paper_pnl == report.backtest_pnl
        assert list(report.paper_equity) == list(report.backtest_equity)
        assert report.causes.late_bars() == report.causes.gap_bars() == 0

        # Phase 2: a run from bar N on, where kraken's bars DELAYED arrive late.
        late = "strategies/usdc-spread/deployments/late"
        start = START + timedelta(minutes=N)
        await runner.create(deployment=late, strategy_version=VERSION, kind=KIND,
                            params=PARAMS, config=config(start), keys=KEYS, stale_after_bars=2)
        await tracker.set_bound(late, 1e-6)
        assert await runner.claim(late)
        held = np.zeros(len(t), bool)
        held[[N + k for k in DELAYED]] = True
        checks: list[bool | None] = []
        for i in range(N, 2 * N, 10):
            s = slice(i, i + 10)
            await store(ing, table, "binance", t[s], c[0, s], v[0, s])
            kc = np.where(held[s], np.nan, c[1, s])
            await store(ing, table, "kraken", t[s], kc, v[1, s])
            await runner.advance(late)
            done = int(await bt.fetchval("SELECT bars FROM paper_runs WHERE deployment = $1",
                                         late))
            if held.any() and done > DELAYED.stop + 2:   # the run has passed them: store
                idx = np.flatnonzero(held)                # the late bars now
                await store(ing, table, "kraken", t[idx], c[1, idx], v[1, idx])
                held[:] = False
            checks.append(await tracker.check(late))
        assert not held.any()
        assert await bt.fetchval("SELECT late_bars FROM paper_runs WHERE deployment = $1",
                                 late) == len(DELAYED)
        report = await tracker.report(late)
        n = report.bars
        ref = await backtest_of(ing, table, START_MS + N * BAR_MS, n)
        assert list(ref.equity) == list(report.backtest_equity)
        fills = await paper_fills(bt, late)
        assert report.paper_fills == len(fills) and report.backtest_fills == len(ref.trades)
        # Exactly the fills that differ: the paper fills the backtest lacks, and the
        # reverse (as multisets of time, market, side, quantity, price, fee).
        paper_keys = Counter(_key(f) for f in fills)
        tr = ref.trades
        start_ms = START_MS + N * BAR_MS
        back_keys = Counter((int(start_ms + tr.bar[k] * BAR_MS), tr.venue[k], tr.symbol[k],
                             int(tr.side[k]), float(tr.quantity[k]), float(tr.price[k]),
                             float(tr.fee[k]), float(tr.slippage[k])) for k in range(len(tr)))
        only_paper, only_back = paper_keys - back_keys, back_keys - paper_keys
        assert only_paper or only_back
        diffs = report.differences
        assert Counter(_row(d.paper) for d in diffs if d.paper is not None) == only_paper
        assert Counter(_row(d.backtest) for d in diffs if d.backtest is not None) == only_back
        # Paged through the API's message: the same differences, in the same order.
        name = late + "/paperDivergence"
        page = await tracker.divergence(name, 3, "")
        assert list(page.time_ms) == list(report.time_ms)
        assert list(page.backtest_equity_curve) == list(report.backtest_equity)
        assert page.differing_fills == len(diffs) and page.late_bars == len(DELAYED)
        got = list(page.differences)
        while page.next_page_token:
            page = await tracker.divergence(name, 3, page.next_page_token)
            assert not page.time_ms   # the curves come with the first page only
            got += page.differences
        assert [(g.paper.time.ToMilliseconds() if g.HasField("paper") else None,
                 g.backtest.time.ToMilliseconds() if g.HasField("backtest") else None)
                for g in got] == [(d.paper.time_ms if d.paper else None,
                                   d.backtest.time_ms if d.backtest else None) for d in diffs]
        assert got[0].cause_markets == ["kraken:USDC/USDT"]
        with pytest.raises(InvalidArgument):
            await tracker.divergence(name, 3, "bm90LWEtdG9rZW4")
        with pytest.raises(InvalidArgument):
            await tracker.divergence(late + "/paperRun", 3, "")
        with pytest.raises(NotFound):
            await tracker.divergence("strategies/x/deployments/none/paperDivergence", 0, "")
        fresh = "strategies/usdc-spread/deployments/fresh"
        await runner.create(deployment=fresh, strategy_version=VERSION, kind=KIND,
                            params=PARAMS, config=config(), keys=KEYS)
        with pytest.raises(FailedPrecondition) as refused:
            await tracker.divergence(fresh + "/paperDivergence", 0, "")
        assert refused.value.reason == "PAPER_RUN_NOT_STARTED"

        # The first differing fill comes from a late bar of kraken; none before it.
        first_delayed_ms = START_MS + (N + DELAYED.start) * BAR_MS
        assert diffs[0].reason == LATE_BAR
        assert diffs[0].cause_markets == ("kraken:USDC/USDT",)
        assert diffs[0].cause_bar is not None and diffs[0].cause_bar in DELAYED
        for d in diffs:
            f = d.paper or d.backtest
            assert f is not None and f.time_ms >= first_delayed_ms
        assert report.causes.late_bars() == len(DELAYED) and report.causes.gap_bars() == 0
        assert not any(report.causes.gap) and not any(report.causes.revised)
        assert report.paper_pnl - report.backtest_pnl == pytest.approx(
            float(report.paper_equity[-1] - report.backtest_equity[-1]))

        # The bound: crossed once (the late bars were stored), one WARNING event; back
        # within once the bound is raised, one INFO event. No repeat in between.
        assert checks.count(True) >= 1 and checks.index(True) > 0
        assert all(c is not True for c in checks[:checks.index(True)])
        published = [DomainEvent.from_fields(f) for _, f in await redis.xrange(stream)]
        assert [(e.type, e.severity) for e in published] == [
            ("EVENT_TYPE_DEPLOYMENT_DIVERGED", "SEVERITY_WARNING")]
        assert published[0].subject == late + "/paperRun"
        assert published[0].data["differing_fills"] > 0
        await bt.execute("UPDATE paper_tracking SET max_divergence = 1e12 WHERE deployment "
                         "= $1", late)
        assert await tracker.check(late) is None          # no new bar: nothing to check
        s = slice(2 * N, 2 * N + 20)
        await store(ing, table, "binance", t[s], c[0, s], v[0, s])
        await store(ing, table, "kraken", t[s], c[1, s], v[1, s])
        await runner.advance(late)
        assert await tracker.check(late) is False
        published = [DomainEvent.from_fields(f) for _, f in await redis.xrange(stream)]
        assert [e.severity for e in published] == ["SEVERITY_WARNING", "SEVERITY_INFO"]
    finally:
        await redis.aclose()


def _row(f: Any) -> tuple[Any, ...]:
    return (f.time_ms, f.venue, f.symbol, f.side, f.quantity, f.price, f.fee, f.slippage)
