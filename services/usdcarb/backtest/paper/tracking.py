"""Track a paper run against its backtest: the divergence report and the bound monitor.

``PaperTracker.report`` backtests the run's version under the run's config over the bars
the run has processed (its first bar to its last), on the bars stored now, with the
backtest's own code (``loading.load_market`` and ``engine.run_backtest``, as a backtest
job), and compares the two (``divergence``). ``check`` does the same for a run with a
bound (``StartPaperRunRequest.max_divergence``, kept in ``paper_tracking``) and publishes
EVENT_TYPE_DEPLOYMENT_DIVERGED once per crossing: the flag flips under a row lock, so
two replicas checking at once publish one event between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import numpy as np

from usdcarb.backtest import convert
from usdcarb.backtest.engine import run_backtest
from usdcarb.backtest.engine.params import required_series
from usdcarb.backtest.loading import check_table, load_market
from usdcarb.backtest.paper.book import Fill
from usdcarb.backtest.paper.divergence import BarCauses, Difference, bar_causes, compare_fills
from usdcarb.backtest.paper.runner import paper_spec
from usdcarb.platform import paging
from usdcarb.platform.errors import FailedPrecondition, InvalidArgument, NotFound
from usdcarb.platform.events import DomainEvent
from usdcarb.v1 import backtest_pb2 as pb

log = logging.getLogger("usdcarb.backtest.paper")
SUFFIX = "/paperDivergence"
_KINDS = {"MISSING_IN_PAPER": pb.FILL_DIFFERENCE_KIND_MISSING_IN_PAPER,
          "MISSING_IN_BACKTEST": pb.FILL_DIFFERENCE_KIND_MISSING_IN_BACKTEST,
          "TIME": pb.FILL_DIFFERENCE_KIND_TIME,
          "PRICE_OR_QUANTITY": pb.FILL_DIFFERENCE_KIND_PRICE_OR_QUANTITY}
_REASONS = {"LATE_BAR": pb.DIVERGENCE_REASON_LATE_BAR, "GAP": pb.DIVERGENCE_REASON_GAP,
            "REVISED_BAR": pb.DIVERGENCE_REASON_REVISED_BAR,
            "CARRIED_OVER": pb.DIVERGENCE_REASON_CARRIED_OVER}


def deployment_of(name: str, field: str = "name") -> str:
    """"strategies/{s}/deployments/{d}/paperDivergence" → "strategies/{s}/deployments/{d}"."""
    parts = name.split("/")
    if (len(parts) != 5 or parts[0] != "strategies" or parts[2] != "deployments"
            or parts[4] != "paperDivergence" or not parts[1] or not parts[3]):
        raise InvalidArgument.for_field(
            field, "'strategies/{strategy}/deployments/{deployment}/paperDivergence'", name)
    return "/".join(parts[:4])


def check_bound(max_divergence: float) -> None:
    """Refuse a divergence bound that is negative or not finite."""
    if not 0 <= max_divergence < math.inf:
        raise InvalidArgument.for_field("max_divergence", "a finite amount >= 0",
                                        max_divergence)


@dataclass(frozen=True)
class Report:
    """A paper run's first ``bars`` bars beside the backtest of the same bars."""

    deployment: str
    strategy_version: str
    quote_asset: str
    bars: int
    start_ms: int
    bar_ms: int
    time_ms: np.ndarray
    paper_equity: np.ndarray
    backtest_equity: np.ndarray
    initial_equity: float
    paper_fills: int
    backtest_fills: int
    causes: BarCauses
    differences: list[Difference]
    snapshot: str

    @property
    def difference(self) -> float:
        """|paper equity - backtest equity| after the last compared bar."""
        return abs(float(self.paper_equity[-1]) - float(self.backtest_equity[-1]))

    @property
    def paper_pnl(self) -> float:
        return float(self.paper_equity[-1]) - self.initial_equity

    @property
    def backtest_pnl(self) -> float:
        return float(self.backtest_equity[-1]) - self.initial_equity


