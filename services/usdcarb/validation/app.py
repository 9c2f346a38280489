"""Use cases of the validation service: domain rules around store reads and writes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from usdcarb.platform import paging
from usdcarb.platform.errors import InvalidArgument, NotFound, expected
from usdcarb.platform.events import DomainEvent
from usdcarb.validation.domain.gaps import (
    FillSource,
    GapRun,
    GapState,
    GapToFill,
    aggregate,
    detect_gaps,
    plan_fill,
)
from usdcarb.validation.domain.implied_cross import pair_legs
from usdcarb.validation.domain.model import (
    MAX_TIME_MS,
    TIMEFRAMES,
    Bars,
    Finding,
    Provenance,
    Severity,
    Thresholds,
)
from usdcarb.validation.domain.quality import GapCount, QualitySummary, summarize
from usdcarb.validation.domain.validate import Verdict, validate_batch, validate_stored
from usdcarb.validation.domain.verdicts import Span, VerdictKind
from usdcarb.validation.model import GapRecord, IssueRecord, QuarantineRecord, Series, Window
from usdcarb.validation.store import MarketData, QualityStore
from usdcarb.validation.verdict_store import GapPolicyStore, VerdictStore
from usdcarb.validation.verdicting import Verdicts

logger = logging.getLogger(__name__)
T = TypeVar("T")
OPEN_STATES = (GapState.OPEN, GapState.PARTIALLY_FILLED, GapState.UNFILLABLE)
GAP_POLICIES = ("GAP_POLICY_OFF", "GAP_POLICY_BEST_VENUE", "GAP_POLICY_FINER_TIMEFRAME")
COLUMNS = ("open_time_ms", "open", "high", "low", "close", "volume")


class EventSink(Protocol):
    """Where domain events go (a Redis stream in production)."""

    async def publish(self, event: DomainEvent) -> None: ...


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing and the token of the next."""

    items: list[T]
    next_page_token: str


@dataclass(frozen=True)
class RangeResult:
    """What ValidateRange checked and found."""

    bars_checked: int
    findings: tuple[Finding, ...]
    gaps: list[GapRecord]


@dataclass(frozen=True)
class QualityReport:
    """A quality summary with the verdicts over its range and the verdict history."""

    summary: QualitySummary
    verdict: VerdictKind
    spans: list[tuple[Span, datetime]]
    history: list[tuple[str, Span, datetime]]


@dataclass(frozen=True)
class FillResult:
    """Gaps considered by FillGaps, with their new state, and bars written."""

    gaps: list[GapRecord]
    bars_filled: int


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


def check_series(series: Series, field: str) -> int:
    """Check a series key and return its timeframe in ms."""
    violations = [(f"{field}.{name}", "expected a non-empty value, got ''")
                  for name in ("exchange", "symbol", "timeframe") if not getattr(series, name)]
    if series.timeframe and series.timeframe not in TIMEFRAMES:
        violations.append((f"{field}.timeframe",
                           expected(f"one of {list(TIMEFRAMES)}", series.timeframe)))
    if violations:
        raise InvalidArgument(violations)
    return TIMEFRAMES[series.timeframe]


def check_range(start_ms: int | None, end_ms: int | None, field: str, *, required: bool
                ) -> None:
    if start_ms is None or end_ms is None:
        if required:
            raise InvalidArgument.for_field(field, "a start_time and an end_time", "unset")
        return
    if end_ms <= start_ms:
        raise InvalidArgument.for_field(
            f"{field}.end_time", f"a time after start_time {start_ms} ms", end_ms)


def batch_from_columns(columns: Mapping[str, Any], count: int, field: str) -> Bars:
    """Build bars from columns, refusing columns of unequal length."""
    lengths = {name: len(columns[name]) for name in COLUMNS}
    n = lengths["open_time_ms"]
    bad = [(f"{field}.{name}", expected(f"{n} values like open_time_ms", length))
           for name, length in lengths.items() if length != n]
    if count and count != n:
        bad.append((f"{field}.count", expected(f"the number of bars ({n})", count)))
    if bad:
        raise InvalidArgument(bad)
    return Bars.of(*(columns[name] for name in COLUMNS))


