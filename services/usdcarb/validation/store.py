"""PostgreSQL stores of the validation service (asyncpg).

Contract of ``QualityStore``: findings, quarantined bars and gaps of the validation
schema (unqualified tables: the pool's search_path names the schema). Writes that take
a ``conn`` run in the caller's transaction; recording is idempotent (a finding once per
rule and bar, a quarantined bar once per values, a gap once per start).

Contract of ``MarketData``: reads and gap-fill writes of the ingestion service's
hypertable, named by a setting (default ``ingestion.market_data``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import numpy as np

from usdcarb.marketdata.reader import Candles, read_candles
from usdcarb.platform.db import PooledStore
from usdcarb.platform.replica import ReadRouter
from usdcarb.validation.domain.gaps import GapRun, GapState
from usdcarb.validation.domain.model import Bars, Finding, Scope, Severity
from usdcarb.validation.model import (
    GapRecord,
    IssueRecord,
    QuarantineRecord,
    Series,
    Window,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = "('epoch'::timestamptz + {} * interval '1 millisecond')"


def to_dt(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=int(ms))


def to_ms(dt: datetime) -> int:
    return (dt - EPOCH) // timedelta(milliseconds=1)


def _window_clauses(w: Window, time_col: str, end_col: str | None = None,
                    ms: bool = False) -> tuple[list[str], list[Any]]:
    clauses, args = ["TRUE"], []
    for col in ("exchange", "symbol", "timeframe"):
        if getattr(w, col):
            args.append(getattr(w, col))
            clauses.append(f"{col} = ${len(args)}")
    conv = (lambda v: v) if ms else to_dt
    if w.end_ms is not None:
        args.append(conv(w.end_ms))
        clauses.append(f"{time_col} < ${len(args)}")
    if w.start_ms is not None:
        args.append(conv(w.start_ms))
        clauses.append(f"{end_col or time_col} {'>' if end_col else '>='} ${len(args)}")
    return clauses, args


def _gap(row: asyncpg.Record) -> GapRecord:
    return GapRecord(
        id=row["id"], series=Series(row["exchange"], row["symbol"], row["timeframe"]),
        start_ms=to_ms(row["start_time"]), end_ms=to_ms(row["end_time"]),
        missing=row["missing_bars"], state=GapState(row["state"]), filled=row["filled_bars"],
        filled_from=tuple(row["filled_from"]), detect_time=row["detect_time"],
    )


class QualityStore(PooledStore):
    """Findings, quarantined bars and gaps."""

    # -- findings -------------------------------------------------------------------
    async def record_findings(
        self, conn: asyncpg.Connection, series: Series, findings: Sequence[Finding]
    ) -> list[IssueRecord]:
        """Insert findings not recorded before; return the new ones."""
        if not findings:
            return []
        rows = await conn.fetch(
            f"""INSERT INTO data_validation_issues
                    (exchange, symbol, timeframe, bar_time, rule, scope, severity, message,
                     value, threshold)
                SELECT $1, $2, $3, {_MS.format('t')}, r, sc, sv, m, v, th
                FROM unnest($4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[],
                            $9::float8[], $10::float8[]) AS u(t, r, sc, sv, m, v, th)
                ON CONFLICT DO NOTHING
                RETURNING *""",
            series.exchange, series.symbol, series.timeframe,
            [f.bar_time_ms for f in findings], [f.rule for f in findings],
            [f.scope.value for f in findings], [f.severity.value for f in findings],
            [f.message for f in findings], [f.value for f in findings],
            [f.threshold for f in findings],
        )
        return [_issue(r) for r in rows]

    async def list_issues(
        self, w: Window, *, severities: Sequence[str], rule: str, limit: int,
        after: tuple[int, int] | None,
    ) -> list[IssueRecord]:
        """Newest bar first; ``after`` is the (bar_time ms, id) of the last row served."""
        clauses, args = _window_clauses(w, "bar_time")
        args.append(list(severities))
        clauses.append(f"severity = ANY(${len(args)}::text[])")
        if rule:
            args.append(rule)
            clauses.append(f"rule = ${len(args)}")
        if after is not None:
            args += [to_dt(after[0]), after[1]]
            clauses.append(f"(bar_time, id) < (${len(args) - 1}, ${len(args)})")
        args.append(limit)
        sql = (f"SELECT * FROM data_validation_issues WHERE {' AND '.join(clauses)} "
               f"ORDER BY bar_time DESC, id DESC LIMIT ${len(args)}")
        async with self._pool.acquire() as conn:
            return [_issue(r) for r in await conn.fetch(sql, *args)]

    async def issue_counts(self, series: Series, start_ms: int, end_ms: int
                           ) -> tuple[dict[str, int], dict[str, int]]:
        """Count issues of a series in a range by severity and by rule."""
        w = Window(series.exchange, series.symbol, series.timeframe, start_ms, end_ms)
        clauses, args = _window_clauses(w, "bar_time")
        rows = await self._pool.fetch(
            f"SELECT severity, rule, count(*) AS n FROM data_validation_issues "
            f"WHERE {' AND '.join(clauses)} GROUP BY severity, rule", *args)
        by_sev: dict[str, int] = {}
        by_rule: dict[str, int] = {}
        for r in rows:
            by_sev[r["severity"]] = by_sev.get(r["severity"], 0) + r["n"]
            by_rule[r["rule"]] = by_rule.get(r["rule"], 0) + r["n"]
        return by_sev, by_rule

    # -- quarantine -----------------------------------------------------------------
    async def quarantine(
        self, conn: asyncpg.Connection, series: Series, bars: Bars,
        rejected: Sequence[tuple[int, Sequence[Finding]]],
    ) -> int:
        """Store rejected bars (batch index, its ERROR findings) with their reasons."""
        if not rejected:
            return 0
        idx = np.array([i for i, _ in rejected], np.intp)
        sub = bars.take(idx)
        status = await conn.execute(
            """INSERT INTO quarantined_bars
                   (exchange, symbol, timeframe, open_time_ms, open, high, low, close, volume,
                    rules, reason)
               SELECT $1, $2, $3, t, o, h, l, c, v,
                      string_to_array(rs, ','), reason
               FROM unnest($4::bigint[], $5::float8[], $6::float8[], $7::float8[],
                           $8::float8[], $9::float8[], $10::text[], $11::text[])
                    AS u(t, o, h, l, c, v, rs, reason)
               ON CONFLICT DO NOTHING""",
            series.exchange, series.symbol, series.timeframe,
            sub.open_time_ms.tolist(), sub.open.tolist(), sub.high.tolist(), sub.low.tolist(),
            sub.close.tolist(), sub.volume.tolist(),
            [",".join(dict.fromkeys(f.rule for f in fs)) for _, fs in rejected],
            [fs[0].message for _, fs in rejected],
        )
        return int(status.split()[-1])

    async def list_quarantined(
        self, w: Window, *, limit: int, after: tuple[int, int] | None
    ) -> list[QuarantineRecord]:
        """Newest bar first; ``after`` is the (open_time_ms, id) of the last row served."""
        clauses, args = _window_clauses(w, "open_time_ms", ms=True)
        if after is not None:
            args += [after[0], after[1]]
            clauses.append(f"(open_time_ms, id) < (${len(args) - 1}, ${len(args)})")
        args.append(limit)
        sql = (f"SELECT * FROM quarantined_bars WHERE {' AND '.join(clauses)} "
               f"ORDER BY open_time_ms DESC, id DESC LIMIT ${len(args)}")
        async with self._pool.acquire() as conn:
            return [_quarantined(r) for r in await conn.fetch(sql, *args)]

    async def count_quarantined(self, series: Series, start_ms: int, end_ms: int) -> int:
        n: int = await self._pool.fetchval(
            "SELECT count(*) FROM quarantined_bars WHERE exchange = $1 AND symbol = $2 "
            "AND timeframe = $3 AND open_time_ms >= $4 AND open_time_ms < $5",
            series.exchange, series.symbol, series.timeframe, start_ms, end_ms)
        return n

    # -- gaps -----------------------------------------------------------------------
    async def gaps_overlapping(
        self, series: Series, start_ms: int, end_ms: int, *,
        conn: asyncpg.Connection | None = None, lock: bool = False,
        states: Sequence[GapState] = tuple(GapState),
    ) -> list[GapRecord]:
        """Gaps of a series whose range overlaps [start_ms, end_ms), oldest first."""
        sql = ("SELECT * FROM data_gaps WHERE exchange = $1 AND symbol = $2 AND timeframe = $3 "
               "AND start_time < $5 AND end_time > $4 AND state = ANY($6::text[]) "
               "ORDER BY start_time")
        if lock:
            sql += " FOR UPDATE"
        async with self._conn(conn) as c:
            rows = await c.fetch(sql, series.exchange, series.symbol, series.timeframe,
                                 to_dt(start_ms), to_dt(end_ms), [s.value for s in states])
        return [_gap(r) for r in rows]

    async def reconcile_gaps(
        self, conn: asyncpg.Connection, series: Series, runs: Sequence[GapRun],
        span: tuple[int, int],
    ) -> list[GapRecord]:
        """Make the recorded gaps of ``span`` agree with the detected ``runs``.

        A run inside a gap already being repaired (or found unfillable) is that gap's
        remainder and is not recorded again; an OPEN gap in the span that no run matches
        any more has had its bars arrive, so it is removed. Return the new gaps.
        """
        existing = await self.gaps_overlapping(series, *span, conn=conn, lock=True)
        exact = {(g.start_ms, g.end_ms) for g in existing}
        stale = [g.id for g in existing if g.state == GapState.OPEN
                 and (g.start_ms, g.end_ms) not in {(r.start_ms, r.end_ms) for r in runs}]
        if stale:
            await conn.execute("DELETE FROM data_gaps WHERE id = ANY($1::bigint[])", stale)
        kept = [g for g in existing if g.id not in set(stale)]
        fresh = [r for r in runs if (r.start_ms, r.end_ms) not in exact and not any(
            g.start_ms <= r.start_ms and r.end_ms <= g.end_ms for g in kept)]
        if not fresh:
            return []
        rows = await conn.fetch(
            f"""INSERT INTO data_gaps (exchange, symbol, timeframe, start_time, end_time,
                                       missing_bars)
                SELECT $1, $2, $3, {_MS.format('s')}, {_MS.format('e')}, n
                FROM unnest($4::bigint[], $5::bigint[], $6::bigint[]) AS u(s, e, n)
                ON CONFLICT (exchange, symbol, timeframe, start_time) DO UPDATE
                    SET end_time = excluded.end_time, missing_bars = excluded.missing_bars
                    WHERE data_gaps.state = 'GAP_STATE_OPEN'
                RETURNING *""",
            series.exchange, series.symbol, series.timeframe,
            [r.start_ms for r in fresh], [r.end_ms for r in fresh], [r.missing for r in fresh],
        )
        return [_gap(r) for r in rows]

    async def update_gap(self, conn: asyncpg.Connection, gap_id: int, *, filled_now: int,
                         sources: Sequence[str], state: GapState) -> GapRecord:
        row = await conn.fetchrow(
            """UPDATE data_gaps SET filled_bars = filled_bars + $2, state = $4,
                      filled_from = ARRAY(SELECT DISTINCT unnest(filled_from || $3::text[])
                                          ORDER BY 1)
               WHERE id = $1 RETURNING *""",
            gap_id, filled_now, list(sources), state.value)
        return _gap(row)

    async def list_gaps(
        self, w: Window, *, state: str | None, limit: int, after: tuple[int, int] | None
    ) -> list[GapRecord]:
        """Newest first; ``after`` is the (start ms, id) of the last row served."""
        clauses, args = _window_clauses(w, "start_time", "end_time")
        if state:
            args.append(state)
            clauses.append(f"state = ${len(args)}")
        if after is not None:
            args += [to_dt(after[0]), after[1]]
            clauses.append(f"(start_time, id) < (${len(args) - 1}, ${len(args)})")
        args.append(limit)
        sql = (f"SELECT * FROM data_gaps WHERE {' AND '.join(clauses)} "
               f"ORDER BY start_time DESC, id DESC LIMIT ${len(args)}")
        async with self._pool.acquire() as conn:
            return [_gap(r) for r in await conn.fetch(sql, *args)]


def _issue(r: asyncpg.Record) -> IssueRecord:
    bar_ms = to_ms(r["bar_time"]) if r["bar_time"] is not None else 0
    f = Finding(-1, bar_ms, r["rule"], Scope(r["scope"]), Severity(r["severity"]),
                r["message"], float(r["value"] if r["value"] is not None else 0.0),
                float(r["threshold"] if r["threshold"] is not None else 0.0))
    return IssueRecord(r["id"], Series(r["exchange"], r["symbol"], r["timeframe"]), f,
                       r["detect_time"])


def _quarantined(r: asyncpg.Record) -> QuarantineRecord:
    return QuarantineRecord(
        id=r["id"], series=Series(r["exchange"], r["symbol"], r["timeframe"]),
        open_time_ms=r["open_time_ms"],
        values=(r["open"], r["high"], r["low"], r["close"], r["volume"]),
        rules=tuple(r["rules"]), reason=r["reason"], quarantine_time=r["quarantine_time"],
    )


class MarketData(PooledStore):
    """The ingestion service's market data hypertable, read and gap-filled."""

    def __init__(self, pool: asyncpg.Pool, table: str, *,
                 reads: ReadRouter | None = None) -> None:
        super().__init__(pool)
        self.table = table
        self._reads = reads or ReadRouter(pool)

    async def read(self, series: Series, start_ms: int, end_ms: int, *,
                   conn: asyncpg.Connection | None = None) -> Bars:
        """Stored bars with start_ms <= open time < end_ms, ascending.

        Without ``conn`` (context reads) the read router may serve it from the read
        replica; inside a caller's transaction it reads what that transaction sees."""
        async def read(c: Any) -> Candles:
            return await read_candles(c, exchange=series.exchange, symbol=series.symbol,
                                      timeframe=series.timeframe, start=to_dt(start_ms),
                                      end=to_dt(end_ms), table=self.table)

        got = await read(conn) if conn is not None else await self._reads.run(read)
        return Bars(got.open_time_ms, got.open, got.high, got.low, got.close, got.volume,
                    got.provenance)

    async def venues(self, symbol: str, timeframe: str, exclude: str) -> list[str]:
        """Other exchanges storing this market at this timeframe."""
        # A loose index scan (one primary-key probe per stored exchange, then one per
        # candidate) instead of SELECT DISTINCT, which scanned the whole table: every
        # validated batch asks this, and it was the pipeline's costliest query.
        t = self.table
        rows = await self._pool.fetch(
            f"""WITH RECURSIVE ex(e) AS (
                    (SELECT exchange FROM {t} ORDER BY exchange LIMIT 1)
                    UNION ALL
                    SELECT (SELECT exchange FROM {t} WHERE exchange > ex.e
                            ORDER BY exchange LIMIT 1)
                    FROM ex WHERE ex.e IS NOT NULL)
                SELECT e FROM ex WHERE e IS NOT NULL AND e <> $3 AND EXISTS (
                    SELECT 1 FROM {t} WHERE exchange = ex.e AND symbol = $1
                    AND timeframe = $2)
                ORDER BY e""", symbol, timeframe, exclude)
        return [r["e"] for r in rows]

    async def same_base(self, series: Series) -> list[str]:
        """Other symbols of this exchange with the series' base at its timeframe."""
        base = series.symbol.split("/", 1)[0]
        # A loose index scan over the exchange's symbols (see venues); all of them, as
        # the database's collation need not keep one base's symbols together.
        t = self.table
        rows = await self._pool.fetch(
            f"""WITH RECURSIVE s(sym) AS (
                    (SELECT symbol FROM {t} WHERE exchange = $1 ORDER BY symbol LIMIT 1)
                    UNION ALL
                    SELECT (SELECT symbol FROM {t} WHERE exchange = $1 AND symbol > s.sym
                            ORDER BY symbol LIMIT 1)
                    FROM s WHERE s.sym IS NOT NULL)
                SELECT sym FROM s WHERE split_part(sym, '/', 1) = $4 AND sym <> $3
                  AND EXISTS (SELECT 1 FROM {t} WHERE exchange = $1 AND symbol = s.sym
                              AND timeframe = $2)
                ORDER BY sym""",
            series.exchange, series.timeframe, series.symbol, base)
        return [r["sym"] for r in rows]

    async def previous_time(self, series: Series, before_ms: int, not_before_ms: int
                            ) -> int | None:
        """Open time of the last stored bar in [not_before_ms, before_ms), if any."""
        ts = await self._pool.fetchval(
            f"SELECT max(ts) FROM {self.table} WHERE exchange = $1 AND symbol = $2 "
            "AND timeframe = $3 AND ts >= $4 AND ts < $5",
            series.exchange, series.symbol, series.timeframe, to_dt(not_before_ms),
            to_dt(before_ms))
        return None if ts is None else to_ms(ts)

    async def extent(self, series: Series) -> tuple[int, int] | None:
        """Open times of the first and last stored bar of a series."""
        row = await self._pool.fetchrow(
            f"SELECT min(ts) AS lo, max(ts) AS hi FROM {self.table} WHERE exchange = $1 "
            "AND symbol = $2 AND timeframe = $3",
            series.exchange, series.symbol, series.timeframe)
        if row is None or row["lo"] is None:
            return None
        return to_ms(row["lo"]), to_ms(row["hi"])

    async def write_filled(self, conn: asyncpg.Connection, series: Series, bars: Bars,
                           labels: Sequence[str]) -> int:
        """Insert gap-filled bars with their provenance and source; never overwrite.

        This writes into the ingestion service's table on purpose: filling a gap is a
        validation decision (which source, which bars), and the filled bars must live
        beside the original ones so every reader sees one series. ON CONFLICT DO NOTHING
        keeps any bar already stored; the caller runs it in the transaction that updates
        the gaps, so a fill is never half-written.
        """
        if not len(bars):
            return 0
        status = await conn.execute(
            f"""INSERT INTO {self.table} (exchange, symbol, timeframe, ts, open, high, low,
                                          close, volume, provenance, source)
                SELECT $1, $2, $3, {_MS.format('t')}, o, h, l, c, v, p, s
                FROM unnest($4::bigint[], $5::float8[], $6::float8[], $7::float8[],
                            $8::float8[], $9::float8[], $10::smallint[], $11::text[])
                     AS u(t, o, h, l, c, v, p, s)
                ON CONFLICT DO NOTHING""",
            series.exchange, series.symbol, series.timeframe, bars.open_time_ms.tolist(),
            bars.open.tolist(), bars.high.tolist(), bars.low.tolist(), bars.close.tolist(),
            bars.volume.tolist(), bars.provenance.astype(int).tolist(), list(labels),
        )
        return int(status.split()[-1])
