"""Self-contained HTML reports of backtests and sweeps (plotly, its JavaScript inline).

    from usdcarb_sdk import Client
    from usdcarb_sdk.report import report

    with Client("https://localhost:8080", token=token) as client:
        report(client, "backtests/abc", "report.html")      # or "sweeps/xyz"

A backtest report has the headline figures (absolute and over the hold baseline), the
equity against the hold baseline, the drawdown, the traded spread with each round trip's
entry and exit, per-venue inventory, the PnL attribution waterfall, the robustness
panel, the trade table, the fingerprint and the configuration. A sweep report has the
objective's heatmap over two axes, the deflated Sharpe ratio of the best point, the
in-sample vs out-of-sample decay of walk-forward or k-fold runs, and every point.

``fetch_backtest`` / ``fetch_sweep`` gather the data (one client, a few calls);
``to_html`` renders it with no further calls, so a report can be built offline from
saved data too.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import betterproto2
import pandas as pd
import plotly.io as pio
from plotly.offline import get_plotlyjs

from usdcarb_sdk import report_charts as charts
from usdcarb_sdk._gen.usdcarb import v1
from usdcarb_sdk.frames import candles_to_frame, equity_to_frame, trades_to_frame
from usdcarb_sdk.results import (
    attribution_parts,
    cv_folds_frame,
    folds_frame,
    metrics_frame,
    robustness_frame,
    sweep_points_frame,
)
from usdcarb_sdk.sync import Client

__all__ = ["BacktestData", "SweepData", "fetch_backtest", "fetch_sweep", "report", "to_html"]

MAX_TRADE_ROWS = 2000  # rows of the trade table in the page (the CSV has them all)


@dataclass
class BacktestData:
    """Everything a backtest report shows."""

    backtest: v1.Backtest
    version: v1.StrategyVersion | None
    equity: pd.DataFrame
    trades: pd.DataFrame
    candles: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict)

    def to_html(self) -> str:
        """Render the report as one self-contained HTML page."""
        return backtest_html(self)


@dataclass
class SweepData:
    """Everything a sweep report shows."""

    sweep: v1.Sweep
    version: v1.StrategyVersion | None = None

    def to_html(self, *, x: str | None = None, y: str | None = None) -> str:
        """Render the report as one self-contained HTML page (heatmap over ``x`` x ``y``,
        default the first two axes)."""
        return sweep_html(self, x=x, y=y)


def _kind(version: v1.StrategyVersion | None) -> tuple[str, dict[str, Any]]:
    if version is None or version.parameters is None:
        return "", {}
    name, params = betterproto2.which_one_of(version.parameters, "kind")
    if params is None:
        return "", {}
    return name, params.to_dict(casing=betterproto2.Casing.SNAKE, include_default_values=True)


def _legs(kind: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    if kind == "cross_exchange_spread":
        return [(params["venue_a"], params["symbol"]), (params["venue_b"], params["symbol"])]
    if kind == "peg_reversion":
        return [(params["venue"], params["symbol"])]
    if kind == "triangular":
        return [(params["venue"], s) for s in params["symbols"]]
    return []


def fetch_backtest(client: Client, name: str, *, max_points: int = 4000) -> BacktestData:
    """Gather a succeeded backtest's job, version, reduced equity curve, every trade and
    the candles of its legs over its range (ValueError for a backtest not succeeded)."""
    backtest: v1.Backtest = client.backtests.get_backtest(name=name)
    if backtest.state != v1.JobState.SUCCEEDED:
        raise ValueError(f"expected a succeeded backtest, got {name} {backtest.state.name}")
    version = client.strategies.get_strategy_version(name=backtest.strategy_version)
    equity = equity_to_frame(client.backtests.get_equity_curve(
        name=f"{name}/equityCurve", max_points=max_points, layout=v1.ColumnLayout.LE_BYTES))
    trades = trades_to_frame(list(client.backtests.iterate(
        "list_backtest_trades", parent=name, page_size=10_000)))
    candles: dict[tuple[str, str], pd.DataFrame] = {}
    config = backtest.config
    if config is not None and config.range is not None:
        for venue, symbol in _legs(*_kind(version)):
            batch = client.ingestion.get_candles(
                series=v1.SeriesKey(exchange=venue, symbol=symbol,
                                    timeframe=config.timeframe or "1m"),
                range=config.range, layout=v1.ColumnLayout.LE_BYTES)
            candles[(venue, symbol)] = candles_to_frame(batch)
    return BacktestData(backtest, version, equity, trades, candles)


def fetch_sweep(client: Client, name: str) -> SweepData:
    """Gather a sweep and the version it varies."""
    sweep: v1.Sweep = client.backtests.get_sweep(name=name)
    version = client.strategies.get_strategy_version(name=sweep.strategy_version)
    return SweepData(sweep, version)


# ---------------------------------------------------------------- page pieces

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:1200px;color:#222;padding:0 16px}
h1{font-size:1.5em;margin-bottom:4px}h2{font-size:1.15em;margin-top:32px;
border-bottom:1px solid #ddd;padding-bottom:4px}.muted{color:#666}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
pre{background:#f7f7f7;padding:8px;overflow-x:auto;font-size:12px}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #ddd;border-radius:6px;
padding:8px 12px;min-width:150px}.card b{display:block;font-size:1.2em}
.scroll{max-height:480px;overflow-y:auto}
"""


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.6g}"
    if isinstance(value, pd.Timedelta):
        return str(value)
    return str(value)


