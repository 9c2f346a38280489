"""The daily data-quality digest: coverage, gaps and quarantines per series over a day,
published as an EVENT_TYPE_DATA_QUALITY_DIGEST event that channels subscribe to like any
other.

``build_digest`` is pure. ``QualityReader`` reads the day from the market data hypertable
(ingestion's) and validation's gap and quarantine tables, read-only, as the backtest
service reads market data. ``DigestScheduler`` publishes once a day per deployment,
whichever replica takes the day's Redis key first.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from usdcarb.platform.events import DomainEvent

logger = logging.getLogger(__name__)

_TIMEFRAME = re.compile(r"^(\d+)([smhdw])$")
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_TABLE = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$")
DAY = timedelta(days=1)


def timeframe_ms(timeframe: str) -> int:
    """Milliseconds of a ccxt timeframe such as "1m" or "4h" (0 if unknown)."""
    match = _TIMEFRAME.match(timeframe)
    return int(match.group(1)) * _UNIT_MS[match.group(2)] if match else 0


@dataclass(frozen=True, kw_only=True)
class SeriesQuality:
    """One series over the day."""

    exchange: str
    symbol: str
    timeframe: str
    bars: int
    expected_bars: int
    gaps: int
    missing_bars: int
    quarantined_bars: int

    @property
    def coverage(self) -> float:
        return min(1.0, self.bars / self.expected_bars) if self.expected_bars else 1.0


def build_digest(day: datetime, series: list[SeriesQuality]) -> DomainEvent:
    """The digest event of ``day`` (its UTC midnight), series sorted worst coverage first."""
    ranked = sorted(series, key=lambda s: (s.coverage, s.exchange, s.symbol, s.timeframe))
    label = day.strftime("%Y-%m-%d")
    troubled = [s for s in ranked if s.gaps or s.quarantined_bars or s.coverage < 0.99]
    lowest = f", lowest coverage {ranked[0].coverage:.1%}" if ranked else ""
    return DomainEvent(
        type="EVENT_TYPE_DATA_QUALITY_DIGEST", source="notification",
        subject=f"reports/data-quality/{label}",
        severity="SEVERITY_WARNING" if troubled else "SEVERITY_INFO",
        summary=(f"data quality {label}: {len(ranked)} series, {len(troubled)} with gaps, "
                 f"quarantines or missing bars{lowest}"),
        data={"day": label, "series_count": len(ranked),
              "gaps": sum(s.gaps for s in ranked),
              "quarantined_bars": sum(s.quarantined_bars for s in ranked),
              "series": [{**asdict(s), "coverage": round(s.coverage, 6)} for s in ranked]},
        time_ms=int((day + DAY).timestamp() * 1000))


def check_table(name: str) -> str:
    if not _TABLE.match(name):
        raise ValueError(f"expected a table name like schema.table, got {name!r}")
    return name


class QualityReader:
    """Read one day's quality per series (read-only, other services' tables)."""

    def __init__(self, pool: Any, *, market_table: str, validation_schema: str) -> None:
        self._pool = pool
        self._market = check_table(market_table)
        self._validation = check_table(validation_schema)

    async def day(self, day: datetime) -> list[SeriesQuality]:
        end = day + DAY
        v = self._validation
        rows = await self._pool.fetch(
            f"""WITH bars AS (
                    SELECT exchange, symbol, timeframe, count(*) AS bars FROM {self._market}
                    WHERE ts >= $1 AND ts < $2 GROUP BY 1, 2, 3
                ), gaps AS (
                    SELECT exchange, symbol, timeframe, count(*) AS gaps,
                           sum(missing_bars - filled_bars) AS missing
                    FROM {v}.data_gaps WHERE start_time < $2 AND end_time > $1 GROUP BY 1, 2, 3
                ), quarantined AS (
                    SELECT exchange, symbol, timeframe, count(*) AS quarantined
                    FROM {v}.quarantined_bars
                    WHERE open_time_ms >= $3 AND open_time_ms < $4 GROUP BY 1, 2, 3
                )
                SELECT exchange, symbol, timeframe, coalesce(bars, 0) AS bars,
                       coalesce(gaps, 0) AS gaps, coalesce(missing, 0) AS missing,
                       coalesce(quarantined, 0) AS quarantined
                FROM bars FULL JOIN gaps USING (exchange, symbol, timeframe)
                          FULL JOIN quarantined USING (exchange, symbol, timeframe)""",
            day, end, int(day.timestamp() * 1000), int(end.timestamp() * 1000))
        out = []
        for r in rows:
            tf = timeframe_ms(r["timeframe"])
            out.append(SeriesQuality(
                exchange=r["exchange"], symbol=r["symbol"], timeframe=r["timeframe"],
                bars=int(r["bars"]), expected_bars=int(DAY.total_seconds() * 1000) // tf
                if tf else 0, gaps=int(r["gaps"]), missing_bars=int(r["missing"]),
                quarantined_bars=int(r["quarantined"])))
        return out


class DigestScheduler:
    """Publish yesterday's digest every day at ``hour_utc``, once per deployment."""

    def __init__(self, redis: Any, reader: QualityReader,
                 publish: Callable[[DomainEvent], Awaitable[str]], *, hour_utc: int = 6,
                 key_prefix: str = "usdcarb:notification:digest") -> None:
        self._redis = redis
        self._reader = reader
        self._publish = publish
        self._hour = hour_utc
        self._prefix = key_prefix

    async def publish_day(self, day: datetime) -> str | None:
        """Publish the digest of ``day`` unless a replica did; return its event id."""
        label = day.strftime("%Y-%m-%d")
        if not await self._redis.set(f"{self._prefix}:{label}", "1", nx=True, ex=7 * 86_400):
            return None
        try:
            return await self._publish(build_digest(day, await self._reader.day(day)))
        except BaseException:
            await self._redis.delete(f"{self._prefix}:{label}")  # let a retry take it
            raise

    async def run(self) -> None:
        """Wait for each day's hour, then publish the day before; retry failures."""
        while True:
            now = datetime.now(UTC)
            today = now.replace(hour=0, minute=0, second=0, microsecond=0)
            due = today + timedelta(hours=self._hour)
            if now >= due:
                try:
                    await self.publish_day(today - DAY)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("daily digest failed; retrying in 60 s")
                    await asyncio.sleep(60)
                    continue
                due += DAY
            await asyncio.sleep(min(3600.0, (due - datetime.now(UTC)).total_seconds()))
