"""Market data for a run: read each series the strategy needs onto one grid, and hash it.

Reading goes block by block (``marketmemo``): blocks this process read before and that are
still current come from memory, the others from the block cache beside the ingestion
hypertable (``usdcarb.marketdata.cache``: week-long column blocks, falling back to binary
COPY and building the blocks it misses), one connection per series so the reads overlap.
Every series lands on the common epoch-aligned UTC grid of the timeframe over
[start, end), NaN where a venue has no bar, so the engine sees a missing bar as missing
and never trades on a stale price; the grid arrays may be the caller's (the shared
memory the engine process maps: ``handoff.create_frame``). The snapshot hash covers
exactly the rows read, every column, so any changed, added or removed bar changes it.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import numpy as np

from usdcarb.backtest.config import grid_size, grid_start
from usdcarb.backtest.engine import (
    EngineConfig,
    MarketFrame,
    Series,
    pricing_symbols,
    required_series,
)
from usdcarb.backtest.marketmemo import MarketMemo, read_series
from usdcarb.marketdata.writer import blocks_table
from usdcarb.platform.errors import FailedPrecondition

TABLE = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$")


def check_table(table: str) -> str:
    """Refuse a table setting that is not a plain (schema-qualified) identifier."""
    if not TABLE.match(table):
        raise ValueError(f"expected a table name like 'ingestion.market_data', got {table!r}")
    return table


@dataclass(frozen=True)
class Loaded:
    """Aligned market data, its snapshot hash and how many rows each series had."""

    frame: MarketFrame
    snapshot_hash: str
    rows: dict[str, int]
    placed: bool = True   # False: the frame has its bar times only (``held``) ...
    # ... and ``place(buffers)`` places its bars after all (a frame with them)
    place: Callable[[Buffers | None], Awaitable[MarketFrame]] | None = None


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def series_label(venue: str, symbol: str, timeframe: str) -> str:
    return f"{venue}:{symbol}:{timeframe}"


async def data_gaps(
    pool: Any, keys: Sequence[tuple[str, str]], *, timeframe: str, start: datetime,
    end: datetime, table: str,
) -> list[tuple[str, str, str]]:
    """Return a precondition violation for each series with no bar in [start, end)."""
    sql = (f"SELECT EXISTS (SELECT 1 FROM {check_table(table)} WHERE exchange = $1 "
           "AND symbol = $2 AND timeframe = $3 AND ts >= $4 AND ts < $5)")
    found = await asyncio.gather(*(
        pool.fetchval(sql, venue, symbol, timeframe, start, end) for venue, symbol in keys))
    return [
        ("MARKET_DATA", series_label(venue, symbol, timeframe),
         f"expected bars in [{start.isoformat()}, {end.isoformat()}), got none")
        for (venue, symbol), ok in zip(keys, found, strict=True) if not ok
    ]


# The first and last bar of a series are looked for in this much of each end of the range
# first, then (only where that end has none) in the rest of it.
EDGE_MS = 7 * 86_400_000


async def range_coverage(
    pool: Any, keys: Sequence[tuple[str, str]], *, timeframe: str, timeframe_ms: int,
    start: datetime, end: datetime, table: str, minimum: float,
) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """Return the precondition violations of each series with no bar in [start, end), and
    of each series whose bars span less than ``minimum`` of it (first to last bar; a
    10-year range over 3 days of data would otherwise simulate millions of empty bars and
    annualise over them).

    A query on the hypertable is planned over every chunk of its range (tens of ms over
    years, most of a create), so each series' first bar is looked for in the first week
    of the range and its last in the last week (a chunk or two each), and only where one
    has none in the rest of the range: the same bars as one query over the whole range.
    """
    t = check_table(table)
    where = "exchange = $1 AND symbol = $2 AND timeframe = $3 AND ts >= $4 AND ts < $5"
    first_sql = f"SELECT min(ts) FROM {t} WHERE {where}"
    last_sql = f"SELECT max(ts) FROM {t} WHERE {where}"
    week = timedelta(milliseconds=EDGE_MS)

    async def edge(sql: str, venue: str, symbol: str,
                   near: tuple[datetime, datetime], rest: tuple[datetime, datetime],
                   ) -> datetime | None:
        if end - start <= 2 * week:
            found = await pool.fetchval(sql, venue, symbol, timeframe, start, end)
        else:
            found = await pool.fetchval(sql, venue, symbol, timeframe, *near)
            if found is None:
                found = await pool.fetchval(sql, venue, symbol, timeframe, *rest)
        return cast(datetime | None, found)

    found = await asyncio.gather(*(
        q for venue, symbol in keys for q in (
            edge(first_sql, venue, symbol, (start, start + week), (start + week, end)),
            edge(last_sql, venue, symbol, (end - week, end), (start, end - week)))))
    whole = _ms(end) - _ms(start)
    missing, thin = [], []
    for j, (venue, symbol) in enumerate(keys):
        label = series_label(venue, symbol, timeframe)
        first, last = found[2 * j], found[2 * j + 1]
        if first is None or last is None:
            missing.append(("MARKET_DATA", label, f"expected bars in [{start.isoformat()}, "
                                                  f"{end.isoformat()}), got none"))
            continue
        covered = (_ms(last) - _ms(first) + timeframe_ms) / whole
        if covered < minimum:
            thin.append(("RANGE_COVERAGE", label,
                         f"expected bars spanning at least {minimum:.0%} of "
                         f"[{start.isoformat()}, {end.isoformat()}), got {covered:.2%} "
                         f"({first.isoformat()} .. {last.isoformat()}); narrow the range"))
    return missing, thin


async def verdict_violations(
    pool: Any, keys: Sequence[tuple[str, str]], *, timeframe: str, start: datetime,
    end: datetime, table: str,
) -> list[tuple[str, str, str]]:
    """Return a precondition violation for each STALE or ALIASED span (validation's
    series verdicts, ``table``) of a traded series overlapping [start, end); two legs
    that are aliases of one another are named as such. No verdict table: none."""
    if not keys or not await pool.fetchval("SELECT to_regclass($1) IS NOT NULL",
                                           check_table(table)):
        return []
    rows = await pool.fetch(
        f"SELECT exchange, symbol, verdict, start_time, end_time, twin, match_ratio, reason "
        f"FROM {table} WHERE timeframe = $1 AND start_time < $3 AND end_time > $2 "
        "AND verdict IN ('SERIES_VERDICT_KIND_STALE', 'SERIES_VERDICT_KIND_ALIASED') "
        "AND (exchange, symbol) IN (SELECT * FROM unnest($4::text[], $5::text[])) "
        "ORDER BY exchange, symbol, start_time",
        timeframe, start, end, [k[0] for k in keys], [k[1] for k in keys])
    legs = {f"{venue}:{symbol}" for venue, symbol in keys}
    out = []
    for r in rows:
        label = series_label(r["exchange"], r["symbol"], timeframe)
        span = f"from {r['start_time'].isoformat()} to {r['end_time'].isoformat()}"
        if r["verdict"] == "SERIES_VERDICT_KIND_STALE":
            out.append(("STALE_MARKET_DATA", label,
                        f"expected a live market, got a stale span {span}: {r['reason']}"))
        elif r["twin"] in legs:
            out.append(("ALIASED_LEGS", label,
                        f"expected independent legs, got {label} identical to the leg "
                        f"{r['twin']}:{timeframe} ({r['match_ratio']:.1%} of traded bars) "
                        f"{span}"))
        else:
            out.append(("ALIASED_MARKET_DATA", label,
                        f"expected an independent price, got a copy of {r['twin']}:"
                        f"{timeframe} ({r['match_ratio']:.1%} of traded bars) {span}"))
    return out


async def series_to_load(
    pool: Any, kind: str, params: Any, config: EngineConfig, *, timeframe: str,
    start: datetime, end: datetime, table: str,
) -> list[tuple[str, str]]:
    """Return the markets a run reads: the traded ones, then one market pricing each other
    asset in the quote asset (``ASSET/QUOTE`` or ``QUOTE/ASSET``, on the first traded venue
    that has bars of it in [start, end)).

    Raise FailedPrecondition naming every asset that no stored market prices: the run
    could not value its inventory, and would otherwise fail only once in a worker.
    """
    legs = required_series(kind, params)
    q = config.quote_asset
    venues = list(dict.fromkeys(venue for venue, _ in legs))
    assets = [symbol.split("/")[0] for symbol in
              pricing_symbols(kind, params, q, [t.asset for t in config.transfers])]
    traded = set(legs)

    def candidates(asset: str) -> list[tuple[str, str]]:
        """In order of preference, up to the first traded market (whose bars the run
        loads anyway: it needs no look of its own)."""
        out = []
        for c in ((v, s) for v in venues for s in (f"{asset}/{q}", f"{q}/{asset}")):
            out.append(c)
            if c in traded:
                break
        return out

    gaps = await data_gaps(pool, [c for a in assets for c in candidates(a) if c not in traded],
                           timeframe=timeframe, start=start, end=end, table=table)
    absent = {subject for _, subject, _ in gaps}
    keys = list(legs)
    missing: list[tuple[str, str, str]] = []
    for asset in assets:
        found = [c for c in candidates(asset) if series_label(*c, timeframe) not in absent]
        if found:
            keys.append(found[0])
        else:
            missing.append((
                "PRICING_MARKET", asset,
                f"expected bars of {asset}/{q} or {q}/{asset} on {', '.join(venues)} in "
                f"[{start.isoformat()}, {end.isoformat()}) to value {asset} in the quote "
                f"asset {q}, got none (trade markets quoted in {q}, or set quote_asset)"))
    if missing:
        raise FailedPrecondition(missing, reason="NO_PRICING_MARKET")
    return keys


Buffers = Callable[[int, int], tuple[Any, Any, Any]]


def _arrays(bars: int, k: int) -> tuple[Any, Any, Any]:
    return (np.empty(bars, np.int64), np.empty((k, bars), np.float64),
            np.empty((k, bars), np.float64))


async def load_market(
    pool: Any, keys: Sequence[tuple[str, str]], *, timeframe: str, timeframe_ms: int,
    start_ms: int, end_ms: int, table: str, memo: MarketMemo | None = None,
    buffers: Buffers | None = None, held: Callable[[str], bool] | None = None,
) -> Loaded:
    """Read the series ``keys`` over [start_ms, end_ms) onto one grid, check and hash them.

    ``pool``: an asyncpg pool, or a read router (``run(read)``). ``buffers(bars, series)``
    gives the arrays to fill: time [bars], closes and volumes [series, bars] (default: new
    arrays). ``held(snapshot_hash)``: True when the caller has these very bars already
    (an engine process keeps the frame it ran last): then no bar is placed and the
    frame has only its bar times (``Loaded.placed`` False).
    """
    start = datetime.fromtimestamp(start_ms / 1000, UTC)
    end = datetime.fromtimestamp(end_ms / 1000, UTC)
    origin = grid_start(start_ms, timeframe_ms)
    n = grid_size(start_ms, end_ms, timeframe_ms)
    check_table(table)

    async def one(venue: str, symbol: str) -> Any:
        async def read(conn: Any) -> Any:   # idempotent: it only reads
            return await read_series(
                conn, memo, table=table, blocks=blocks_table(table), exchange=venue,
                symbol=symbol, timeframe=timeframe, timeframe_ms=timeframe_ms,
                start_ms=start_ms, end_ms=end_ms, origin=origin)

        run = getattr(pool, "run", None)   # a read router (replica, else primary)
        if run is not None:
            return await run(read)
        async with pool.acquire() as conn:
            return await read(conn)

    reads = list(await asyncio.gather(*(one(v, s) for v, s in keys)))
    empty = [
        ("MARKET_DATA", series_label(v, s, timeframe),
         f"expected bars in [{start.isoformat()}, {end.isoformat()}), got none")
        for (v, s), r in zip(keys, reads, strict=True) if r.rows == 0
    ]
    if empty:
        raise FailedPrecondition(empty, reason="NO_MARKET_DATA")
    h = hashlib.sha256(f"{timeframe}|{start_ms}|{end_ms}|blocks".encode())
    for r in reads:
        h.update(r.digest)
    snapshot = h.hexdigest()
    rows = {series_label(v, s, timeframe): r.rows
            for (v, s), r in zip(keys, reads, strict=True)}
    grid = origin + np.arange(n, dtype=np.int64) * timeframe_ms

    async def place(buffers: Buffers | None) -> MarketFrame:
        time_ms, closes, volumes = (buffers or _arrays)(n, len(keys))
        time_ms[:] = grid
        await asyncio.gather(*(asyncio.to_thread(r.fill, closes[j], volumes[j])
                               for j, r in enumerate(reads)))
        return MarketFrame(time_ms=time_ms, series=tuple(
            Series(venue=v, symbol=s, close=closes[j], volume=volumes[j])
            for j, (v, s) in enumerate(keys)))

    if held is not None and held(snapshot):
        return Loaded(frame=MarketFrame(time_ms=grid, series=()), snapshot_hash=snapshot,
                      rows=rows, placed=False, place=place)
    return Loaded(frame=await place(buffers), snapshot_hash=snapshot, rows=rows, place=place)
