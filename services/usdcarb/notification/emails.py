"""Render an event as an email: a readable subject, a plain-text and an HTML body.

Pure: the delivery engine sends what this returns. Each event type has a heading and
the details worth reading first; every detail of the event follows below them.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from typing import Any

from usdcarb.notification.model import StoredEvent

# heading, and the data keys shown first, per event type
_TYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "EVENT_TYPE_BACKTEST_SUCCEEDED": ("Backtest finished", (
        "strategy_version", "total_return", "sharpe", "max_drawdown", "trades")),
    "EVENT_TYPE_BACKTEST_FAILED": ("Backtest failed", ("strategy_version", "error")),
    "EVENT_TYPE_SWEEP_FINISHED": ("Sweep finished", (
        "strategyVersion", "combinations", "folds", "objective", "best", "outOfSample")),
    "EVENT_TYPE_INGESTION_SUCCEEDED": ("Ingestion finished", (
        "exchange", "symbol", "timeframe", "bars_stored", "bars_quarantined")),
    "EVENT_TYPE_INGESTION_FAILED": ("Ingestion failed", ("exchange", "symbol", "error")),
    "EVENT_TYPE_GAP_DETECTED": ("Gap in market data", ("series", "start", "end", "bars")),
    "EVENT_TYPE_DATA_ISSUE": ("Data-quality issue", ("series", "rule", "count")),
    "EVENT_TYPE_DEPLOYMENT_CHANGED": ("Deployment changed", (
        "version", "environment", "state", "creator")),
    "EVENT_TYPE_DEPLOYMENT_DIVERGED": ("Paper deployment diverged from its backtest", (
        "deployment", "difference", "max_divergence", "bars", "pnl_difference")),
    "EVENT_TYPE_VERSION_STATE_CHANGED": ("Strategy version changed state", (
        "from_state", "to_state", "reason", "actor")),
    "EVENT_TYPE_TEST": ("Test notification", ("channel",)),
    "EVENT_TYPE_SERIES_VERDICT_CHANGED": ("Series verdict changed", ("series", "verdict")),
    "EVENT_TYPE_DATA_QUALITY_DIGEST": ("Daily data-quality digest", (
        "day", "series_count", "gaps", "quarantined_bars")),
}
_DIGEST_COLUMNS = ("exchange", "symbol", "timeframe", "coverage", "bars", "expected_bars",
                   "gaps", "missing_bars", "quarantined_bars")
_SEVERITY = {"SEVERITY_INFO": "info", "SEVERITY_WARNING": "warning", "SEVERITY_ERROR": "ERROR",
             "SEVERITY_UNSPECIFIED": "info"}


@dataclass(frozen=True)
class Email:
    """The parts of one notification email."""

    subject: str
    text: str
    html: str


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def render(event: StoredEvent, *, subject_prefix: str = "[usdcarb]") -> Email:
    """Render ``event`` for people: first the heading and key facts, then the rest."""
    e = event.event
    heading, first = _TYPES.get(e.type, (e.type.removeprefix("EVENT_TYPE_").title(), ()))
    severity = _SEVERITY.get(e.severity, e.severity)
    tag = "" if severity == "info" else f"[{severity}] "
    subject = f"{subject_prefix} {tag}{heading}: {e.summary}".strip()
    subject = " ".join(subject.split())[:200]  # one line, bounded
    data = dict(e.data)
    series = data.pop("series", None) if e.type == "EVENT_TYPE_DATA_QUALITY_DIGEST" else None
    ordered = [k for k in first if k in data] + sorted(k for k in data if k not in first)
    facts = [("Subject", e.subject), ("Severity", severity), ("Source", e.source),
             ("Time", event.time.isoformat(timespec="seconds")), ("Event id", event.id)]
    facts += [(k, _show(data[k])) for k in ordered]
    width = max(len(k) for k, _ in facts)
    table_text, table_html = _series_table(series) if isinstance(series, list) else ("", "")
    text = "\n".join([heading, "", e.summary, "", *(f"{k.ljust(width)}  {v}" for k, v in facts),
                      table_text, "", "Sent by usdcarb notifications.", ""])
    rows = "".join(f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                   for k, v in facts)
    body = (f"<html><body><h2>{html.escape(heading)}</h2><p>{html.escape(e.summary)}</p>"
            f"<table cellpadding='4'>{rows}</table>{table_html}"
            f"<p style='color:#888'>Sent by usdcarb notifications.</p></body></html>")
    return Email(subject=subject, text=text, html=body)


def _series_table(series: list[Any]) -> tuple[str, str]:
    """The digest's per-series rows as aligned text and an HTML table."""
    rows = [[_show(s.get(c, "")) for c in _DIGEST_COLUMNS] for s in series
            if isinstance(s, dict)]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(_DIGEST_COLUMNS)]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True))
             for r in [list(_DIGEST_COLUMNS), *rows]]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in _DIGEST_COLUMNS)
    cells = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in r) + "</tr>"
                    for r in rows)
    return ("\n" + "\n".join(lines), f"<h3>Series</h3><table cellpadding='4' border='1'>"
            f"<tr>{head}</tr>{cells}</table>")
