"""Equity curves on the wire: reduced to a point budget, or whole in pages.

Reduction (pure): the bars split into ``(max_points - 2) // 3`` equal buckets and each
keeps the bar of its lowest equity, of its highest equity and of its deepest drawdown
(the first such bar on ties), plus the first and last bar of the curve; kept bars stay
in time order and are never repeated. So every drawdown extreme survives — the global
peak, trough and deepest drawdown are each the extreme of their bucket — and the count
never exceeds the budget. A curve of no more bars than the budget comes whole.

Pages: ``page_size`` consecutive bars from an offset carried in the page token; pages
concatenate to the stored curve bit for bit. Every response stays far below the gRPC
message limit (100,000 bars is about 3.4 MB in either layout).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from usdcarb.backtest.model import EquityColumns
from usdcarb.platform import paging
from usdcarb.platform.errors import InvalidArgument, expected
from usdcarb.v1 import backtest_pb2 as pb
from usdcarb.v1 import common_pb2

DEFAULT_POINTS = 2_000
MIN_POINTS = 8
MAX_POINTS = 100_000
DEFAULT_PAGE = 50_000
MAX_PAGE = 100_000

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class CurveRequest:
    """A validated GetEquityCurve: a reduced curve of ``max_points``, or the page
    ``(offset, size)`` of the full resolution."""

    max_points: int
    page: tuple[int, int] | None


def curve_request(name: str, max_points: int, page_size: int, page_token: str) -> CurveRequest:
    """Validate the request's knobs (INVALID_ARGUMENT naming each bad one)."""
    violations: list[tuple[str, str]] = []
    if max_points != 0 and not MIN_POINTS <= max_points <= MAX_POINTS:
        violations.append(("max_points", expected(
            f"0 (the default {DEFAULT_POINTS:,}) or {MIN_POINTS} to {MAX_POINTS:,}", max_points)))
    if page_size < 0:
        violations.append(("page_size", expected("a non-negative number", page_size)))
    if violations:
        raise InvalidArgument(violations)
    page = None
    if page_size or page_token:
        key = paging.decode_token(page_token, {"name": name})
        offset = int(key[0]) if key else 0
        page = (offset, paging.page_size(page_size, default=DEFAULT_PAGE, maximum=MAX_PAGE))
    return CurveRequest(max_points=max_points or DEFAULT_POINTS, page=page)


def _first_extreme(values: F64, edges: I64, highest: bool) -> I64:
    """Index of each bucket's lowest (or highest) value, the first one on ties."""
    starts = edges[:-1]
    sizes = np.diff(edges)
    best = (np.fmax if highest else np.fmin).reduceat(values, starts)
    hits = np.flatnonzero(values == np.repeat(best, sizes))
    bucket = np.searchsorted(starts, hits, side="right") - 1
    _, first = np.unique(bucket, return_index=True)
    out: I64 = hits[first]
    return out


def reduce_indices(equity: F64, drawdown: F64, max_points: int) -> I64:
    """Return the bars a curve reduced to ``max_points`` keeps, ascending."""
    n = len(equity)
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    buckets = max(1, (max_points - 2) // 3)
    edges = (np.arange(buckets + 1, dtype=np.int64) * n) // buckets
    keep = np.concatenate([
        np.array([0, n - 1], np.int64), _first_extreme(equity, edges, False),
        _first_extreme(equity, edges, True), _first_extreme(drawdown, edges, True)])
    out: I64 = np.unique(keep)
    return out


def _columns(c: EquityColumns) -> dict[str, npt.NDArray[Any]]:
    cols = {"time_ms": np.frombuffer(c.time_ms, "<i8"),
            "equity": np.frombuffer(c.equity, "<f8"),
            "drawdown": np.frombuffer(c.drawdown, "<f8"),
            "exposure": np.frombuffer(c.exposure, "<f8")}
    # the hold baseline (absent from curves stored before it existed)
    if len(c.baseline) == 8 * c.points:
        cols["baseline"] = np.frombuffer(c.baseline, "<f8")
    elif len(c.baseline) == 8:
        cols["baseline"] = np.full(c.points, np.frombuffer(c.baseline, "<f8")[0])
    return cols


def equity_to_pb(name: str, c: EquityColumns, layout: int,
                 request: CurveRequest) -> pb.EquityCurve:
    """Build the EquityCurve message ``request`` asks for from stored columns."""
    cols = _columns(c)
    n = c.points
    offset, token, reduced = 0, "", False
    if request.page is not None:
        offset, size = request.page
        if offset > n:
            raise InvalidArgument.for_field("page_token", f"a page within {n} bars", offset)
        end = min(n, offset + size)
        cols = {k: v[offset:end] for k, v in cols.items()}
        if end < n:
            token = paging.encode_token([end], {"name": name})
    else:
        idx = reduce_indices(cols["equity"], cols["drawdown"], request.max_points)
        if len(idx) < n:
            cols = {k: v[idx] for k, v in cols.items()}
            reduced = True
    out = pb.EquityCurve(name=name, count=len(cols["time_ms"]), total_points=n,
                         reduced=reduced, offset=offset, next_page_token=token)
    if layout == common_pb2.COLUMN_LAYOUT_LE_BYTES:
        out.time_ms_le = cols["time_ms"].astype("<i8").tobytes()
        out.equity_le = cols["equity"].astype("<f8").tobytes()
        out.drawdown_le = cols["drawdown"].astype("<f8").tobytes()
        out.exposure_le = cols["exposure"].astype("<f8").tobytes()
        if "baseline" in cols:
            out.baseline_le = cols["baseline"].astype("<f8").tobytes()
    else:
        out.time_ms.extend(cols["time_ms"].tolist())
        out.equity.extend(cols["equity"].tolist())
        out.drawdown.extend(cols["drawdown"].tolist())
        out.exposure.extend(cols["exposure"].tolist())
        if "baseline" in cols:
            out.baseline.extend(cols["baseline"].tolist())
    return out
