"""Series verdicts: per series and time span, whether a consumer may use the bars.

* STALE: a span of flat (open = high = low = close), zero-volume bars at one price
  lasting longer than ``verdict_stale_min_ms`` (missing bars inside the span do not break
  it: a venue that stops printing is no more alive). Binance.US prints such bars for
  quiet minutes; the real depeg week's longest run is 215 minutes (USDC/USDT), so the
  default bound of 6 hours keeps every real series usable.
* ALIASED: the series repeats another named series bar for bar (OHLCV equal within
  ``alias_rel_tol`` on at least ``alias_min_ratio`` of the bars where either traded),
  judged per block of ``alias_block_ms``. Of two identical series the alias is the one
  that is not the primary (a fiat-quoted book is primary over a stablecoin-quoted copy,
  then the smaller (exchange, symbol)): Coinbase's BTC-USDC was its BTC-USD book.
* SUSPECT: spans where the series' own rules (per-bar and series scope, WARNING or
  worse, stale rules aside) flagged bars.
* USABLE: everything else (no span is stored for it).

Pure: numpy and the standard library.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from usdcarb.validation.domain.model import I64, Bars, Mask, Thresholds, fmt_ms

FIAT = frozenset({"USD", "EUR", "GBP", "JPY", "CAD", "AUD", "CHF"})


class VerdictKind(enum.StrEnum):
    """What a span of a series is good for (names match usdcarb.v1.SeriesVerdictKind)."""

    USABLE = "SERIES_VERDICT_KIND_USABLE"
    STALE = "SERIES_VERDICT_KIND_STALE"
    ALIASED = "SERIES_VERDICT_KIND_ALIASED"
    SUSPECT = "SERIES_VERDICT_KIND_SUSPECT"

    @property
    def rank(self) -> int:
        """Higher is worse: the overall verdict of a range is its worst span."""
        return {"SERIES_VERDICT_KIND_USABLE": 0, "SERIES_VERDICT_KIND_SUSPECT": 1,
                "SERIES_VERDICT_KIND_STALE": 2, "SERIES_VERDICT_KIND_ALIASED": 3}[self.value]


# Kinds whose bars a consumer must not take as an independent price.
UNUSABLE = frozenset({VerdictKind.STALE, VerdictKind.ALIASED})


@dataclass(frozen=True)
class Span:
    """A verdict over bars opening in [start_ms, end_ms)."""

    kind: VerdictKind
    start_ms: int
    end_ms: int
    bars: int
    reason: str
    twin: str = ""  # "exchange:symbol" of the series an ALIASED span repeats
    match_ratio: float = 0.0

    @property
    def key(self) -> tuple[str, int, str]:
        """What identifies a span across recomputations (its end may grow)."""
        return (self.kind.value, self.start_ms, self.twin)


def _runs(flags: Mask) -> list[tuple[int, int]]:
    """[start, end) index runs of True in ``flags``."""
    if not flags.size:
        return []
    d = np.diff(np.r_[0, flags.astype(np.int8), 0])
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(),
                    strict=True))


def stale_spans(bars: Bars, tf_ms: int, th: Thresholds) -> list[Span]:
    """Spans of flat, zero-volume bars at one price longer than the configured bound."""
    n = len(bars)
    if n == 0:
        return []
    c = bars.close
    flat = (bars.open == c) & (bars.high == c) & (bars.low == c) & (bars.volume == 0)
    same = np.r_[False, flat[1:] & flat[:-1] & (c[1:] == c[:-1])]
    out = []
    starts = np.flatnonzero(flat & ~same)
    breaks = np.r_[np.flatnonzero(~same), n]
    ends = breaks[np.searchsorted(breaks, starts, side="right")]  # exclusive row index
    t = bars.open_time_ms
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        t0, t1 = int(t[s]), int(t[e - 1]) + tf_ms
        if t1 - t0 <= th.verdict_stale_min_ms or e - s < th.stale_min_run:
            continue
        out.append(Span(VerdictKind.STALE, t0, t1, e - s,
                        f"expected trading within {th.verdict_stale_min_ms // 60_000} min, got "
                        f"{e - s} flat zero-volume bars at {float(c[s])!r} from {fmt_ms(t0)} "
                        f"to {fmt_ms(t1)}"))
    return out


def _quote(symbol: str) -> str:
    return symbol.split("/")[1].split(":")[0] if "/" in symbol else ""


def is_primary(a: tuple[str, str], b: tuple[str, str]) -> bool:
    """Whether series ``a`` (exchange, symbol) is the original when it and ``b`` match."""
    fa, fb = _quote(a[1]) in FIAT, _quote(b[1]) in FIAT
    if fa != fb:
        return fa
    return a < b


def _matches(bars: Bars, twin: Bars, tol: float) -> tuple[I64, Mask]:
    """Common open times where either traded, and whether OHLCV agree there."""
    common, i, j = np.intersect1d(bars.open_time_ms, twin.open_time_ms, assume_unique=True,
                                  return_indices=True)
    traded = (bars.volume[i] > 0) | (twin.volume[j] > 0)
    i, j, common = i[traded], j[traded], common[traded]
    same = np.ones(len(i), bool)
    for name in ("open", "high", "low", "close", "volume"):
        a, b = getattr(bars, name)[i], getattr(twin, name)[j]
        with np.errstate(invalid="ignore"):
            same &= np.abs(a - b) <= tol * np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-12)
    return common, same


def alias_spans(bars: Bars, tf_ms: int, own: tuple[str, str],
                candidates: Mapping[tuple[str, str], Bars], th: Thresholds) -> list[Span]:
    """Spans where this series repeats a candidate that is the primary of the two."""
    out: list[Span] = []
    if not len(bars):
        return out
    for name, twin in candidates.items():
        if name == own or not len(twin) or is_primary(own, name):
            continue
        common, same = _matches(bars, twin, th.alias_rel_tol)
        if not common.size:
            continue
        block = common // th.alias_block_ms
        ids, inv = np.unique(block, return_inverse=True)
        compared = np.bincount(inv, minlength=len(ids))
        matched = np.bincount(inv, weights=same, minlength=len(ids))
        aliased = (compared >= th.alias_min_bars) & (matched >= th.alias_min_ratio * compared)
        # Adjacent aliased blocks form one span.
        consecutive = np.r_[False, np.diff(ids) == 1]
        run_flags = aliased & ~(consecutive & np.r_[False, aliased[:-1]])
        for b0 in np.flatnonzero(run_flags).tolist():
            b1 = b0
            while b1 + 1 < len(ids) and aliased[b1 + 1] and ids[b1 + 1] == ids[b1] + 1:
                b1 += 1
            rows = (inv >= b0) & (inv <= b1)
            t0, t1 = int(common[rows][0]), int(common[rows][-1]) + tf_ms
            n, m = int(compared[b0:b1 + 1].sum()), float(matched[b0:b1 + 1].sum())
            twin_name = f"{name[0]}:{name[1]}"
            out.append(Span(VerdictKind.ALIASED, t0, t1, n,
                            f"expected an independent price, got {m / n:.1%} of {n} traded "
                            f"bars identical to {twin_name} from {fmt_ms(t0)} to {fmt_ms(t1)}",
                            twin=twin_name, match_ratio=m / n))
    return out


def suspect_spans(flag_times: Iterable[int], tf_ms: int, th: Thresholds) -> list[Span]:
    """Merge the open times of bars the series' own rules flagged into spans."""
    t = np.unique(np.fromiter(flag_times, np.int64))
    if not t.size:
        return []
    split = np.flatnonzero(np.diff(t) > th.suspect_merge_bars * tf_ms) + 1
    out = []
    for part in np.split(t, split):
        t0, t1 = int(part[0]), int(part[-1]) + tf_ms
        out.append(Span(VerdictKind.SUSPECT, t0, t1, len(part),
                        f"expected no own-rule findings, got {len(part)} flagged bar(s) from "
                        f"{fmt_ms(t0)} to {fmt_ms(t1)}"))
    return out


