"""The HTML report of a paper deployment: its run beside the backtest of the same bars.

    from usdcarb_sdk import Client
    from usdcarb_sdk.deployment_report import deployment_report

    with Client("https://localhost:8080", token=token) as client:
        deployment_report(client, "strategies/s/deployments/d", "deployment.html")

The page has the run's headline (state, bars, equity, fills, late bars), the paper and
backtest equity over the same bars and their difference, the divergence summary (PnL
side by side, fill counts, late and missing bars, the bound), the table of fills that
differ with the reason, and the paper fills. ``fetch_deployment`` gathers the data
(GetPaperRun, GetPaperDivergence over every page, ListPaperFills); ``deployment_html``
renders it with no further calls. One self-contained file, plotly inline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from usdcarb_sdk import report_charts as charts
from usdcarb_sdk._gen.usdcarb import v1
from usdcarb_sdk.frames import trades_to_frame
from usdcarb_sdk.report import MAX_TRADE_ROWS, _cards, _chart, _esc, _json, _page, _table
from usdcarb_sdk.sync import Client

__all__ = ["DeploymentData", "deployment_html", "deployment_report", "differences_frame",
           "divergence_of", "fetch_deployment"]


@dataclass
class DeploymentData:
    """Everything a deployment report shows."""

    run: v1.PaperRun
    divergence: v1.PaperDivergence   # every page's differences in one message
    fills: pd.DataFrame

    def to_html(self) -> str:
        """Render the report as one self-contained HTML page."""
        return deployment_html(self)


def _deployment(name: str) -> str:
    """Return "strategies/{s}/deployments/{d}" from it or its paperRun/paperDivergence."""
    parts = name.split("/")
    if len(parts) < 4 or parts[0] != "strategies" or parts[2] != "deployments":
        raise ValueError(f"expected strategies/{{s}}/deployments/{{d}}, got {name!r}")
    return "/".join(parts[:4])


def divergence_of(client: Client, deployment: str) -> v1.PaperDivergence:
    """GetPaperDivergence of a deployment with the differences of every page."""
    name = _deployment(deployment) + "/paperDivergence"
    first: v1.PaperDivergence = client.backtests.get_paper_divergence(name=name,
                                                                      page_size=10_000)
    page = first
    while page.next_page_token:
        page = client.backtests.get_paper_divergence(name=name, page_size=10_000,
                                                     page_token=page.next_page_token)
        first.differences.extend(page.differences)
    first.next_page_token = ""
    return first


def fetch_deployment(client: Client, deployment: str) -> DeploymentData:
    """Gather a paper deployment's run, its divergence report and its fills."""
    dep = _deployment(deployment)
    run: v1.PaperRun = client.backtests.get_paper_run(name=f"{dep}/paperRun")
    divergence = divergence_of(client, dep)
    fills = trades_to_frame(list(client.backtests.iterate(
        "list_paper_fills", parent=f"{dep}/paperRun", page_size=10_000)))
    return DeploymentData(run, divergence, fills)


def _ms(ts: object) -> str:
    return pd.Timestamp(ts).strftime("%Y-%m-%d %H:%M") if ts is not None else ""


def differences_frame(divergence: v1.PaperDivergence) -> pd.DataFrame:
    """One row per differing fill: kind, reason, cause, and each side's fill."""
    rows = []
    for d in divergence.differences:
        p, b = d.paper, d.backtest
        f = p or b
        rows.append({
            "kind": d.kind.name.lower().replace("_", " "),
            "reason": d.reason.name.lower().replace("_", " "),
            "cause bar": _ms(d.cause_time) if d.cause_time else "",
            "cause markets": ", ".join(d.cause_markets),
            "market": f"{f.venue}:{f.symbol}" if f else "",
            "side": f.side.name.lower() if f else "",
            "paper time": _ms(p.time) if p else "—",
            "paper qty": p.quantity if p else "—",
            "paper price": p.price if p else "—",
            "backtest time": _ms(b.time) if b else "—",
            "backtest qty": b.quantity if b else "—",
            "backtest price": b.price if b else "—",
        })
    return pd.DataFrame(rows)