def _table(frame: pd.DataFrame, *, index: bool = True) -> str:
    head = ([_esc(frame.index.name or "")] if index else []) + [_esc(c) for c in frame.columns]
    rows = []
    for key, row in frame.iterrows():
        cells = ([f"<td>{_esc(key)}</td>"] if index else []) + [
            f"<td>{_esc(_fmt(v))}</td>" for v in row.tolist()]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return ("<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) +
            "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _chart(fig: Any, div_id: str) -> str:
    return str(pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=div_id,
                           config={"displaylogo": False, "responsive": True}))


def _page(title: str, body: list[str]) -> str:
    # One file: plotly.js inline, no network (the report opens offline and in a sandbox).
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_esc(title)}</title><style>{_CSS}</style>"
            f"<script type=\"text/javascript\">{get_plotlyjs()}</script></head><body>"
            + "\n".join(body) + "</body></html>")


def _json(message: betterproto2.Message) -> str:
    return json.dumps(message.to_dict(), indent=2, sort_keys=True)


def _cards(items: list[tuple[str, str]]) -> str:
    return "<div class=\"cards\">" + "".join(
        f"<div class=\"card\"><span class=\"muted\">{_esc(k)}</span><b>{_esc(v)}</b></div>"
        for k, v in items) + "</div>"


def _pct(x: float) -> str:
    return f"{x:+.3%}"


def _headline(result: v1.BacktestResult, quote: str) -> str:
    m = result.metrics or v1.BacktestMetrics()
    base = result.baseline_metrics
    cards = [("total return (absolute)", _pct(m.total_return)),
             ("total PnL (absolute)", f"{m.total_pnl:,.2f} {quote}"),
             ("Sharpe (absolute)", f"{m.sharpe:.3f}"),
             ("max drawdown (absolute)", f"{m.max_drawdown:.3%}")]
    if base is not None:
        cards.append(("hold baseline return", _pct(base.total_return)))
    if base is not None or m.attribution is not None:  # engine 2.x: excess in every run
        cards += [("excess return over hold", _pct(m.excess_return)),
                  ("excess PnL over hold", f"{m.excess_pnl:,.2f} {quote}"),
                  ("excess Sharpe", f"{m.excess_sharpe:.3f}"),
                  ("excess max drawdown", f"{m.excess_max_drawdown:.3%}")]
    cards += [("fills / round trips", f"{result.trade_count} / {m.round_trips}"),
              ("legged trades", str(m.legged_trades)),
              ("fill ratio", f"{m.fill_ratio:.1%}" if m.fill_ratio else "n/a"),
              ("fees / slippage", f"{m.fees_paid:,.2f} / {m.slippage_paid:,.2f}")]
    return _cards(cards)


def _balances(config: v1.BacktestConfig) -> dict[str, dict[str, float]]:
    return {v.venue: {b.asset: b.amount for b in v.initial_balances} for v in config.venues}


def _thresholds(kind: str, params: dict[str, Any]) -> list[tuple[str, float]]:
    if kind in ("cross_exchange_spread", "peg_reversion"):
        e, x = float(params.get("entry_bps", 0)), float(params.get("exit_bps", 0))
        return [("entry", e), ("entry", -e), ("exit", x), ("exit", -x)]
    if kind == "triangular":
        return [("min edge", float(params.get("min_edge_bps", 0)))]
    return []


