"""Paper runs: follow a deployment's stored bars and commit the engine bar by bar.

Where it runs: inside the backtest service (it owns the engine and a PostgreSQL schema;
the strategy service only records deployments). Any replica may run any paper run: a
run is held under a lease (``lease_owner``/``lease_until`` in ``paper_runs``) renewed with
every poll and every committed bar; a replica takes over a run whose lease expired.
Every bar commits in ONE transaction guarded by the lease holder and the bar count
(``bars = expected``): the bar as the run saw it, its fills, its equity point and the
engine checkpoint. A runner killed at any instant has committed whole bars only; the
next holder resumes at ``start_ms + bars * bar_ms`` from the checkpoint, so no bar is
processed twice or skipped, and a runner that lost its lease cannot commit at all.

When a bar is processed: once every market of the run has its bar stored, or once any
market holds a bar ``stale_after_bars`` bars later (that market's bar then counts as
missing, exactly as a backtest treats a missing bar: no signal, no fill; the bar row
records which markets were missing). Bar 0 waits for every market (the engine values
the inventory from the first bar): while a market lacks it past the staleness bound, the
run's first bar moves on.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import numpy as np

from usdcarb.backtest.config import RunSpec, parse_config
from usdcarb.backtest.engine import required_series
from usdcarb.backtest.loading import check_table
from usdcarb.backtest.paper.book import Fill, PaperBook
from usdcarb.platform.db import create_pool
from usdcarb.platform.events import DomainEvent
from usdcarb.v1 import backtest_pb2 as pb

NOTIFY_CHANNEL = "usdcarb_paper_bar"
log = logging.getLogger("usdcarb.backtest.paper")


class LeaseLost(Exception):
    """Another replica holds the run, or the run is no longer RUNNING."""


def paper_spec(config: pb.BacktestConfig, legs: Sequence[tuple[str, str]]) -> RunSpec:
    """Validate a paper run's config as a backtest's (range.end unset: one day is checked)."""
    cfg = pb.BacktestConfig()
    cfg.CopyFrom(config)
    if cfg.range.HasField("start_time") and not cfg.range.HasField("end_time"):
        start = cfg.range.start_time.ToDatetime(tzinfo=UTC)
        cfg.range.end_time.FromDatetime(start + timedelta(days=1))
    return parse_config(cfg, legs)


def _finite(value: Any) -> Any:
    """JSON-safe figures: a non-finite float becomes null (jsonb refuses NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class _Seen:
    """The bars a run has processed, as it saw them (kept in memory by the holder), in
    arrays grown by doubling: appending a bar costs O(1) amortised."""

    def __init__(self, series: int) -> None:
        self.n = 0
        self.time_ms = np.zeros(64, np.int64)
        self.closes = np.zeros((series, 64))
        self.volumes = np.zeros((series, 64))

    def append(self, t: int, closes: Sequence[float], volumes: Sequence[float]) -> None:
        if self.n == len(self.time_ms):
            cap = 2 * self.n
            self.time_ms = np.concatenate([self.time_ms, np.zeros(cap - self.n, np.int64)])
            grow = np.zeros((self.closes.shape[0], cap - self.n))
            self.closes = np.concatenate([self.closes, grow], axis=1)
            self.volumes = np.concatenate([self.volumes, grow], axis=1)
        self.time_ms[self.n] = t
        self.closes[:, self.n] = closes
        self.volumes[:, self.n] = volumes
        self.n += 1

    def with_bar(self, t: int, closes: Sequence[float],
                 volumes: Sequence[float]) -> tuple[Any, Any, Any]:
        """The bars seen plus one more, as the engine's arrays (copies)."""
        n = self.n
        time_ms = np.empty(n + 1, np.int64)
        time_ms[:n] = self.time_ms[:n]
        time_ms[n] = t
        cl = np.empty((self.closes.shape[0], n + 1))
        cl[:, :n] = self.closes[:, :n]
        cl[:, n] = closes
        vo = np.empty((self.volumes.shape[0], n + 1))
        vo[:, :n] = self.volumes[:, :n]
        vo[:, n] = volumes
        return time_ms, cl, vo


@dataclass(frozen=True)
class Committed:
    """One committed bar."""

    bar: int
    time_ms: int
    fills: int
    missing: tuple[str, ...]


class PaperRunner:
    """Paper runs of one replica, on the backtest service's pool (``platform.db.create_pool``:
search_path = the service's schema, json/jsonb as Python values)."""

    def __init__(self, pool: asyncpg.Pool, *, market_table: str, replica: str,
                 lease_s: float = 15.0, poll_s: float = 0.25, max_bars_per_poll: int = 500,
                 is_active: Callable[[str], Awaitable[bool]] | None = None,
                 on_event: Callable[[DomainEvent], Awaitable[None]] | None = None) -> None:
        self._pool = pool
        self._table = check_table(market_table)
        self.replica = replica
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.max_bars_per_poll = max_bars_per_poll
        self._is_active = is_active
        self._on_event = on_event
        self._stale: dict[str, tuple[str, ...]] = {}
        self._books: dict[str, PaperBook] = {}
        self._seen: dict[str, _Seen] = {}

    # -- runs ------------------------------------------------------------------------
    async def create(self, *, deployment: str, strategy_version: str, kind: str,
                     params: Mapping[str, Any], config: pb.BacktestConfig,
                     keys: Sequence[tuple[str, str]], stale_after_bars: int = 2,
                     creator: str = "") -> bool:
        """Record a paper run (RUNNING, no bar yet); False when it already exists."""
        spec = paper_spec(config, required_series(kind, params))
        if not 1 <= stale_after_bars <= 1440:
            raise ValueError(f"expected stale_after_bars from 1 to 1440, got {stale_after_bars}")
        PaperBook(kind, params, spec.engine, keys)   # refuses unusable parameters now
        start = -(-spec.start_ms // spec.timeframe_ms) * spec.timeframe_ms
        row = await self._pool.fetchrow(
            """INSERT INTO paper_runs (deployment, strategy_version, strategy_kind, parameters,
                                       config, series, timeframe, bar_ms, start_ms,
                                       stale_after_bars, creator)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
               ON CONFLICT (deployment) DO NOTHING RETURNING deployment""",
            deployment, strategy_version, kind, dict(params),
            config.SerializeToString(), [list(k) for k in keys], spec.timeframe,
            spec.timeframe_ms, start, stale_after_bars, creator)
        return row is not None

    async def stop(self, deployment: str, *, failed: dict[str, Any] | None = None) -> bool:
        """Stop a RUNNING run (its lease is released); False when it was not running."""
        row = await self._pool.fetchrow(
            """UPDATE paper_runs SET state = $2, error = $3, lease_owner = NULL,
                      lease_until = NULL, update_time = now()
               WHERE deployment = $1 AND state = 'RUNNING' RETURNING deployment""",
            deployment, "FAILED" if failed else "STOPPED",
            failed)
        if row is not None:
            await self._pool.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, deployment)
        return row is not None

    async def claim(self, deployment: str) -> bool:
        """Take or renew the run's lease; False when another replica holds it or it stopped."""
        row = await self._pool.fetchrow(
            """UPDATE paper_runs SET lease_owner = $2,
                      lease_until = now() + make_interval(secs => $3)
               WHERE deployment = $1 AND state = 'RUNNING'
                 AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until < now())
               RETURNING deployment""", deployment, self.replica, self.lease_s)
        return row is not None

    async def claimable(self) -> list[str]:
        """RUNNING runs this replica holds or may take over (lease free or expired)."""
        rows = await self._pool.fetch(
            """SELECT deployment FROM paper_runs WHERE state = 'RUNNING'
                 AND (lease_owner IS NULL OR lease_owner = $1 OR lease_until < now())
               ORDER BY deployment""", self.replica)
        return [r["deployment"] for r in rows]

    # -- processing ------------------------------------------------------------------
    async def _load(self, deployment: str) -> tuple[asyncpg.Record, PaperBook, _Seen]:
        run = await self._pool.fetchrow("SELECT * FROM paper_runs WHERE deployment = $1",
                                        deployment)
        if run is None:
            raise LeaseLost(f"no paper run of {deployment}")
        book = self._books.get(deployment)
        if book is None:
            keys = [(str(k[0]), str(k[1])) for k in run["series"]]
            kind = run["strategy_kind"]
            params = dict(run["parameters"])
            cfg = pb.BacktestConfig.FromString(run["config"])
            spec = paper_spec(cfg, required_series(kind, params))
            book = PaperBook(kind, params, spec.engine, keys)
            self._books[deployment] = book
        seen = self._seen.get(deployment)
        if seen is None or seen.n != run["bars"]:
            seen = _Seen(len(book.keys))
            for r in await self._pool.fetch(
                    """SELECT time_ms, closes, volumes FROM paper_bars WHERE deployment = $1
                       ORDER BY bar""", deployment):
                seen.append(r["time_ms"], r["closes"], r["volumes"])
            self._seen[deployment] = seen
        return run, book, seen

    async def _stored(self, keys: Sequence[tuple[str, str]], timeframe: str, start_ms: int,
                      end_ms: int) -> list[dict[int, tuple[float, float]]]:
        out: list[dict[int, tuple[float, float]]] = []
        async with self._pool.acquire() as conn:
            for venue, symbol in keys:
                rows = await conn.fetch(
                    f"""SELECT (extract(epoch FROM ts) * 1000)::bigint AS t, close, volume
                        FROM {self._table}
                        WHERE exchange = $1 AND symbol = $2 AND timeframe = $3
                          AND ts >= $4 AND ts < $5""",
                    venue, symbol, timeframe, datetime.fromtimestamp(start_ms / 1000, UTC),
                    datetime.fromtimestamp(end_ms / 1000, UTC))
                out.append({int(r["t"]): (float(r["close"]), float(r["volume"])) for r in rows})
        return out

    async def advance(self, deployment: str) -> list[Committed]:
        """Commit every bar of the run that is ready now, one transaction per bar."""
        run, book, seen = await self._load(deployment)
        if run["state"] != "RUNNING":
            raise LeaseLost(f"{deployment} is {run['state']}")
        bar_ms, stale = int(run["bar_ms"]), int(run["stale_after_bars"])
        start_ms, bars = int(run["start_ms"]), int(run["bars"])
        keys = book.keys
        labels = [f"{v}:{s}" for v, s in keys]
        window = self.max_bars_per_poll + stale + 1
        t0 = start_ms + bars * bar_ms
        stored = await self._stored(keys, run["timeframe"], t0, t0 + window * bar_ms)
        latest = max((max(s) for s in stored if s), default=None)
        done: list[Committed] = []
        t = t0
        while len(done) < self.max_bars_per_poll and latest is not None and t <= latest:
            have = [t in s for s in stored]
            if not all(have) and latest < t + stale * bar_ms:
                break   # not closed on every market yet, and not stale
            if bars == 0 and not all(have):
                start_ms = t + bar_ms    # the first bar must hold every market
                await self._move_start(deployment, start_ms)
                t = start_ms
                continue
            closes = [s[t][0] if t in s else math.nan for s in stored]
            volumes = [s[t][1] if t in s else math.nan for s in stored]
            missing = tuple(lab for lab, h in zip(labels, have, strict=True) if not h)
            done.append(await self._commit(deployment, book, seen, bars, t, closes, volumes,
                                           missing))
            bars += 1
            t += bar_ms
        return done

    async def _move_start(self, deployment: str, start_ms: int) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            ok = await conn.fetchval(
                """UPDATE paper_runs SET start_ms = $3, update_time = now()
                   WHERE deployment = $1 AND lease_owner = $2 AND bars = 0
                     AND state = 'RUNNING' RETURNING true""",
                deployment, self.replica, start_ms)
            if not ok:
                raise LeaseLost(f"{deployment}: lease lost before its first bar")

    async def _commit(self, deployment: str, book: PaperBook, seen: _Seen, bars: int,
                      t: int, closes: list[float], volumes: list[float],
                      missing: tuple[str, ...]) -> Committed:
        time_ms, cl, vo = seen.with_bar(t, closes, volumes)
        async with self._pool.acquire() as conn, conn.transaction():
            run = await conn.fetchrow(
                """SELECT bars, checkpoint, fills FROM paper_runs
                   WHERE deployment = $1 AND lease_owner = $2 AND state = 'RUNNING'
                   FOR UPDATE""", deployment, self.replica)
            if run is None or int(run["bars"]) != bars:
                raise LeaseLost(f"{deployment}: lease lost or bar {bars} already committed")
            out = book.step(time_ms, cl, vo, bars, run["checkpoint"])
            await conn.execute(
                """INSERT INTO paper_bars (deployment, bar, time_ms, closes, volumes, missing,
                                           equity, drawdown, exposure)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
                deployment, bars, t, closes, volumes, list(missing), float(out.equity[0]),
                float(out.drawdown[0]), float(out.exposure[0]))
            first = int(run["fills"])
            if out.fills:
                await conn.copy_records_to_table(
                    "paper_fills", records=[_fill_row(deployment, first + k, f)
                                            for k, f in enumerate(out.fills)],
                    columns=FILL_COLUMNS)
            await conn.execute(
                """UPDATE paper_runs SET bars = bars + 1, checkpoint = $2, equity = $3,
                          metrics = $4, balances = $5, fills = fills + $6,
                          late_bars = late_bars + $7, update_time = now(),
                          lease_until = now() + make_interval(secs => $8)
                   WHERE deployment = $1""",
                deployment, out.checkpoint, float(out.equity[0]),
                _finite(out.metrics), [[v, a, _finite(x)] for v, a, x in out.balances],
                len(out.fills), int(bool(missing)), self.lease_s)
            await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, deployment)
        seen.append(t, closes, volumes)
        return Committed(bar=bars, time_ms=t, fills=len(out.fills), missing=missing)

    async def follow(self, deployment: str, stop: asyncio.Event) -> str:
        """Hold and advance one run until ``stop``, its stop, or a lost lease; say why.

        The lease is renewed once a third of it has passed (and by every committed bar);
        a commit checks the holder, so renewing less often never lets two replicas write.
        """
        renewed = -math.inf
        while not stop.is_set():
            if self._is_active is not None and not await self._is_active(deployment):
                await self.stop(deployment)
                return "deployment stopped"
            if time.monotonic() - renewed >= self.lease_s / 3:
                if not await self.claim(deployment):
                    state = await self._pool.fetchval(
                        "SELECT state FROM paper_runs WHERE deployment = $1", deployment)
                    return "lease held elsewhere" if state == "RUNNING" else f"run {state}"
                renewed = time.monotonic()
            try:
                for bar in await self.advance(deployment):
                    await self._stale_events(deployment, bar)
            except LeaseLost as e:
                state = await self._pool.fetchval(
                    "SELECT state FROM paper_runs WHERE deployment = $1", deployment)
                return "lease held elsewhere" if state == "RUNNING" else f"run {state} ({e})"
            try:
                await asyncio.wait_for(stop.wait(), self.poll_s)
            except TimeoutError:
                pass
        return "stopped by the caller"


    async def emit(self, event: DomainEvent) -> None:
        """Hand a committed fact to ``on_event``; a lost notification never stops a run."""
        if self._on_event is None:
            return
        try:
            await self._on_event(event)
        except Exception:
            log.exception("could not publish %s for %s", event.type, event.subject)

    async def _stale_events(self, deployment: str, bar: Committed) -> None:
        """One event when a market's bars start counting as missing, one when all are
        back (per holder: a replica taking over may repeat the last one)."""
        before = self._stale.get(deployment, ())
        if bar.missing == before:
            return
        self._stale[deployment] = bar.missing
        when = datetime.fromtimestamp(bar.time_ms / 1000, UTC).isoformat()
        if bar.missing:
            summary = (f"{deployment}/paperRun: no bar of {', '.join(bar.missing)} at {when}; "
                       "processed as missing (no signal, no fill)")
            severity = "SEVERITY_WARNING"
        else:
            summary = f"{deployment}/paperRun: every market's bars arrive again ({when})"
            severity = "SEVERITY_INFO"
        await self.emit(DomainEvent(
            type="EVENT_TYPE_DATA_ISSUE", source="backtest", subject=f"{deployment}/paperRun",
            summary=summary, severity=severity,
            data={"bar": bar.bar, "time_ms": bar.time_ms, "missing": list(bar.missing)}))


FILL_COLUMNS = ["deployment", "seq", "bar", "time_ms", "venue", "symbol", "side", "quantity",
                "price", "fee", "slippage", "round_trip", "signal_bar", "signal_edge_bps"]


def _fill_row(deployment: str, seq: int, f: Fill) -> tuple[Any, ...]:
    return (deployment, seq, f.bar, f.time_ms, f.venue, f.symbol, f.side, f.quantity, f.price,
            f.fee, f.slippage, f.round_trip, f.signal_bar, f.signal_edge_bps)


async def _main(args: argparse.Namespace) -> None:
    pool = await create_pool(args.dsn, 1, 4, search_path=f"{args.schema}, public")
    runner = PaperRunner(pool, market_table=args.market_table, replica=args.replica,
                         lease_s=args.lease, poll_s=args.poll)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        log.info("paper runner %s pid %d following %s", args.replica, os.getpid(),
                 args.deployment)
        while not stop.is_set():
            why = await runner.follow(args.deployment, stop)
            if why != "lease held elsewhere":
                log.info("paper runner %s: %s", args.replica, why)
                return
            try:   # another holder: wait for its lease to expire, then take over
                await asyncio.wait_for(stop.wait(), args.poll)
            except TimeoutError:
                pass
    finally:
        await pool.close()


def main() -> None:
    """Run one deployment's paper run in this process (a replica of the runner)."""
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--dsn", required=True)
    p.add_argument("--schema", required=True, help="the backtest service's schema")
    p.add_argument("--market-table", required=True, help="e.g. ingestion.market_data")
    p.add_argument("--replica", required=True)
    p.add_argument("--deployment", required=True)
    p.add_argument("--lease", type=float, default=15.0, help="lease seconds")
    p.add_argument("--poll", type=float, default=0.25, help="poll seconds")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(_main(p.parse_args()))


if __name__ == "__main__":
    main()