def series_spans(bars: Bars, tf_ms: int, own: tuple[str, str],
                 candidates: Mapping[tuple[str, str], Bars], flag_times: Iterable[int],
                 th: Thresholds) -> list[Span]:
    """Every non-usable span of a series, ordered by start."""
    spans = (stale_spans(bars, tf_ms, th) + alias_spans(bars, tf_ms, own, candidates, th)
             + suspect_spans(flag_times, tf_ms, th))
    return sorted(spans, key=lambda s: (s.start_ms, s.kind.rank))


def overall(spans: Sequence[Span], start_ms: int, end_ms: int) -> VerdictKind:
    """The worst verdict of the spans overlapping [start_ms, end_ms)."""
    inside = [s.kind for s in spans if s.start_ms < end_ms and s.end_ms > start_ms]
    return max(inside, key=lambda k: k.rank, default=VerdictKind.USABLE)


def unusable_mask(times: I64, spans: Sequence[Span]) -> Mask:
    """Which of ``times`` fall in a STALE or ALIASED span."""
    bad = np.zeros(len(times), bool)
    for s in spans:
        if s.kind in UNUSABLE:
            bad |= (times >= s.start_ms) & (times < s.end_ms)
    return bad


def usable_bars(bars: Bars, spans: Sequence[Span]) -> Bars:
    """The bars outside every STALE or ALIASED span."""
    return bars.take(~unusable_mask(bars.open_time_ms, spans))