def backtest_html(data: BacktestData) -> str:
    """Render a backtest report as one self-contained HTML page."""
    bt = data.backtest
    result = bt.result or v1.BacktestResult()
    config = bt.config or v1.BacktestConfig()
    quote = config.quote_asset or "quote"
    kind, params = _kind(data.version)
    body = [f"<h1>Backtest {_esc(bt.name)}</h1>",
            f"<p class=\"muted\">{_esc(bt.strategy_version)} · {_esc(kind or 'unknown kind')}"
            f" · {_esc(bt.state.name if bt.state else '')} · "
            f"{_esc(result.execution_model or 'execution model not reported')}"
            f"{' · OPTIMISTIC same-bar fills' if result.optimistic_fills else ''}</p>",
            _headline(result, quote)]
    equity = data.equity
    if not equity.empty:
        baseline = equity["baseline"] if "baseline" in equity else None
        body += ["<h2>Equity and drawdown</h2>",
                 "" if baseline is not None else
                 "<p class=\"muted\">The server sent no hold-baseline curve for this run.</p>",
                 _chart(charts.equity_figure(equity, baseline, quote), "chart-equity")]
        if baseline is not None:
            body.append(_chart(charts.excess_figure(equity, quote), "chart-excess"))
        body.append(_chart(charts.drawdown_figure(equity), "chart-drawdown"))
    spread = charts.spread_series(kind, params, data.candles)
    if spread is not None:
        label, series = spread
        body += ["<h2>What it traded on</h2>",
                 _chart(charts.spread_figure(label, series, data.trades,
                                             _thresholds(kind, params)), "chart-spread")]
    start = config.range.start_time if config.range else None
    end = config.range.end_time if config.range else None
    inventory = charts.inventory_from_trades(data.trades, _balances(config), start, end)
    if not inventory.empty:
        body += ["<h2>Inventory per venue</h2>",
                 "<p class=\"muted\">Balances after each fill, from the fills and the starting "
                 "balances (transfers between venues are not fills and are not drawn).</p>",
                 _chart(charts.inventory_figure(inventory, start), "chart-inventory")]
    parts = attribution_parts(result.metrics)
    body.append("<h2>PnL attribution</h2>")
    if parts is not None and result.metrics is not None:
        total = float(result.metrics.attribution.total_pnl)  # type: ignore[union-attr]
        body.append(_chart(charts.attribution_figure(parts, total, quote), "chart-attribution"))
    else:
        body.append("<p class=\"muted\">This result carries no PnL attribution.</p>")
    metrics = metrics_frame(result)
    metrics.index.name = "metric"
    body += ["<h2>Figures: strategy (absolute) and hold baseline</h2>",
             "<div class=\"scroll\">" + _table(metrics) + "</div>"]
    robust = robustness_frame(result)
    body.append("<h2>Robustness panel</h2>")
    if robust.empty:
        body.append("<p class=\"muted\">Not requested for this run (config.robustness).</p>")
    else:
        body.append(_chart(charts.robustness_figure(robust, "total_return"), "chart-robustness"))
        cols = ["scenario", "extra_latency_bars", "cost_multiplier", "total_return",
                "total_pnl", "sharpe", "max_drawdown", "excess_return"]
        body.append(_table(robust[[c for c in cols if c in robust]], index=False))
    trades = data.trades
    body.append(f"<h2>Trades ({len(trades)} fills)</h2>")
    if not trades.empty:
        shown = trades.head(MAX_TRADE_ROWS).copy()
        shown.index = shown.index.strftime("%Y-%m-%d %H:%M")
        note = (f"<p class=\"muted\">First {MAX_TRADE_ROWS} of {len(trades)} fills.</p>"
                if len(trades) > MAX_TRADE_ROWS else "")
        body.append(note + "<div class=\"scroll\" id=\"trades\">" + _table(shown) + "</div>")
    fp = result.fingerprint
    body += ["<h2>Fingerprint</h2>",
             f"<pre id=\"fingerprint\">{_esc(_json(fp)) if fp else 'none'}</pre>",
             "<h2>Configuration</h2>", f"<pre id=\"config\">{_esc(_json(config))}</pre>",
             "<h2>Strategy parameters</h2>",
             f"<pre>{_esc(json.dumps(params, indent=2, sort_keys=True))}</pre>",
             f"<p class=\"muted\">Generated {datetime.now().astimezone():%Y-%m-%d %H:%M %Z} "
             "by usdcarb_sdk.report.</p>"]
    return _page(f"usdcarb {bt.name}", body)


