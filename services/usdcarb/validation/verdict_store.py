"""PostgreSQL stores of series verdicts (spans per series, and their history) and of
gap repair policies (asyncpg).

Contract: ``replace`` makes the stored spans overlapping [lo, hi) equal to the given
ones, in the caller's transaction, and records each span that appeared or went in
``series_verdict_changes``; ``lock`` serialises recomputations of one series (a
transaction-scoped advisory lock).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from usdcarb.platform.db import PooledStore
from usdcarb.validation.domain.verdicts import Span, VerdictKind
from usdcarb.validation.model import Series
from usdcarb.validation.store import _MS, to_dt, to_ms


def _span(r: asyncpg.Record) -> tuple[Span, datetime]:
    return (Span(VerdictKind(r["verdict"]), to_ms(r["start_time"]), to_ms(r["end_time"]),
                 r["bars"], r["reason"], r["twin"], float(r["match_ratio"])),
            r["update_time"])


class VerdictStore(PooledStore):
    """Verdict spans of series."""

    async def lock(self, conn: asyncpg.Connection, series: Series) -> None:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 15))",
                           f"verdicts:{series.exchange}:{series.symbol}:{series.timeframe}")

    async def spans(self, series: Series, start_ms: int, end_ms: int, *,
                    conn: asyncpg.Connection | None = None
                    ) -> list[tuple[Span, datetime]]:
        """Spans overlapping [start_ms, end_ms), oldest first, with their update time."""
        async with self._conn(conn) as c:
            rows = await c.fetch(
                "SELECT * FROM series_verdicts WHERE exchange = $1 AND symbol = $2 "
                "AND timeframe = $3 AND start_time < $5 AND end_time > $4 "
                "ORDER BY start_time, id",
                series.exchange, series.symbol, series.timeframe, to_dt(start_ms),
                to_dt(end_ms))
        return [_span(r) for r in rows]

    async def replace(self, conn: asyncpg.Connection, series: Series, lo: int, hi: int,
                      spans: Sequence[Span], *, added: Sequence[Span],
                      removed: Sequence[Span]) -> None:
        """Replace the spans overlapping [lo, hi) with ``spans``; log the changes."""
        key = (series.exchange, series.symbol, series.timeframe)
        await conn.execute(
            "DELETE FROM series_verdicts WHERE exchange = $1 AND symbol = $2 "
            "AND timeframe = $3 AND start_time < $5 AND end_time > $4",
            *key, to_dt(lo), to_dt(hi))
        if spans:
            await conn.execute(
                f"""INSERT INTO series_verdicts (exchange, symbol, timeframe, verdict,
                        start_time, end_time, bars, reason, twin, match_ratio)
                    SELECT $1, $2, $3, v, {_MS.format('s')}, {_MS.format('e')}, n, r, tw, m
                    FROM unnest($4::text[], $5::bigint[], $6::bigint[], $7::bigint[],
                                $8::text[], $9::text[], $10::float8[])
                         AS u(v, s, e, n, r, tw, m)""",
                *key, [s.kind.value for s in spans], [s.start_ms for s in spans],
                [s.end_ms for s in spans], [s.bars for s in spans],
                [s.reason for s in spans], [s.twin for s in spans],
                [s.match_ratio for s in spans])
        changes = [("added", s) for s in added] + [("removed", s) for s in removed]
        if changes:
            await conn.execute(
                f"""INSERT INTO series_verdict_changes (exchange, symbol, timeframe, change,
                        verdict, start_time, end_time, twin, reason)
                    SELECT $1, $2, $3, c, v, {_MS.format('s')}, {_MS.format('e')}, tw, r
                    FROM unnest($4::text[], $5::text[], $6::bigint[], $7::bigint[],
                                $8::text[], $9::text[]) AS u(c, v, s, e, tw, r)""",
                *key, [c for c, _ in changes], [s.kind.value for _, s in changes],
                [s.start_ms for _, s in changes], [s.end_ms for _, s in changes],
                [s.twin for _, s in changes], [s.reason for _, s in changes])

    async def flagged_times(self, series: Series, start_ms: int, end_ms: int, *,
                            conn: asyncpg.Connection | None = None) -> list[int]:
        """Bar times the series' own rules flagged (WARNING or worse, stale and
        incomplete aside) in [start_ms, end_ms): the ground of SUSPECT spans."""
        async with self._conn(conn) as c:
            rows = await c.fetch(
                "SELECT DISTINCT bar_time FROM data_validation_issues WHERE exchange = $1 "
                "AND symbol = $2 AND timeframe = $3 AND bar_time >= $4 AND bar_time < $5 "
                "AND severity IN ('SEVERITY_WARNING', 'SEVERITY_ERROR') "
                "AND scope IN ('RULE_SCOPE_BAR', 'RULE_SCOPE_SERIES') "
                "AND rule NOT IN ('series.stale', 'series.stale_long', 'bar.incomplete')",
                series.exchange, series.symbol, series.timeframe, to_dt(start_ms),
                to_dt(end_ms))
        return [to_ms(r["bar_time"]) for r in rows]

    async def history(self, series: Series, *, limit: int = 100) -> list[tuple[str, Span,
                                                                           datetime]]:
        """The latest verdict changes of a series, newest first."""
        rows = await self._pool.fetch(
            "SELECT * FROM series_verdict_changes WHERE exchange = $1 AND symbol = $2 "
            "AND timeframe = $3 ORDER BY change_time DESC, id DESC LIMIT $4",
            series.exchange, series.symbol, series.timeframe, limit)
        return [(r["change"], Span(VerdictKind(r["verdict"]), to_ms(r["start_time"]),
                                   to_ms(r["end_time"]), 0, r["reason"], r["twin"]),
                 r["change_time"]) for r in rows]


class GapPolicyStore(PooledStore):
    """Gap repair policies per series."""

    async def get(self, series: Series) -> tuple[str, str, datetime | None]:
        """(policy, finer timeframe, update time); ("GAP_POLICY_OFF", "", None) if unset."""
        row = await self._pool.fetchrow(
            "SELECT * FROM gap_policies WHERE exchange = $1 AND symbol = $2 AND timeframe = $3",
            series.exchange, series.symbol, series.timeframe)
        if row is None:
            return "GAP_POLICY_OFF", "", None
        return row["policy"], row["finer_timeframe"], row["update_time"]

    async def set(self, series: Series, policy: str, finer: str) -> datetime:
        when: datetime = await self._pool.fetchval(
            """INSERT INTO gap_policies (exchange, symbol, timeframe, policy, finer_timeframe)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (exchange, symbol, timeframe) DO UPDATE
                   SET policy = excluded.policy, finer_timeframe = excluded.finer_timeframe,
                       update_time = now()
               RETURNING update_time""",
            series.exchange, series.symbol, series.timeframe, policy, finer)
        return when
