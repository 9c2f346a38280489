"""Pure ingestion rules: paging, resume point, progress, gap counting, per-bar sanity."""

from __future__ import annotations

import numpy as np
import pytest

from usdcarb.ingestion import domain
from usdcarb.ingestion.domain import EXCHANGES, Bars, PageRequest

pytestmark = pytest.mark.unit

M = 60_000


def test_paging_continues_after_a_short_page_and_skips_only_empty_windows() -> None:
    binance, coinbase = EXCHANGES["binance"], EXCHANGES["coinbase"]
    req = PageRequest(since_ms=0, limit=300)
    assert domain.next_since(coinbase, M, req, 120 * M) == 121 * M  # truncated: no skip
    assert domain.next_since(coinbase, M, req, None) == 300 * M  # empty window: next one
    assert domain.next_since(binance, M, req, None) is None  # empty forward page: the end
    assert domain.resume_point(10 * M, None, M) == 10 * M
    assert domain.resume_point(10 * M, 42 * M, M) == 43 * M
    assert domain.align_up(61_001, M) == 120_000 and domain.align_down(61_001, M) == 60_000


def test_progress_counts_bar_slots_covered() -> None:
    p = domain.progress(0, 100 * M, 25 * M, M, stored=20)
    assert (p.done, p.total, p.fraction, p.unit) == (25, 100, 0.25, "bars")


def test_gaps_are_counted_from_the_previous_stored_bar() -> None:
    ts = np.array([3, 4, 8, 9], dtype=np.int64) * M
    assert domain.count_gaps(ts, M, previous_ms=0) == (2, 5)  # 1-2 and 5-7 missing


def test_sanity_rejects_each_malformed_kind_with_its_rule() -> None:
    rows = [[0, 1.0, 1.1, 0.9, 1.0, 5.0],            # ok
            [M, 1.0, 1.1, 0.9, float("nan"), 5.0],  # NaN
            [2 * M, 1.0, 1.1, 0.9, 1.0, -1.0],      # negative volume
            [3 * M, 1.0, 0.5, 0.9, 1.0, 5.0],       # high < low
            [4 * M + 17_000, 1.0, 1.1, 0.9, 1.0, 5.0],  # misaligned
            [10**13 // M * M, 1.0, 1.1, 0.9, 1.0, 5.0],  # future
            [0, 1.0, 1.1, 0.9, 1.0, 5.0]]           # duplicate of the first
    verdict = domain.sanity_check(Bars.from_rows(rows), M, now_ms=10**12)
    assert verdict.accepted.tolist() == [True] + [False] * 6
    assert [r.rules for r in verdict.rejections] == [
        ("bar.not_finite",), ("bar.negative",), ("ohlc.inconsistent",), ("bar.misaligned",),
        ("bar.future",), ("series.duplicate",)]
    assert all(r.reason.startswith("expected ") for r in verdict.rejections)


def test_rows_that_are_not_ohlcv_are_refused() -> None:
    with pytest.raises(ValueError, match="expected"):
        Bars.from_rows([["x", 1, 2, 3, 4, 5]])
    b = Bars.from_rows([[0, 1, None, 1, 1, 1]])
    assert np.isnan(b.high[0])
