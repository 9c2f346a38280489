"""The figures of the HTML reports, from DataFrames: pure functions, no calls.

Each function returns a plotly ``Figure`` (or None when the input has nothing to draw);
``usdcarb_sdk.report`` fetches the inputs and lays the figures out in one page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

__all__ = [
    "MAX_LINE_POINTS",
    "attribution_figure",
    "drawdown_figure",
    "equity_figure",
    "excess_figure",
    "heatmap_figure",
    "inventory_figure",
    "inventory_from_trades",
    "reduce_extremes",
    "robustness_figure",
    "spread_figure",
    "spread_series",
    "walk_forward_figure",
]

_LAYOUT: dict[str, Any] = {"template": "plotly_white", "height": 380,
                           "margin": {"l": 60, "r": 20, "t": 50, "b": 40},
                           "legend": {"orientation": "h", "y": -0.15}}


def _figure(title: str, **layout: Any) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, **{**_LAYOUT, **layout})
    return fig


def equity_figure(equity: pd.DataFrame, baseline: pd.Series | None, quote: str) -> go.Figure:
    """Equity over time, with the hold baseline (same balances, never traded) beside it."""
    fig = _figure(f"Equity vs hold baseline ({quote})", yaxis_title=quote)
    fig.add_trace(go.Scatter(x=equity.index, y=equity["equity"], name="strategy",
                             mode="lines", line={"width": 1.5}))
    if baseline is not None and len(baseline):
        fig.add_trace(go.Scatter(x=baseline.index, y=baseline.to_numpy(), name="hold baseline",
                                 mode="lines", line={"width": 1.2, "dash": "dot"}))
    return fig


def excess_figure(equity: pd.DataFrame, quote: str) -> go.Figure:
    """What trading added over holding: equity minus the hold baseline, over time."""
    fig = _figure(f"Excess over the hold baseline ({quote})", yaxis_title=quote)
    excess = equity["equity"].to_numpy() - equity["baseline"].to_numpy()
    fig.add_trace(go.Scatter(x=equity.index, y=excess, name="equity - hold baseline",
                             mode="lines", fill="tozeroy", line={"width": 1.2}))
    return fig


def drawdown_figure(equity: pd.DataFrame) -> go.Figure:
    """Drawdown from the running equity peak, as a negative percentage."""
    fig = _figure("Drawdown", yaxis_title="%")
    fig.add_trace(go.Scatter(x=equity.index, y=-100.0 * equity["drawdown"].to_numpy(),
                             name="drawdown", mode="lines", fill="tozeroy",
                             line={"width": 1, "color": "#c0392b"}))
    return fig


def _loop_edge(closes: Mapping[str, pd.Series], symbols: Sequence[str]) -> pd.Series | None:
    """Return the loop's mispricing in bps: p(A/Y) / (p(A/X) · p(X/Y)) - 1 for a loop
    A/X, A/Y, X/Y (or with Y/X: p(A/Y) · p(Y/X) / p(A/X) - 1)."""
    pairs = [tuple(s.split("/")) for s in symbols]
    for i, (a1, x) in enumerate(pairs):
        for j, (a2, y) in enumerate(pairs):
            if i == j or a1 != a2 or x == y:
                continue
            rest = [p for k, p in enumerate(pairs) if k not in (i, j)]
            if len(rest) != 1:
                return None
            s_ax, s_ay, s3 = symbols[i], symbols[j], symbols[3 - i - j]
            if rest[0] == (x, y):
                ratio = closes[s_ay] / (closes[s_ax] * closes[s3])
            elif rest[0] == (y, x):
                ratio = closes[s_ay] * closes[s3] / closes[s_ax]
            else:
                continue
            return (ratio - 1.0) * 1e4
    return None


def spread_series(kind: str, parameters: Mapping[str, Any],
                  candles: Mapping[tuple[str, str], pd.DataFrame]) -> tuple[str, pd.Series] | None:
    """Return (label, bps series) of what the strategy trades on, from the legs' closes:
    B vs A for a cross-exchange spread, the price vs its peg for peg reversion, the loop's
    mispricing for a triangle. None when a leg's candles are missing."""
    def close(venue: str, symbol: str) -> pd.Series | None:
        frame = candles.get((venue, symbol))
        return None if frame is None or frame.empty else frame["close"]

    if kind == "cross_exchange_spread":
        a = close(parameters["venue_a"], parameters["symbol"])
        b = close(parameters["venue_b"], parameters["symbol"])
        if a is None or b is None:
            return None
        a, b = a.align(b, join="inner")
        label = (f"{parameters['symbol']} spread {parameters['venue_b']} vs "
                 f"{parameters['venue_a']} (bps)")
        return label, (b - a) / a * 1e4
    if kind == "peg_reversion":
        p = close(parameters["venue"], parameters["symbol"])
        if p is None:
            return None
        peg = float(parameters.get("peg") or 1.0)
        return f"{parameters['symbol']} on {parameters['venue']} vs peg {peg:g} (bps)", (
            p / peg - 1.0) * 1e4
    if kind == "triangular":
        symbols = list(parameters["symbols"])
        series = {s: close(parameters["venue"], s) for s in symbols}
        if len(symbols) != 3 or any(v is None for v in series.values()):
            return None
        frame = pd.concat(series, axis=1, join="inner")
        edge = _loop_edge({s: frame[s] for s in symbols}, symbols)
        if edge is None:
            return None
        return f"loop {' → '.join(symbols)} mispricing on {parameters['venue']} (bps)", edge
    return None


