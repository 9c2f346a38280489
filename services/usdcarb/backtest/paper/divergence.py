"""Compare a paper run with the backtest of the same version over the same bars (pure).

The paper run records every bar as it saw it (``paper_bars``: closes and volumes, NaN for
a market missing then); the backtest reads the bars stored now. Where both saw the same
bars the engine gives the same fills bit for bit, so every differing fill goes back to a
bar that differs between the two, or to a difference carried from an earlier bar:

- LATE_BAR: the run saw a market's bar missing (it was stored after the run had
  processed its time, ``stale_after_bars`` later), the store has it now;
- GAP: the run traded on a bar that is missing in the store;
- REVISED_BAR: the run saw other values than the store holds now;
- CARRIED_OVER: no bar differs between the signal and the fill (positions or balances
  carried from an earlier difference).

Fills are paired by (signal bar, venue, symbol, side) in fill order; a pair that fills at
another bar differs in TIME, one with another price, quantity or fee in
PRICE_OR_QUANTITY; an unpaired fill is missing on the other side. Round-trip numbers are
not compared (a round trip missing on one side renumbers the later ones).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from usdcarb.backtest.paper.book import Fill

MISSING_IN_PAPER = "MISSING_IN_PAPER"
MISSING_IN_BACKTEST = "MISSING_IN_BACKTEST"
TIME = "TIME"
PRICE_OR_QUANTITY = "PRICE_OR_QUANTITY"

LATE_BAR = "LATE_BAR"
GAP = "GAP"
REVISED_BAR = "REVISED_BAR"
CARRIED_OVER = "CARRIED_OVER"

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Difference:
    """A fill that differs, and why."""

    kind: str
    reason: str
    paper: Fill | None
    backtest: Fill | None
    cause_bar: int | None = None          # the bar behind LATE_BAR / GAP / REVISED_BAR
    cause_markets: tuple[str, ...] = ()

    @property
    def sort_key(self) -> tuple[int, int, str, str]:
        f = self.paper if self.paper is not None else self.backtest
        assert f is not None
        other = self.backtest if self.paper is not None else None
        first = min(f.bar, other.bar) if other is not None else f.bar
        return first, f.signal_bar, f.venue, f.symbol


@dataclass(frozen=True)
class BarCauses:
    """Per compared bar, the markets whose bar differs between the run and the store."""

    late: list[tuple[str, ...]]      # missing when the run processed the bar, stored now
    gap: list[tuple[str, ...]]       # seen by the run, missing in the store now
    revised: list[tuple[str, ...]]   # seen by the run with other values
    absent: list[tuple[str, ...]]    # missing in the store (whatever the run saw)

    def late_bars(self) -> int:
        return sum(1 for m in self.late if m)

    def gap_bars(self) -> int:
        """Bars with a market's bar missing in the store."""
        return sum(1 for m in self.absent if m)


def bar_causes(labels: Sequence[str], paper_closes: F64, paper_volumes: F64,
               stored_closes: F64, stored_volumes: F64) -> BarCauses:
    """Compare the bars as the run saw them with the stored ones ([series, bar] arrays)."""
    if paper_closes.shape != stored_closes.shape:
        raise ValueError(f"expected bars of the same shape, got {paper_closes.shape} "
                         f"and {stored_closes.shape}")
    seen = np.isfinite(paper_closes)
    have = np.isfinite(stored_closes)
    late_m = ~seen & have
    gap_m = seen & ~have
    both = seen & have
    changed = both & ((paper_closes != stored_closes) | ~(
        (paper_volumes == stored_volumes) | (np.isnan(paper_volumes) & np.isnan(stored_volumes))))

    def per_bar(mask: npt.NDArray[np.bool_]) -> list[tuple[str, ...]]:
        return [tuple(labels[j] for j in np.flatnonzero(mask[:, k]))
                for k in range(mask.shape[1])]

    return BarCauses(per_bar(late_m), per_bar(gap_m), per_bar(changed), per_bar(~have))


def _same(a: Fill, b: Fill) -> bool:
    return (a.quantity == b.quantity and a.price == b.price and a.fee == b.fee
            and a.slippage == b.slippage)


def _reason(causes: BarCauses, lo: int, hi: int) -> tuple[str, int | None, tuple[str, ...]]:
    """The first bar in [lo, hi] whose data differs, and how (late before gap before
    revised at the same bar)."""
    lo = max(lo, 0)
    hi = min(hi, len(causes.late) - 1)
    for k in range(lo, hi + 1):
        for reason, per in ((LATE_BAR, causes.late), (GAP, causes.gap),
                            (REVISED_BAR, causes.revised)):
            if per[k]:
                return reason, k, per[k]
    return CARRIED_OVER, None, ()


def compare_fills(paper: Sequence[Fill], backtest: Sequence[Fill],
                  causes: BarCauses) -> list[Difference]:
    """Return every fill that differs between ``paper`` and ``backtest``, in time order.

    The reason looks at the bars from the signal's (one bar before it: the bar a signal
    compares with) to the fill's, on either side.
    """
    groups: dict[tuple[int, str, str, int], list[Fill]] = defaultdict(list)
    for f in backtest:
        groups[(f.signal_bar, f.venue, f.symbol, f.side)].append(f)
    used: dict[tuple[int, str, str, int], int] = defaultdict(int)
    out: list[Difference] = []

    def explain(kind: str, p: Fill | None, b: Fill | None) -> Difference:
        fills = [f for f in (p, b) if f is not None]
        lo = min(f.signal_bar for f in fills) - 1
        hi = max(f.bar for f in fills)
        reason, bar, markets = _reason(causes, lo, hi)
        return Difference(kind, reason, p, b, bar, markets)

    for p in paper:
        key = (p.signal_bar, p.venue, p.symbol, p.side)
        k = used[key]
        candidates = groups.get(key, [])
        if k >= len(candidates):
            out.append(explain(MISSING_IN_BACKTEST, p, None))
            continue
        used[key] = k + 1
        b = candidates[k]
        if p.bar != b.bar:
            out.append(explain(TIME, p, b))
        elif not _same(p, b):
            out.append(explain(PRICE_OR_QUANTITY, p, b))
    for key, rows in groups.items():
        for b in rows[used.get(key, 0):]:
            out.append(explain(MISSING_IN_PAPER, None, b))
    out.sort(key=lambda d: d.sort_key)
    return out