def _axes(sweep: v1.Sweep) -> list[str]:
    return [a.path for a in sweep.axes]


def sweep_html(data: SweepData, *, x: str | None = None, y: str | None = None) -> str:
    """Render a sweep report; the heatmap's axes default to the sweep's first two."""
    sweep = data.sweep
    objective = sweep.objective or "sharpe"
    axes = _axes(sweep)
    kind, _ = _kind(data.version)
    body = [f"<h1>Sweep {_esc(sweep.name)}</h1>",
            f"<p class=\"muted\">{_esc(sweep.strategy_version)} · {_esc(kind)} · objective "
            f"{_esc(objective)} · {_esc(sweep.state.name if sweep.state else '')} · "
            f"{len(sweep.points)} points over {', '.join(axes)}</p>"]
    ds = sweep.deflated_sharpe
    if ds is not None and ds.trials:
        body += ["<h2>Deflated Sharpe ratio of the best point</h2>", _cards([
            ("deflated Sharpe (probability)", f"{ds.deflated_sharpe:.3f}"),
            ("best Sharpe (per bar)", f"{ds.sharpe:.4g}"),
            ("annualised", f"{ds.annualized_sharpe:.3f}"),
            ("trials", str(ds.trials)),
            ("expected max Sharpe under the null", f"{ds.expected_max_sharpe:.4g}"),
            ("skewness / kurtosis", f"{ds.skewness:.3f} / {ds.kurtosis:.3f}"),
            ("observations", str(ds.observations))])]
    points = sweep_points_frame(sweep)
    if not points.empty:
        x = x or axes[0]
        y = y or (axes[1] if len(axes) > 1 else None)
        body.append("<h2>Objective over the grid</h2>")
        if y is not None and x in points and y in points and objective in points:
            body.append(_chart(charts.heatmap_figure(points, x, y, objective), "chart-heatmap"))
        elif x in points and objective in points:
            fig = charts.heatmap_figure(points.assign(_=0.0), x, "_", objective)
            body.append(_chart(fig, "chart-heatmap"))
        shown = points[[c for c in [*axes, objective, "total_return", "total_pnl",
                                    "max_drawdown", "round_trips", "excess_return"]
                        if c in points]]
        body += ["<h2>Points, best first</h2>",
                 "<div class=\"scroll\">" + _table(shown, index=False) + "</div>"]
    folds = folds_frame(sweep, objective) if sweep.folds else cv_folds_frame(sweep, objective)
    if not folds.empty:
        oos = sweep.out_of_sample
        body.append("<h2>In sample vs out of sample</h2>")
        if oos is not None and oos.folds:
            body.append(_cards([("mean in sample", f"{oos.mean_in_sample:.4g}"),
                                ("mean out of sample", f"{oos.mean_out_of_sample:.4g}"),
                                ("decay", f"{oos.decay:.3f}"),
                                ("folds decayed", f"{oos.folds_decayed} / {oos.folds}")]))
        body.append(_chart(charts.walk_forward_figure(folds, objective), "chart-folds"))
    body += ["<h2>Configuration</h2>",
             f"<pre id=\"config\">{_esc(_json(sweep.config)) if sweep.config else ''}</pre>",
             f"<p class=\"muted\">Generated {datetime.now().astimezone():%Y-%m-%d %H:%M %Z} "
             "by usdcarb_sdk.report.</p>"]
    return _page(f"usdcarb {sweep.name}", body)


def to_html(data: BacktestData | SweepData, **options: Any) -> str:
    """Render fetched backtest or sweep data as one self-contained HTML page."""
    if isinstance(data, BacktestData):
        return backtest_html(data)
    if isinstance(data, SweepData):
        return sweep_html(data, **options)
    raise TypeError(f"expected BacktestData or SweepData, got {type(data).__name__}")


def report(client: Client, name: str, path: str | Path, **options: Any) -> Path:
    """Write the report of ``name`` ("backtests/…" or "sweeps/…") to ``path``."""
    if name.startswith("sweeps/"):
        page = sweep_html(fetch_sweep(client, name), **options)
    elif name.startswith("backtests/"):
        page = backtest_html(fetch_backtest(client, name))
    else:
        raise ValueError(f"expected backtests/ID or sweeps/ID, got {name!r}")
    out = Path(path)
    out.write_text(page, encoding="utf-8")
    return out
