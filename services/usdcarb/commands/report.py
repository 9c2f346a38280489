"""``usdcarb report NAME -o report.html``: one self-contained HTML report (plotly inline).

    usdcarb report backtests/ID -o report.html
    usdcarb report sweeps/ID -o sweep.html [--x crossExchangeSpread.entryBps --y ...]

A backtest report: equity vs the hold baseline, drawdown, the traded spread with entries
and exits, per-venue inventory, the PnL attribution waterfall, the robustness panel,
trades, fingerprint and configuration. A sweep report: the objective's heatmap over two
axes (--x/--y, default the first two), the deflated Sharpe ratio, in-sample vs
out-of-sample decay, every point. Exit codes: see commands.common.
"""

from __future__ import annotations

import argparse
from typing import Any

from usdcarb.commands.common import (
    EXIT_OK,
    EXIT_REFUSED,
    Output,
    UsageError,
    add_connection,
    client_for,
)
from usdcarb_sdk.report import report as write_report


def run(args: argparse.Namespace, out: Output) -> int:
    name = args.name
    if not name.startswith(("backtests/", "sweeps/")):
        raise UsageError(f"expected backtests/ID or sweeps/ID, got {name!r}")
    options = {k: v for k, v in (("x", args.x), ("y", args.y)) if v}
    if options and not name.startswith("sweeps/"):
        raise UsageError("expected --x/--y only with a sweep")
    with client_for(args) as client:
        try:
            path = write_report(client, name, args.output, **options)
        except ValueError as exc:  # not finished: refused in its current state
            out.note(f"usdcarb report: {exc}")
            return EXIT_REFUSED
    out.report_written(name, path)
    return EXIT_OK


def register(commands: Any) -> None:
    """Add the ``report`` command."""
    p = commands.add_parser("report", help="write the HTML report of a backtest or sweep",
                            description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", help="backtests/{id} or sweeps/{id}")
    p.add_argument("-o", "--output", required=True, help="the HTML file to write")
    p.add_argument("--x", default="", help="sweep heatmap: axis across")
    p.add_argument("--y", default="", help="sweep heatmap: axis down")
    p.set_defaults(handler=run)
    add_connection(p)
