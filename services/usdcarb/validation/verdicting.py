"""Series verdicts around the stores: compute, store, publish, and filter consumers' bars.

Verdicts are computed from ORIGINAL bars only (a gap-filled bar is a copy of another
venue's bar and would look like an alias), against alias candidates: the other symbols
of the venue with the same base, and the same symbol on the other venues.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

import numpy as np

from usdcarb.platform.events import DomainEvent
from usdcarb.validation.domain.model import Bars, Provenance, Thresholds, concat
from usdcarb.validation.domain.verdicts import (
    UNUSABLE,
    Span,
    VerdictKind,
    overall,
    series_spans,
    usable_bars,
)
from usdcarb.validation.model import Series
from usdcarb.validation.store import MarketData
from usdcarb.validation.verdict_store import VerdictStore

logger = logging.getLogger(__name__)


class EventSink(Protocol):
    """Where domain events go (a Redis stream in production)."""

    async def publish(self, event: DomainEvent) -> None: ...


def _original(bars: Bars) -> Bars:
    return bars.take(bars.provenance == Provenance.ORIGINAL)


def subject_of(series: Series) -> str:
    return f"exchanges/{series.exchange}/markets/{series.symbol.replace('/', '-')}"


class Verdicts:
    """Compute, store and publish series verdicts; filter bars for consumers."""

    def __init__(self, store: VerdictStore, market: MarketData, events: EventSink,
                 th: Thresholds) -> None:
        self._store = store
        self._market = market
        self._events = events
        self._th = th

    async def compute(self, series: Series, tf: int, lo: int, hi: int, *,
                      conn: Any = None, fresh: Bars | None = None) -> list[Span]:
        """Spans of a series over [lo, hi) (``fresh``: accepted bars not stored yet)."""
        bars = _original(await self._market.read(series, lo, hi, conn=conn))
        if fresh is not None and len(fresh):
            bars = concat([bars.take(~np.isin(bars.open_time_ms, fresh.open_time_ms)), fresh])
        candidates: dict[tuple[str, str], Bars] = {}
        names = [(series.exchange, s) for s in await self._market.same_base(series)]
        names += [(v, series.symbol) for v in await self._market.venues(
            series.symbol, series.timeframe, series.exchange)]
        for ex, sym in names:
            twin = await self._market.read(Series(ex, sym, series.timeframe), lo, hi,
                                           conn=conn)
            candidates[(ex, sym)] = _original(twin)
        flags = await self._store.flagged_times(series, lo, hi, conn=conn)
        return await asyncio.to_thread(series_spans, bars, tf, (series.exchange, series.symbol),
                                       candidates, flags, self._th)

    async def refresh(self, series: Series, tf: int, lo: int, hi: int, *,
                      fresh: Bars | None = None) -> list[Span]:
        """Recompute and store the spans of [lo, hi) (widened to the stored spans it
        touches, so a span is never cut); publish an event when the spans changed."""
        async with self._store.transaction() as conn:
            await self._store.lock(conn, series)
            old = [s for s, _ in await self._store.spans(series, lo, hi, conn=conn)]
            lo = min([lo, *(s.start_ms for s in old)])
            hi = max([hi, *(s.end_ms for s in old)])
            new = await self.compute(series, tf, lo, hi, conn=conn, fresh=fresh)
            old_keys, new_keys = {s.key for s in old}, {s.key for s in new}
            added = [s for s in new if s.key not in old_keys]
            removed = [s for s in old if s.key not in new_keys]
            await self._store.replace(conn, series, lo, hi, new, added=added, removed=removed)
        if added or removed:
            await self._announce(series, lo, hi, old, new, added, removed)
        return new

    async def usable(self, series: Series, tf: int, bars: Bars, lo: int, hi: int, *,
                     conn: Any = None) -> Bars:
        """``bars`` of ``series`` outside its STALE and ALIASED spans (computed now)."""
        if not len(bars):
            return bars
        return usable_bars(bars, await self.compute(series, tf, lo, hi, conn=conn))

    async def get(self, series: Series, start_ms: int, end_ms: int
                  ) -> tuple[VerdictKind, list[tuple[Span, datetime]]]:
        spans = await self._store.spans(series, start_ms, end_ms)
        return overall([s for s, _ in spans], start_ms, end_ms), spans

    async def history(self, series: Series) -> list[tuple[str, Span, datetime]]:
        return await self._store.history(series)

    async def _announce(self, series: Series, lo: int, hi: int, old: Sequence[Span],
                        new: Sequence[Span], added: Sequence[Span],
                        removed: Sequence[Span]) -> None:
        before, after = overall(old, lo, hi), overall(new, lo, hi)
        bad = any(s.kind in UNUSABLE for s in added)
        what = ", ".join(f"+{s.kind.name.lower()}" + (f" (twin {s.twin})" if s.twin else "")
                         for s in added) or ", ".join(f"-{s.kind.name.lower()}" for s in removed)
        event = DomainEvent(
            type="EVENT_TYPE_SERIES_VERDICT_CHANGED", source="validation",
            subject=subject_of(series), severity="SEVERITY_WARNING" if bad else "SEVERITY_INFO",
            summary=f"verdict of {series.exchange} {series.symbol} {series.timeframe}: "
                    f"{before.name.lower()} -> {after.name.lower()} ({what})",
            data={"series": subject_of(series), "timeframe": series.timeframe,
                  "before": before.value, "after": after.value,
                  "added": [_span_data(s) for s in added[:20]],
                  "removed": [_span_data(s) for s in removed[:20]]})
        try:
            await self._events.publish(event)
        except Exception:
            # The verdicts are committed; a lost notification must not fail the call.
            logger.exception("could not publish %s for %s", event.type, event.subject)


def _span_data(s: Span) -> dict[str, Any]:
    return {"verdict": s.kind.value, "start_ms": s.start_ms, "end_ms": s.end_ms,
            "bars": s.bars, "twin": s.twin, "match_ratio": s.match_ratio, "reason": s.reason}