class ValidationApp:
    """Validate batches and ranges, record findings, quarantine, gaps and fills."""

    def __init__(self, quality: QualityStore, market: MarketData, events: EventSink, *,
                 thresholds: Thresholds | None = None, clock: Callable[[], int] = wall_clock_ms,
                 context_bars: int = 1440, gap_lookback_bars: int = 10_080) -> None:
        self._quality = quality
        self._market = market
        self._events = events
        self._th = thresholds or Thresholds()
        self._clock = clock
        self._context = context_bars
        self._lookback = gap_lookback_bars
        self._verdicts = Verdicts(VerdictStore(quality.pool), market, events, self._th)
        self._policies = GapPolicyStore(quality.pool)

    # -- validation -------------------------------------------------------------------
    async def validate_candles(self, series: Series, batch: Bars, *, record: bool,
                               cross_venue: bool) -> Verdict:
        """Judge a batch against its stored neighbours; with ``record``, store the
        findings, quarantine the rejected bars and record the gaps, in one transaction."""
        tf = check_series(series, "batch.series")
        now = self._clock()
        ts = batch.open_time_ms
        usable = ts[(ts % tf == 0) & (ts <= now) & (ts >= 0)]
        stored, others, legs = Bars.empty(), {}, []
        lo = hi = 0
        if usable.size:
            lo = int(usable.min()) - self._context * tf
            hi = int(usable.max()) + (self._context + 1) * tf
            stored = await self._market.read(series, lo, hi)
            if cross_venue:
                others = await self._others(series, tf, lo, hi)
                legs = await self._legs(series, tf, lo, hi)
        # The rules are numpy/numba work that mostly releases the GIL: in a thread, the
        # event loop (RPCs, or the ingestion worker's fetches when run in-process) goes on.
        verdict = await asyncio.to_thread(validate_batch, batch, tf_ms=tf, now_ms=now,
                                          stored=stored, others=others, th=self._th,
                                          legs=legs)
        if record:
            await self._record_batch(series, tf, batch, verdict, stored)
            if usable.size:
                await self._verdicts.refresh(series, tf, lo, hi,
                                             fresh=batch.take(verdict.accepted))
                await self._repair(series, lo, hi)
        return verdict

    async def _repair(self, series: Series, lo: int, hi: int) -> None:
        """Fill the open gaps of [lo, hi) per the series' gap policy (OFF: nothing)."""
        policy, finer, _ = await self._policies.get(series)
        if policy == "GAP_POLICY_OFF":
            return
        if policy == "GAP_POLICY_FINER_TIMEFRAME":
            sources: list[tuple[str, str]] = [("", finer)]
        else:
            sources = [(v, "") for v in await self._market.venues(
                series.symbol, series.timeframe, series.exchange)]
        if not sources:
            return
        try:
            await self.fill_gaps(series, lo, hi, sources=sources, dry_run=False,
                                 best_first=policy == "GAP_POLICY_BEST_VENUE")
        except Exception:
            # The page is validated and recorded; a failed repair must not fail it
            # (FillGaps, or the next page, repairs the gaps later).
            logger.exception("gap repair of %s by %s failed", series, policy)

    async def set_gap_policy(self, series: Series, policy: str, finer: str
                             ) -> tuple[str, str, datetime | None]:
        tf = check_series(series, "gap_policy.series")
        if policy not in GAP_POLICIES:
            raise InvalidArgument.for_field("gap_policy.policy", f"one of {GAP_POLICIES}",
                                            policy or "GAP_POLICY_UNSPECIFIED")
        if policy == "GAP_POLICY_FINER_TIMEFRAME":
            self._check_sources(series, tf, [("", finer)])
        elif finer:
            raise InvalidArgument.for_field(
                "gap_policy.finer_timeframe", "empty unless the policy is FINER_TIMEFRAME",
                finer)
        return policy, finer, await self._policies.set(series, policy, finer)

    async def gap_policy(self, series: Series) -> tuple[str, str, datetime | None]:
        check_series(series, "series")
        return await self._policies.get(series)

    async def _record_batch(self, series: Series, tf: int, batch: Bars, verdict: Verdict,
                            stored: Bars) -> None:
        ok = batch.open_time_ms[verdict.accepted]
        runs: list[GapRun] = []
        span = (0, 0)
        if ok.size:
            first, last = int(ok.min()), int(ok.max())
            before = stored.open_time_ms[stored.open_time_ms < first]
            prev = int(before[-1]) if before.size else await self._market.previous_time(
                series, first, first - self._lookback * tf)
            lo = prev if prev is not None else first
            present = np.unique(np.r_[ok, stored.open_time_ms])
            present = present[(present >= lo) & (present <= last)]
            runs = detect_gaps(present, tf)
            span = (lo, last + tf)
        rejected = sorted(verdict.errors_by_index().items())
        async with self._quality.transaction() as conn:
            issues = await self._quality.record_findings(conn, series, verdict.findings)
            await self._quality.quarantine(conn, series, batch, rejected)
            gaps = await self._quality.reconcile_gaps(conn, series, runs, span) if ok.size else []
        await self._announce(series, issues, gaps)

    async def validate_range(self, series: Series, start_ms: int | None, end_ms: int | None,
                             *, cross_venue: bool) -> RangeResult:
        """Run every rule over a stored range; record the findings and the gaps."""
        tf = check_series(series, "series")
        check_range(start_ms, end_ms, "range", required=True)
        assert start_ms is not None and end_ms is not None
        now = self._clock()
        end = min(end_ms, now - now % tf + tf)
        lo, hi = start_ms - self._context * tf, end_ms + self._context * tf
        bars = await self._market.read(series, lo, hi)
        others = await self._others(series, tf, lo, hi) if cross_venue else {}
        legs = await self._legs(series, tf, lo, hi) if cross_venue else []
        checked, findings = await asyncio.to_thread(
            validate_stored, bars, tf_ms=tf, now_ms=now, start_ms=start_ms, end_ms=end_ms,
            others=others, th=self._th, legs=legs)
        ts = bars.open_time_ms
        runs = detect_gaps(ts[(ts >= start_ms) & (ts < end)], tf, start_ms=start_ms,
                           end_ms=end) if end > start_ms else []
        async with self._quality.transaction() as conn:
            issues = await self._quality.record_findings(conn, series, findings)
            new_gaps = await self._quality.reconcile_gaps(conn, series, runs, (start_ms, end))
            gaps = await self._quality.gaps_overlapping(series, start_ms, end_ms, conn=conn,
                                                        states=OPEN_STATES)
        await self._announce(series, issues, new_gaps)
        await self._verdicts.refresh(series, tf, lo, hi)
        return RangeResult(checked, findings, gaps)

    async def _others(self, series: Series, tf: int, lo: int, hi: int) -> dict[str, Bars]:
        """The same market on the other venues: original bars outside their stale and
        aliased spans (an alias and its twin count once: the alias is left out)."""
        out = {}
        for venue in await self._market.venues(series.symbol, series.timeframe,
                                               series.exchange):
            other = Series(venue, series.symbol, series.timeframe)
            bars = await self._market.read(other, lo, hi)
            bars = bars.take(bars.provenance == Provenance.ORIGINAL)
            out[venue] = await self._verdicts.usable(other, tf, bars, lo, hi)
        return out

    async def _legs(self, series: Series, tf: int, lo: int, hi: int
                    ) -> list[tuple[Bars, Bars]]:
        """For a stablecoin pair A/B, usable (A/USD, B/USD) pairs: the series' own venue
        when it lists both, else every venue that does."""
        names = pair_legs(series.symbol)
        if names is None:
            return []
        venues = set(await self._market.venues(names[0], series.timeframe, ""))
        venues &= set(await self._market.venues(names[1], series.timeframe, ""))
        picked = [series.exchange] if series.exchange in venues else sorted(venues)
        legs = []
        for venue in picked:
            pair = []
            for sym in names:
                leg = Series(venue, sym, series.timeframe)
                bars = await self._market.read(leg, lo, hi)
                bars = bars.take(bars.provenance == Provenance.ORIGINAL)
                pair.append(await self._verdicts.usable(leg, tf, bars, lo, hi))
            legs.append((pair[0], pair[1]))
        return legs

    async def _announce(self, series: Series, issues: Sequence[IssueRecord],
                        gaps: Sequence[GapRecord]) -> None:
        """Publish one event per kind per call: notifications summarise, the store lists."""
        subject = f"exchanges/{series.exchange}/markets/{series.symbol.replace('/', '-')}"
        errors = [i for i in issues if i.finding.severity == Severity.ERROR]
        events = []
        if errors:
            rules = sorted({i.finding.rule for i in errors})
            events.append(DomainEvent(
                type="EVENT_TYPE_DATA_ISSUE", source="validation", subject=errors[0].name,
                severity="SEVERITY_ERROR",
                summary=f"{len(errors)} bad bar(s) on {series.exchange} {series.symbol} "
                        f"{series.timeframe}: {', '.join(rules)}",
                data={"series": subject, "timeframe": series.timeframe, "count": len(errors),
                      "rules": rules, "issues": [i.name for i in errors[:20]]}))
        if gaps:
            missing = sum(g.missing for g in gaps)
            events.append(DomainEvent(
                type="EVENT_TYPE_GAP_DETECTED", source="validation", subject=gaps[0].name,
                severity="SEVERITY_WARNING",
                summary=f"{len(gaps)} gap(s), {missing} missing bar(s) on {series.exchange} "
                        f"{series.symbol} {series.timeframe}",
                data={"series": subject, "timeframe": series.timeframe, "count": len(gaps),
                      "missing_bars": missing, "gaps": [g.name for g in gaps[:20]]}))
        for event in events:
            try:
                await self._events.publish(event)
            except Exception:
                # The findings are committed; a lost notification must not fail the call.
                logger.exception("could not publish %s for %s", event.type, event.subject)

    # -- listings ---------------------------------------------------------------------
    async def list_issues(self, w: Window, *, min_severity: str, rule: str, page_size: int,
                          page_token: str) -> Page[IssueRecord]:
        _check_window(w)
        floor = Severity(min_severity).rank if min_severity else 1
        severities = [s.value for s in Severity if s.rank >= floor]
        size = paging.page_size(page_size, default=100)
        filters = {"w": _window_key(w), "min_severity": min_severity, "rule": rule}
        key = paging.decode_token(page_token, filters)
        rows = await self._quality.list_issues(
            w, severities=severities, rule=rule, limit=size + 1,
            after=(int(key[0]), int(key[1])) if key else None)
        return _page(rows, size, lambda r: [r.finding.bar_time_ms, r.id], filters)

    async def list_quarantined(self, w: Window, *, page_size: int, page_token: str
                               ) -> Page[QuarantineRecord]:
        _check_window(w)
        size = paging.page_size(page_size, default=100)
        filters = {"w": _window_key(w)}
        key = paging.decode_token(page_token, filters)
        rows = await self._quality.list_quarantined(
            w, limit=size + 1, after=(int(key[0]), int(key[1])) if key else None)
        return _page(rows, size, lambda r: [r.open_time_ms, r.id], filters)

    async def list_gaps(self, w: Window, *, state: str, page_size: int, page_token: str
                        ) -> Page[GapRecord]:
        _check_window(w)
        size = paging.page_size(page_size, default=100)
        filters = {"w": _window_key(w), "state": state}
        key = paging.decode_token(page_token, filters)
        rows = await self._quality.list_gaps(
            w, state=state or None, limit=size + 1,
            after=(int(key[0]), int(key[1])) if key else None)
        return _page(rows, size, lambda r: [r.start_ms, r.id], filters)

    # -- repair -----------------------------------------------------------------------
    async def fill_gaps(self, series: Series, start_ms: int | None, end_ms: int | None, *,
                        sources: Sequence[tuple[str, str]], dry_run: bool,
                        best_first: bool = False) -> FillResult:
        """Fill the recorded, not yet filled gaps of a series from ``sources``
        ((exchange, finer timeframe) pairs, in order; default every other venue); with
        ``best_first`` the source with the most usable bars in the gaps goes first."""
        tf = check_series(series, "series")
        check_range(start_ms, end_ms, "range", required=False)
        self._check_sources(series, tf, sources)
        lo = start_ms if start_ms is not None else 0
        hi = end_ms if end_ms is not None else MAX_TIME_MS
        picked = list(sources) or [
            (v, "") for v in await self._market.venues(series.symbol, series.timeframe,
                                                       series.exchange)]
        now = self._clock()
        async with self._quality.transaction() as conn:
            gaps = await self._quality.gaps_overlapping(
                series, lo, hi, conn=conn, lock=not dry_run,
                states=OPEN_STATES)
            if not gaps:
                return FillResult([], 0)
            span = (min(g.start_ms for g in gaps), max(g.end_ms for g in gaps))
            present = (await self._market.read(series, *span, conn=conn)).open_time_ms
            offered = [await self._source(conn, series, tf, ex, fine, span)
                       for ex, fine in picked]
            if best_first:
                holes = np.concatenate([np.arange(g.start_ms, g.end_ms, tf) for g in gaps])
                offered.sort(key=lambda o: -int(np.isin(o.bars.open_time_ms, holes).sum()))
            plan = plan_fill(
                [GapToFill(g.id, g.start_ms, g.end_ms, g.missing, g.filled) for g in gaps],
                present, tf, offered, self._th, now)
            if dry_run:
                by_id = {o.key: o for o in plan.outcomes}
                return FillResult([_projected(g, by_id[g.id]) for g in gaps], len(plan.bars))
            written = await self._market.write_filled(conn, series, plan.bars, plan.labels)
            updated = [await self._quality.update_gap(conn, o.key, filled_now=o.filled_now,
                                                      sources=o.sources, state=o.state)
                       for o in plan.outcomes]
        logger.info("filled %d bar(s) in %d gap(s) of %s", written, len(updated), series)
        return FillResult(updated, written)

    def _check_sources(self, series: Series, tf: int, sources: Sequence[tuple[str, str]]
                       ) -> None:
        bad = []
        for i, (exchange, fine) in enumerate(sources):
            f = f"sources[{i}]"
            if fine:
                if fine not in TIMEFRAMES:
                    bad.append((f"{f}.timeframe", expected(f"one of {list(TIMEFRAMES)}", fine)))
                elif TIMEFRAMES[fine] >= tf or tf % TIMEFRAMES[fine]:
                    bad.append((f"{f}.timeframe",
                                expected(f"a timeframe finer than {series.timeframe} that "
                                         "divides it", fine)))
            elif not exchange or exchange == series.exchange:
                bad.append((f"{f}.exchange", expected(
                    "another venue (or a finer timeframe of this one)", exchange)))
        if bad:
            raise InvalidArgument(bad)

    async def _source(self, conn: Any, series: Series, tf: int, exchange: str, fine: str,
                      span: tuple[int, int]) -> FillSource:
        venue = exchange or series.exchange
        if not fine:
            src = Series(venue, series.symbol, series.timeframe)
            bars = await self._market.read(src, *span, conn=conn)
            # Never from a stale or aliased source: only its usable bars are offered.
            bars = await self._verdicts.usable(src, tf, bars, *span, conn=conn)
            return FillSource(venue, Provenance.FILLED_FROM_VENUE, bars)
        src = Series(venue, series.symbol, fine)
        raw = await self._market.read(src, *span, conn=conn)
        raw = await self._verdicts.usable(src, TIMEFRAMES[fine], raw, *span, conn=conn)
        bars = aggregate(raw.take(raw.provenance == Provenance.ORIGINAL), tf)
        prov = (Provenance.FILLED_FROM_TIMEFRAME if venue == series.exchange
                else Provenance.FILLED_FROM_VENUE)
        return FillSource(f"{venue}:{fine}", prov, bars)

    # -- verdicts ---------------------------------------------------------------------
    async def series_verdict(self, series: Series, start_ms: int | None, end_ms: int | None
                             ) -> tuple[int, int, VerdictKind, list[tuple[Span, datetime]]]:
        """The stored verdict spans of a series over a range (default: all stored)."""
        tf = check_series(series, "series")
        check_range(start_ms, end_ms, "range", required=False)
        if start_ms is None or end_ms is None:
            extent = await self._market.extent(series)
            if extent is None:
                raise NotFound("series", f"{series.exchange} {series.symbol} {series.timeframe}")
            start_ms, end_ms = extent[0], extent[1] + tf
        kind, spans = await self._verdicts.get(series, start_ms, end_ms)
        return start_ms, end_ms, kind, spans

    # -- quality ----------------------------------------------------------------------
    async def quality_summary(self, series: Series, start_ms: int | None, end_ms: int | None
                              ) -> QualitySummary:
        tf = check_series(series, "series")
        check_range(start_ms, end_ms, "range", required=False)
        if start_ms is None or end_ms is None:
            extent = await self._market.extent(series)
            if extent is None:
                raise NotFound("series", f"{series.exchange} {series.symbol} {series.timeframe}")
            start_ms, end_ms = extent[0], extent[1] + tf
        now = self._clock()
        end = max(start_ms, min(end_ms, now - now % tf + tf))
        bars = await self._market.read(series, start_ms, end_ms)
        quarantined = await self._quality.count_quarantined(series, start_ms, end_ms)
        gaps = await self._quality.gaps_overlapping(series, start_ms, end_ms)
        by_sev, by_rule = await self._quality.issue_counts(series, start_ms, end_ms)
        return summarize(bars, tf_ms=tf, start_ms=start_ms, end_ms=end,
                         quarantined=quarantined,
                         gaps=[GapCount(g.state, g.missing, g.filled) for g in gaps],
                         issues_by_severity=by_sev, issues_by_rule=by_rule)

    async def quality_report(self, series: Series, start_ms: int | None, end_ms: int | None
                             ) -> QualityReport:
        """The quality summary with the series' verdict spans and verdict history."""
        summary = await self.quality_summary(series, start_ms, end_ms)
        kind, spans = await self._verdicts.get(series, summary.start_ms, summary.end_ms)
        return QualityReport(summary, kind, spans, await self._verdicts.history(series))


def _projected(g: GapRecord, o: Any) -> GapRecord:
    return GapRecord(g.id, g.series, g.start_ms, g.end_ms, g.missing, o.state,
                     g.filled + o.filled_now,
                     tuple(sorted(set(g.filled_from) | set(o.sources))), g.detect_time)


def _check_window(w: Window) -> None:
    if w.timeframe and w.timeframe not in TIMEFRAMES:
        raise InvalidArgument.for_field("filter.timeframe", f"one of {list(TIMEFRAMES)}",
                                        w.timeframe)
    check_range(w.start_ms, w.end_ms, "filter.range", required=False)


def _window_key(w: Window) -> list[Any]:
    return [w.exchange, w.symbol, w.timeframe, w.start_ms, w.end_ms]


def _page(rows: list[T], size: int, key: Callable[[T], list[Any]],
          filters: dict[str, Any]) -> Page[T]:
    if len(rows) <= size:
        return Page(rows, "")
    items = rows[:size]
    return Page(items, paging.encode_token(key(items[-1]), filters))
