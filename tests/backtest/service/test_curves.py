"""Equity curve reduction and full-resolution pages (pure: curves.py on stored columns)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from usdcarb.backtest.curves import (
    DEFAULT_POINTS,
    MAX_PAGE,
    CurveRequest,
    curve_request,
    equity_to_pb,
    reduce_indices,
)
from usdcarb.backtest.model import EquityColumns
from usdcarb.platform.errors import InvalidArgument
from usdcarb.v1 import common_pb2

pytestmark = pytest.mark.unit

NAME = "backtests/bt-1/equityCurve"


def _curve(n: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    equity = 1e6 + np.cumsum(rng.standard_normal(n) * 50.0)
    equity[n // 3] -= 40_000.0          # a sharp trough inside one bucket
    equity[2 * n // 3] += 30_000.0      # a lone spike
    peak = np.maximum.accumulate(np.maximum(equity, 1e6))
    drawdown = 1.0 - equity / peak
    exposure = rng.random(n)
    time_ms = 1_700_000_000_000 + np.arange(n, dtype=np.int64) * 60_000
    return time_ms, equity, drawdown, exposure


def _stored(n: int) -> EquityColumns:
    t, e, d, x = _curve(n)
    return EquityColumns(points=n, time_ms=t.astype("<i8").tobytes(),
                         equity=e.astype("<f8").tobytes(), drawdown=d.astype("<f8").tobytes(),
                         exposure=x.astype("<f8").tobytes())


@pytest.mark.parametrize("budget", [8, 9, 10, 100, 2_000, 4_999])
def test_reduction_honours_the_budget_and_keeps_every_bucket_extreme(budget: int) -> None:
    n = 100_003
    _, equity, drawdown, _ = _curve(n)
    idx = reduce_indices(equity, drawdown, budget)
    assert len(idx) <= budget
    assert np.all(np.diff(idx) > 0)                     # time order, no repeats
    assert idx[0] == 0 and idx[-1] == n - 1
    kept = set(idx.tolist())
    # the global extremes: peak, trough, deepest drawdown
    assert int(np.argmax(equity)) in kept
    assert int(np.argmin(equity)) in kept
    assert int(np.argmax(drawdown)) in kept
    # and each bucket's own (min/max per bucket, not every n-th point)
    buckets = max(1, (budget - 2) // 3)
    edges = (np.arange(buckets + 1) * n) // buckets
    for lo, hi in itertools.pairwise(edges.tolist()):
        assert lo + int(np.argmin(equity[lo:hi])) in kept
        assert lo + int(np.argmax(equity[lo:hi])) in kept
        assert lo + int(np.argmax(drawdown[lo:hi])) in kept
    # the reduced curve has the same max drawdown and range as the full one
    assert drawdown[idx].max() == drawdown.max()
    assert equity[idx].min() == equity.min() and equity[idx].max() == equity.max()


def test_a_short_curve_comes_whole() -> None:
    _, equity, drawdown, _ = _curve(500)
    assert np.array_equal(reduce_indices(equity, drawdown, 500), np.arange(500))
    msg = equity_to_pb(NAME, _stored(500), common_pb2.COLUMN_LAYOUT_PACKED,
                       curve_request(NAME, 0, 0, ""))
    assert msg.count == msg.total_points == 500 and not msg.reduced


@pytest.mark.parametrize("layout", [common_pb2.COLUMN_LAYOUT_PACKED,
                                    common_pb2.COLUMN_LAYOUT_LE_BYTES])
def test_default_is_reduced_and_pages_concatenate_to_the_stored_curve(layout: int) -> None:
    n = 250_001
    stored = _stored(n)
    reduced = equity_to_pb(NAME, stored, layout, curve_request(NAME, 0, 0, ""))
    assert reduced.reduced and reduced.total_points == n
    assert reduced.count <= DEFAULT_POINTS and not reduced.next_page_token
    assert reduced.ByteSize() < 1_000_000
    pages = []
    token = ""
    while True:
        page = equity_to_pb(NAME, stored, layout, curve_request(NAME, 0, 100_000, token))
        assert page.offset == sum(p.count for p in pages)
        assert page.ByteSize() < 4 * 1024 * 1024   # far below the 16 MiB message limit
        pages.append(page)
        token = page.next_page_token
        if not token:
            break
    assert [p.count for p in pages] == [100_000, 100_000, 50_001]
    if layout == common_pb2.COLUMN_LAYOUT_LE_BYTES:
        for col in ("time_ms", "equity", "drawdown", "exposure"):
            whole = b"".join(getattr(p, f"{col}_le") for p in pages)
            assert whole == getattr(stored, col)     # bit for bit
    else:
        equity = np.concatenate([np.asarray(p.equity, "<f8") for p in pages])
        assert equity.tobytes() == stored.equity
        times = np.concatenate([np.asarray(p.time_ms, "<i8") for p in pages])
        assert times.tobytes() == stored.time_ms


def test_page_size_is_capped_and_a_token_alone_pages_on() -> None:
    first = curve_request(NAME, 0, 10 * MAX_PAGE, "")
    assert first.page == (0, MAX_PAGE)
    stored = _stored(120_000)
    page = equity_to_pb(NAME, stored, common_pb2.COLUMN_LAYOUT_LE_BYTES, first)
    nxt = curve_request(NAME, 0, 0, page.next_page_token)
    assert nxt.page is not None and nxt.page[0] == MAX_PAGE


@pytest.mark.parametrize(("max_points", "page_size", "field"),
                         [(1, 0, "max_points"), (7, 0, "max_points"),
                          (100_001, 0, "max_points"), (-1, 0, "max_points"),
                          (0, -5, "page_size")])
def test_out_of_bounds_knobs_are_invalid_argument(max_points: int, page_size: int,
                                                  field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        curve_request(NAME, max_points, page_size, "")
    assert [v.field for v in err.value.field_violations] == [field]


def test_a_token_of_another_curve_is_refused() -> None:
    page = equity_to_pb(NAME, _stored(120_000), common_pb2.COLUMN_LAYOUT_LE_BYTES,
                        CurveRequest(max_points=DEFAULT_POINTS, page=(0, 1_000)))
    with pytest.raises(InvalidArgument):
        curve_request("backtests/bt-2/equityCurve", 0, 0, page.next_page_token)