def equity_frame(divergence: v1.PaperDivergence) -> pd.DataFrame:
    """Paper and backtest equity per compared bar, indexed by bar time (UTC)."""
    return pd.DataFrame(
        {"paper": list(divergence.paper_equity_curve),
         "backtest": list(divergence.backtest_equity_curve)},
        index=pd.DatetimeIndex(pd.to_datetime(list(divergence.time_ms), unit="ms", utc=True),
                               name="time"))


def _equity_figure(equity: pd.DataFrame, quote: str) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=f"Equity: paper vs backtest of the same bars ({quote})",
                      yaxis_title=quote, template="plotly_white", height=380,
                      margin={"l": 60, "r": 20, "t": 50, "b": 40},
                      legend={"orientation": "h", "y": -0.15})
    paper = charts.reduce_extremes(equity["paper"])
    back = charts.reduce_extremes(equity["backtest"])
    fig.add_trace(go.Scatter(x=paper.index, y=paper.to_numpy(), name="paper", mode="lines",
                             line={"width": 1.5}))
    fig.add_trace(go.Scatter(x=back.index, y=back.to_numpy(), name="backtest", mode="lines",
                             line={"width": 1.2, "dash": "dot"}))
    return fig


def _difference_figure(equity: pd.DataFrame, quote: str) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=f"Paper minus backtest equity ({quote})", yaxis_title=quote,
                      template="plotly_white", height=300,
                      margin={"l": 60, "r": 20, "t": 50, "b": 40})
    diff = charts.reduce_extremes(equity["paper"] - equity["backtest"])
    fig.add_trace(go.Scatter(x=diff.index, y=diff.to_numpy(), name="paper - backtest",
                             mode="lines", fill="tozeroy", line={"width": 1.2}))
    return fig


def deployment_html(data: DeploymentData) -> str:
    """Render a deployment's report as one self-contained HTML page."""
    run, dv = data.run, data.divergence
    q = dv.quote_asset
    dep = _deployment(run.name)
    body = [f"<h1>{_esc(dep)}</h1>",
            f"<p class=\"muted\">{_esc(run.strategy_version)} · paper run "
            f"{_esc(run.state.name.lower())} · {run.bars:,} bars"
            + (f" · last bar {_esc(_ms(run.last_bar_time))}" if run.last_bar_time else "")
            + "</p>",
            _cards([("paper equity", f"{dv.paper_equity:,.2f} {q}"),
                    ("backtest equity", f"{dv.backtest_equity:,.2f} {q}"),
                    ("PnL paper / backtest", f"{dv.paper_pnl:,.2f} / {dv.backtest_pnl:,.2f}"),
                    ("PnL difference", f"{dv.pnl_difference:+,.2f} {q}"),
                    ("fills paper / backtest", f"{dv.paper_fills} / {dv.backtest_fills}"),
                    ("fills that differ", f"{dv.differing_fills}"),
                    ("late bars", f"{dv.late_bars}"),
                    ("bars missing in the store", f"{dv.gap_bars}"),
                    ("divergence bound", f"{dv.max_divergence:,.2f} {q}"
                     + (" — EXCEEDED" if dv.diverged else "") if dv.max_divergence
                     else "none")])]
    if len(dv.time_ms):
        equity = equity_frame(dv)
        body.append(_chart(_equity_figure(equity, q), "chart-paper-equity"))
        body.append(_chart(_difference_figure(equity, q), "chart-paper-difference"))
    body.append(f"<h2 id=\"divergence\">Fills that differ ({dv.differing_fills})</h2>")
    if dv.differences:
        body.append(_table(differences_frame(dv), index=False))
    else:
        body.append("<p>None: the paper run filled exactly as the backtest of the same "
                    "bars.</p>")
    body.append(f"<h2 id=\"fills\">Paper fills ({len(data.fills)})</h2>")
    if len(data.fills):
        shown = data.fills.head(MAX_TRADE_ROWS)
        body.append(_table(shown))
    if run.config is not None:
        body.append("<h2>Configuration</h2><pre>" + _esc(_json(run.config)) + "</pre>")
    return _page(f"usdcarb {dep}", body)


def deployment_report(client: Client, deployment: str, path: str | Path) -> Path:
    """Write the report of a paper deployment to ``path``."""
    out = Path(path)
    out.write_text(deployment_html(fetch_deployment(client, deployment)), encoding="utf-8")
    return out