def _fill(r: Any) -> Fill:
    return Fill(bar=int(r["bar"]), time_ms=int(r["time_ms"]), venue=r["venue"],
                   symbol=r["symbol"], side=int(r["side"]), quantity=float(r["quantity"]),
                   price=float(r["price"]), fee=float(r["fee"]),
                   slippage=float(r["slippage"]), round_trip=int(r["round_trip"]),
                   signal_bar=int(r["signal_bar"]),
                   signal_edge_bps=float(r["signal_edge_bps"]))


def _trade(f: Fill) -> pb.Trade:
    return pb.Trade(time=convert.timestamp(f.time_ms), venue=f.venue, symbol=f.symbol,
                    side=pb.SIDE_BUY if f.side > 0 else pb.SIDE_SELL, quantity=f.quantity,
                    price=f.price, fee=f.fee, slippage=f.slippage, round_trip=f.round_trip,
                    signal_bar=f.signal_bar, signal_edge_bps=f.signal_edge_bps)


class PaperTracker:
    """Divergence reports and bound checks of paper runs (``pool``: the backtest
    service's; ``reads``: where market data is read, as the backtest jobs read it)."""

    def __init__(self, pool: asyncpg.Pool, *, market_table: str, reads: Any = None,
                 emit: Callable[[DomainEvent], Awaitable[None]] | None = None,
                 cache_size: int = 8) -> None:
        self._pool = pool
        self._reads = reads or pool
        self._table = check_table(market_table)
        self._emit = emit
        self._cache: OrderedDict[tuple[str, int, str], Report] = OrderedDict()
        self._cache_size = cache_size

    async def set_bound(self, deployment: str, max_divergence: float) -> None:
        """Record the run's bound once, when the run is created (0: none)."""
        check_bound(max_divergence)
        await self._pool.execute(
            """INSERT INTO paper_tracking (deployment, max_divergence) VALUES ($1, $2)
               ON CONFLICT (deployment) DO NOTHING""", deployment, max_divergence)

    async def report(self, deployment: str, bars: int | None = None) -> Report:
        """Compare the run's first ``bars`` bars (default: all processed) with a backtest."""
        run = await self._pool.fetchrow(
            """SELECT strategy_version, strategy_kind, parameters, config, series, timeframe,
                      bar_ms, start_ms, bars FROM paper_runs WHERE deployment = $1""",
            deployment)
        if run is None:
            raise NotFound("paper run", deployment + "/paperRun", reason="PAPER_RUN_NOT_FOUND")
        n = int(run["bars"]) if bars is None else bars
        if int(run["bars"]) == 0:
            raise FailedPrecondition(
                [("PAPER_RUN", deployment + "/paperRun", "expected a run with processed "
                  "bars, got none yet")], reason="PAPER_RUN_NOT_STARTED")
        if not 1 <= n <= int(run["bars"]):
            raise InvalidArgument.for_field("page_token", "a token of this run", n)
        keys = [(str(k[0]), str(k[1])) for k in run["series"]]
        kind, params = run["strategy_kind"], dict(run["parameters"])
        config = pb.BacktestConfig.FromString(run["config"])
        spec = paper_spec(config, required_series(kind, params))
        start_ms, bar_ms = int(run["start_ms"]), int(run["bar_ms"])
        loaded = await load_market(self._reads, keys, timeframe=run["timeframe"],
                                   timeframe_ms=bar_ms, start_ms=start_ms,
                                   end_ms=start_ms + n * bar_ms, table=self._table)
        key = (deployment, n, loaded.snapshot_hash)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        seen = await self._pool.fetch(
            """SELECT time_ms, closes, volumes, equity FROM paper_bars
               WHERE deployment = $1 AND bar < $2 ORDER BY bar""", deployment, n)
        fills = await self._pool.fetch(
            """SELECT * FROM paper_fills WHERE deployment = $1 AND bar < $2 ORDER BY seq""",
            deployment, n)
        out = await asyncio.to_thread(run_backtest, kind, params, spec.engine, loaded.frame)
        frame = loaded.frame
        paper_closes = np.array([r["closes"] for r in seen], np.float64).T
        paper_volumes = np.array([r["volumes"] for r in seen], np.float64).T
        stored_closes = np.stack([s.close for s in frame.series])
        stored_volumes = np.stack([s.volume for s in frame.series])
        labels = [f"{v}:{s}" for v, s in keys]
        causes = bar_causes(labels, paper_closes, paper_volumes, stored_closes, stored_volumes)
        tr = out.trades
        backtest_fills = [Fill(
            bar=int(tr.bar[k]), time_ms=int(frame.time_ms[tr.bar[k]]), venue=str(tr.venue[k]),
            symbol=str(tr.symbol[k]), side=int(tr.side[k]), quantity=float(tr.quantity[k]),
            price=float(tr.price[k]), fee=float(tr.fee[k]), slippage=float(tr.slippage[k]),
            round_trip=int(tr.round_trip[k]), signal_bar=int(tr.signal_bar[k]),
            signal_edge_bps=float(tr.signal_edge_bps[k])) for k in range(len(tr))]
        paper_fills = [_fill(r) for r in fills]
        report = Report(
            deployment=deployment, strategy_version=run["strategy_version"],
            quote_asset=config.quote_asset, bars=n, start_ms=start_ms, bar_ms=bar_ms,
            time_ms=np.asarray(frame.time_ms, np.int64).copy(),
            paper_equity=np.array([r["equity"] for r in seen], np.float64),
            backtest_equity=np.asarray(out.equity, np.float64).copy(),
            initial_equity=float(out.extras.get("initial_equity", 0.0)),
            paper_fills=len(paper_fills), backtest_fills=len(backtest_fills), causes=causes,
            differences=compare_fills(paper_fills, backtest_fills, causes),
            snapshot=loaded.snapshot_hash)
        self._cache[key] = report
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return report

    async def bound(self, deployment: str) -> tuple[float, bool]:
        row = await self._pool.fetchrow(
            "SELECT max_divergence, diverged FROM paper_tracking WHERE deployment = $1",
            deployment)
        return (0.0, False) if row is None else (float(row["max_divergence"]),
                                                 bool(row["diverged"]))

    async def divergence(self, name: str, page_size: int,
                         page_token: str) -> pb.PaperDivergence:
        """One page of the report of ``name`` (".../paperDivergence")."""
        deployment = deployment_of(name)
        size = paging.page_size(page_size, default=500, maximum=10_000)
        filters = {"name": name}
        key = paging.decode_token(page_token, filters)
        if key is not None and (len(key) != 2 or not all(isinstance(k, int) for k in key)):
            raise InvalidArgument.for_field("page_token", "a token from a previous response",
                                            page_token)
        report = await self.report(deployment, None if key is None else int(key[0]))
        offset = 0 if key is None else int(key[1])
        limit, _ = await self.bound(deployment)
        out = pb.PaperDivergence(
            name=name, strategy_version=report.strategy_version, bars=report.bars,
            start_time=convert.timestamp(report.start_ms),
            end_time=convert.timestamp(report.start_ms + (report.bars - 1) * report.bar_ms),
            quote_asset=report.quote_asset, paper_equity=float(report.paper_equity[-1]),
            backtest_equity=float(report.backtest_equity[-1]), paper_pnl=report.paper_pnl,
            backtest_pnl=report.backtest_pnl,
            pnl_difference=report.paper_pnl - report.backtest_pnl,
            paper_fills=report.paper_fills, backtest_fills=report.backtest_fills,
            differing_fills=len(report.differences), late_bars=report.causes.late_bars(),
            gap_bars=report.causes.gap_bars(), max_divergence=limit,
            diverged=limit > 0 and report.difference > limit)
        for d in report.differences[offset:offset + size]:
            item = pb.FillDifference(kind=_KINDS[d.kind], reason=_REASONS[d.reason],
                                     cause_markets=list(d.cause_markets))
            if d.paper is not None:
                item.paper.CopyFrom(_trade(d.paper))
            if d.backtest is not None:
                item.backtest.CopyFrom(_trade(d.backtest))
            if d.cause_bar is not None:
                item.cause_time.CopyFrom(convert.timestamp(
                    report.start_ms + d.cause_bar * report.bar_ms))
            out.differences.append(item)
        if offset + size < len(report.differences):
            out.next_page_token = paging.encode_token([report.bars, offset + size], filters)
        if key is None:
            out.time_ms.extend(report.time_ms.tolist())
            out.paper_equity_curve.extend(report.paper_equity.tolist())
            out.backtest_equity_curve.extend(report.backtest_equity.tolist())
        return out

    # -- the bound ---------------------------------------------------------------------
    async def check(self, deployment: str) -> bool | None:
        """Compare a run with a bound once more; publish an event if it crossed it.

        Return the new state (True: beyond the bound), None when there is nothing to check
        (no bound, or no new bar since the last check).
        """
        row = await self._pool.fetchrow(
            """SELECT t.max_divergence, t.checked_bars, r.bars FROM paper_tracking t
               JOIN paper_runs r USING (deployment) WHERE t.deployment = $1""", deployment)
        if row is None or row["max_divergence"] <= 0 or row["bars"] == 0 \
                or row["bars"] <= row["checked_bars"]:
            return None
        report = await self.report(deployment, int(row["bars"]))
        limit = float(row["max_divergence"])
        now = report.difference > limit
        async with self._pool.acquire() as conn, conn.transaction():
            before = await conn.fetchrow(
                """SELECT diverged, checked_bars FROM paper_tracking WHERE deployment = $1
                   FOR UPDATE""", deployment)
            if before is None or int(before["checked_bars"]) >= report.bars:
                return None   # another replica checked these bars already
            await conn.execute(
                """UPDATE paper_tracking SET diverged = $2, difference = $3,
                          checked_bars = $4, check_time = now() WHERE deployment = $1""",
                deployment, now, report.difference, report.bars)
        if bool(before["diverged"]) != now:
            await self._publish(report, limit, now)
        return now

    async def _publish(self, report: Report, limit: float, now: bool) -> None:
        if self._emit is None:
            return
        q = report.quote_asset
        name = report.deployment + "/paperRun"
        if now:
            summary = (f"{name}: paper equity differs from the backtest of the same bars by "
                       f"{report.difference:,.2f} {q}, beyond the bound {limit:,.2f} {q} "
                       f"({len(report.differences)} fills differ)")
        else:
            summary = (f"{name}: paper equity is back within {limit:,.2f} {q} of the "
                       f"backtest ({report.difference:,.2f} {q})")
        try:
            await self._emit(DomainEvent(
                type="EVENT_TYPE_DEPLOYMENT_DIVERGED", source="backtest", subject=name,
                summary=summary, severity="SEVERITY_WARNING" if now else "SEVERITY_INFO",
                data={"deployment": report.deployment, "diverged": now,
                      "difference": report.difference, "max_divergence": limit,
                      "bars": report.bars, "pnl_difference": report.paper_pnl
                      - report.backtest_pnl, "differing_fills": len(report.differences)}))
        except Exception:
            log.exception("could not publish the divergence of %s", report.deployment)

    async def monitor(self, runs: Callable[[], list[str]], stop: asyncio.Event,
                      interval_s: float) -> None:
        """Check the runs ``runs()`` names (the ones this replica follows) every
        ``interval_s`` until ``stop``; an error is logged, never stops the monitor."""
        while not stop.is_set():
            for deployment in runs():
                if stop.is_set():
                    break
                try:
                    await self.check(deployment)
                except Exception:
                    log.exception("divergence check of %s", deployment)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