MAX_LINE_POINTS = 20_000


def reduce_extremes(series: pd.Series, max_points: int = MAX_LINE_POINTS) -> pd.Series:
    """Return ``series`` with at most about ``max_points`` points: in equal buckets of
    bars, each bucket's lowest and highest value in time order (every spike survives)."""
    n = len(series)
    if n <= max_points:
        return series
    values = series.to_numpy(dtype=np.float64)
    buckets = max(1, max_points // 2)
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)
    keep: list[int] = []
    for lo, hi in pairwise(edges.tolist()):
        if hi <= lo:
            continue
        chunk = values[lo:hi]
        if np.all(np.isnan(chunk)):
            continue
        a, b = lo + int(np.nanargmin(chunk)), lo + int(np.nanargmax(chunk))
        keep += sorted({a, b})
    return series.iloc[keep]


def spread_figure(label: str, spread: pd.Series, trades: pd.DataFrame,
                  thresholds: Sequence[tuple[str, float]] = ()) -> go.Figure:
    """The spread over time with each round trip's entry and exit marked (a long series
    drawn by its per-bucket extremes, see ``reduce_extremes``)."""
    fig = _figure(label, yaxis_title="bps")
    line = reduce_extremes(spread)
    fig.add_trace(go.Scattergl(x=line.index, y=line.to_numpy(), name="spread",
                               mode="lines", line={"width": 1}))
    for name, level in thresholds:
        fig.add_hline(y=level, line={"dash": "dash", "width": 1, "color": "#888"},
                      annotation_text=name)
    if not trades.empty and "round_trip" in trades:
        times = trades.reset_index().groupby("round_trip")["time"]
        for name, when, symbol, color in (("entry", times.min(), "triangle-up", "#27ae60"),
                                          ("exit", times.max(), "triangle-down", "#c0392b")):
            at = spread.reindex(pd.DatetimeIndex(when.to_numpy()), method="nearest")
            fig.add_trace(go.Scatter(x=at.index, y=at.to_numpy(), name=name, mode="markers",
                                     marker={"symbol": symbol, "size": 9, "color": color}))
    return fig


