"""The pure comparison behind the divergence report (issue 18): how each differing fill is
paired and which bar difference explains it."""

from __future__ import annotations

import dataclasses

import numpy as np

from usdcarb.backtest.paper.book import Fill
from usdcarb.backtest.paper.divergence import (
    CARRIED_OVER,
    GAP,
    LATE_BAR,
    MISSING_IN_BACKTEST,
    MISSING_IN_PAPER,
    PRICE_OR_QUANTITY,
    REVISED_BAR,
    TIME,
    bar_causes,
    compare_fills,
)

LABELS = ["a:X/Y", "b:X/Y"]


def fill(bar: int, *, venue: str = "a", side: int = 1, price: float = 1.0,
         signal_bar: int | None = None, round_trip: int = 1) -> Fill:
    return Fill(bar=bar, time_ms=bar * 60_000, venue=venue, symbol="X/Y", side=side,
                   quantity=10.0, price=price, fee=0.01, slippage=0.0, round_trip=round_trip,
                   signal_bar=bar - 1 if signal_bar is None else signal_bar,
                   signal_edge_bps=20.0)


def test_bar_differences_are_late_gap_or_revised_per_market() -> None:
    seen = np.ones((2, 6))
    stored = np.ones((2, 6))
    seen[1, 1] = np.nan                 # missing when processed, stored since: late
    stored[0, 3] = np.nan               # seen, missing in the store now: gap
    stored[1, 4] = 1.01                 # seen with another close: revised
    seen[0, 5] = stored[0, 5] = np.nan  # missing on both sides: no cause, only absent
    causes = bar_causes(LABELS, seen, seen.copy(), stored, np.ones((2, 6)))
    assert causes.late == [(), ("b:X/Y",), (), (), (), ()]
    assert causes.gap == [(), (), (), ("a:X/Y",), (), ()]
    assert causes.revised[4] == ("b:X/Y",) and sum(map(bool, causes.revised)) == 1
    assert causes.late_bars() == 1 and causes.gap_bars() == 2


def test_each_difference_is_paired_and_explained() -> None:
    seen = np.ones((2, 40))
    stored = np.ones((2, 40))
    seen[1, 10] = np.nan       # late bar at 10
    stored[0, 20] = np.nan     # gap at 20
    stored[1, 30] = 2.0        # revised at 30
    causes = bar_causes(LABELS, seen, seen.copy(), stored, stored.copy())
    same = [fill(2), fill(3, venue="b", side=-1)]
    paper = [*same,
             fill(13, signal_bar=11),             # the backtest filled the signal at 12
             fill(21),                            # the backtest has none: gap at 20
             fill(31, price=1.5),                 # other price: revised bar 30
             fill(36, round_trip=9)]              # round-trip numbers are not compared
    backtest = [*same, fill(12, signal_bar=11), fill(31, price=1.4), fill(36),
                fill(11)]                         # the paper saw bar 10's market missing
    diffs = compare_fills(paper, backtest, causes)
    got = [(d.kind, d.reason, d.cause_bar, d.cause_markets) for d in diffs]
    assert got == [
        (MISSING_IN_PAPER, LATE_BAR, 10, ("b:X/Y",)),
        (TIME, LATE_BAR, 10, ("b:X/Y",)),
        (MISSING_IN_BACKTEST, GAP, 20, ("a:X/Y",)),
        (PRICE_OR_QUANTITY, REVISED_BAR, 30, ("b:X/Y",)),
    ]
    assert diffs[1].paper == paper[2] and diffs[1].backtest == backtest[2]
    # Without a bar difference in the window, the cause is an earlier difference.
    later = dataclasses.replace(fill(38), quantity=5.0)
    carried = compare_fills([fill(38)], [later], causes)
    assert [(d.kind, d.reason, d.cause_bar) for d in carried] == [
        (PRICE_OR_QUANTITY, CARRIED_OVER, None)]
    assert compare_fills(same, same, causes) == []