def inventory_from_trades(trades: pd.DataFrame, balances: Mapping[str, Mapping[str, float]],
                          start: Any = None, end: Any = None) -> pd.DataFrame:
    """Return each venue's balance of each asset after every fill (columns "venue:asset").

    Starts from ``balances`` (venue → asset → amount); a buy adds the base and pays
    quantity · price + fee in the symbol's quote, a sell the reverse. Transfers between
    venues are not fills, so they are not in this picture. With ``start`` and ``end``
    (times) the frame also has the starting balances at ``start`` and the final ones at
    ``end``, so a step chart spans the whole run.
    """
    holdings = {(v, a): float(x) for v, assets in balances.items() for a, x in assets.items()}
    if trades.empty:
        return pd.DataFrame({f"{v}:{a}": [x] for (v, a), x in holdings.items()})
    rows: list[dict[str, float]] = []
    for venue, symbol, side, qty, price, fee in zip(
            trades["venue"], trades["symbol"], trades["side"].astype(str), trades["quantity"],
            trades["price"], trades["fee"], strict=True):
        base, quote = symbol.split("/")
        sign = 1.0 if side == "BUY" else -1.0
        holdings[(venue, base)] = holdings.get((venue, base), 0.0) + sign * qty
        holdings[(venue, quote)] = (holdings.get((venue, quote), 0.0) - sign * qty * price
                                    - fee)
        rows.append({f"{v}:{a}": x for (v, a), x in holdings.items()})
    frame = pd.DataFrame(rows, index=trades.index).ffill().fillna(0.0)
    # The legs of one order fill on one bar: draw the balance once the bar's fills are in.
    frame = frame.groupby(level=0).last()
    if start is not None and end is not None:
        first = pd.DataFrame([{f"{v}:{a}": float(x) for v, assets in balances.items()
                               for a, x in assets.items()}],
                             index=pd.DatetimeIndex([pd.Timestamp(start)], name=frame.index.name))
        last = frame.iloc[[-1]].set_axis(pd.DatetimeIndex([pd.Timestamp(end)],
                                                          name=frame.index.name))
        frame = pd.concat([first, frame, last]).fillna(0.0)
    return frame


def inventory_figure(inventory: pd.DataFrame, start: Any) -> go.Figure:
    """Per-venue balances over time: one subplot row per asset would crowd; one trace per
    venue:asset on a log-free axis, each normalised to its starting amount when nonzero."""
    fig = _figure("Inventory per venue (share of the starting balance)", yaxis_title="x start")
    for column in inventory.columns:
        values = inventory[column].to_numpy(dtype=np.float64)
        first = values[0] if len(values) else 0.0
        scale = first if first else (np.max(np.abs(values)) or 1.0)
        index = inventory.index if isinstance(inventory.index, pd.DatetimeIndex) else [start]
        fig.add_trace(go.Scatter(x=index, y=values / scale, name=column, mode="lines",
                                 line={"shape": "hv", "width": 1.2},
                                 customdata=values, hovertemplate="%{customdata:,.6g}"))
    return fig


def attribution_figure(parts: Sequence[tuple[str, float]], total: float,
                       quote: str) -> go.Figure:
    """A waterfall of PnL components ending at the total."""
    fig = _figure(f"PnL attribution ({quote})", yaxis_title=quote)
    fig.add_trace(go.Waterfall(
        x=[name for name, _ in parts] + ["total"],
        y=[value for _, value in parts] + [total],
        measure=["relative"] * len(parts) + ["total"],
        text=[f"{v:,.2f}" for _, v in parts] + [f"{total:,.2f}"], textposition="outside"))
    return fig


def robustness_figure(rows: pd.DataFrame, metric: str) -> go.Figure:
    """One bar per robustness re-run (scenario) of ``metric``, the base run first."""
    fig = _figure(f"Robustness: {metric} per scenario", yaxis_title=metric)
    fig.add_trace(go.Bar(x=rows["scenario"], y=rows[metric], name=metric,
                         text=[f"{v:.4g}" for v in rows[metric]], textposition="outside"))
    return fig


def heatmap_figure(points: pd.DataFrame, x: str, y: str, objective: str) -> go.Figure:
    """The objective over two axes (the best value where other axes vary)."""
    grid = points.pivot_table(index=y, columns=x, values=objective, aggfunc="max")
    fig = _figure(f"{objective} over {x} x {y}", height=460, xaxis_title=x, yaxis_title=y)
    fig.add_trace(go.Heatmap(z=grid.to_numpy().tolist(), x=[f"{v:g}" for v in grid.columns],
                             y=[f"{v:g}" for v in grid.index], colorscale="Viridis",
                             colorbar={"title": objective}, hoverongaps=False))
    return fig


def walk_forward_figure(folds: pd.DataFrame, objective: str) -> go.Figure:
    """In-sample vs out-of-sample objective per walk-forward fold."""
    fig = _figure(f"Walk-forward: {objective} in sample vs out of sample",
                  xaxis_title="fold", yaxis_title=objective, barmode="group")
    for column, name in (("in_sample", "in sample"), ("out_of_sample", "out of sample")):
        fig.add_trace(go.Bar(x=folds["fold"], y=folds[column], name=name))
    return fig
