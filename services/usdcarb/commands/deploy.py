"""``usdcarb deploy paper|stop|status|watch|divergence|report``: paper deployments.

    usdcarb deploy paper strategies/s/versions/v --start 2023-03-10 --venue binance \\
        --venue bybit --balance USDC=1e5 --balance BTC=2 --taker-fee-bps 10 \\
        [--stale-after-bars 2] [--max-divergence 50]     # or --config @config.json
    usdcarb deploy status strategies/s/deployments/d
    usdcarb deploy watch strategies/s/deployments/d [--updates 10]
    usdcarb deploy divergence strategies/s/deployments/d [--html report.html]
    usdcarb deploy report strategies/s/deployments/d -o deployment.html
    usdcarb deploy stop strategies/s/deployments/d [--reason "done"]

``paper`` deploys an APPROVED version in PAPER mode (or takes an existing deployment)
and starts its paper run: the backtest engine trades it forward on each new stored bar,
from ``--start``, under the config's costs and balances. No order leaves the platform;
LIVE deployments are refused. ``divergence`` compares the run with the backtest of the
same version over the same bars: PnL side by side and each fill that differs, with the
reason (late bar, gap, revised bar, carried over). Exit codes: 0 done (``watch``: the run
stopped); 1 the run FAILED; 5 refused in the current state (e.g. a version not APPROVED);
else see commands.common.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from usdcarb.commands.backtest import RESUMES
from usdcarb.commands.common import (
    EXIT_JOB_FAILED,
    EXIT_OK,
    Output,
    UsageError,
    add_connection,
    client_for,
)
from usdcarb.commands.run_config import add_config_options, build_config
from usdcarb_sdk import Client, DeadlineExceeded, NotFound, Unavailable, v1
from usdcarb_sdk.deployment_report import deployment_report, differences_frame, divergence_of


def deployment_name(text: str) -> str:
    """Return "strategies/{s}/deployments/{d}" from it, or its paperRun/paperDivergence."""
    parts = text.strip("/").split("/")
    if len(parts) < 4 or parts[0] != "strategies" or parts[2] != "deployments" \
            or not parts[1] or not parts[3]:
        raise UsageError(f"expected strategies/{{s}}/deployments/{{d}}, got {text!r}")
    return "/".join(parts[:4])


def _when(ts: Any) -> str:
    return ts.strftime("%Y-%m-%d %H:%M") if ts else "—"


def _state(run: v1.PaperRun) -> str:
    return run.state.name.lower()


def print_run(out: Output, run: v1.PaperRun) -> None:
    """Print a paper run: state, bars, equity, fills, balances, figures."""
    quote = run.config.quote_asset if run.config else ""
    out.line(f"{run.name}  {_state(run)}  {run.strategy_version}")
    m = run.metrics or v1.BacktestMetrics()
    out.table(None, ["bars", "last bar", f"equity ({quote})", "total PnL", "return",
                     "fills", "late bars", "max drawdown"],
              [[f"{run.bars:,}", _when(run.last_bar_time), f"{run.equity:,.2f}",
                f"{m.total_pnl:,.2f}", f"{m.total_return:+.4%}", run.fills, run.late_bars,
                f"{m.max_drawdown:.4%}"]],
              numeric=["bars", f"equity ({quote})", "total PnL", "return", "fills",
                       "late bars", "max drawdown"])
    if run.balances:
        out.table("balances", ["venue", "asset", "amount"],
                  [[b.venue, b.asset, f"{b.amount:,.6f}"] for b in run.balances],
                  numeric=["amount"])
    if run.outcome is not None and run.outcome.error is not None:
        out.line(f"error: {run.outcome.error.message}")


def _describe(config: v1.BacktestConfig) -> str:
    start = config.range.start_time if config.range else None
    venues = ", ".join(v.venue for v in config.venues)
    return (f"from {_when(start)} on, {config.timeframe or '1m'} bars of {venues}, "
            f"in {config.quote_asset}")


def _exit(run: v1.PaperRun) -> int:
    return EXIT_JOB_FAILED if run.state == v1.PaperRunState.FAILED else EXIT_OK


def _deploy(client: Client, target: str, notes: str) -> v1.Deployment:
    """The deployment ``target`` names, or a new PAPER deployment of the version it names."""
    parts = target.strip("/").split("/")
    if len(parts) == 4 and parts[0] == "strategies" and parts[2] == "versions":
        deployment: v1.Deployment = client.strategies.create_deployment(
            parent="/".join(parts[:2]), deployment=v1.Deployment(
                version=target, environment=v1.DeploymentEnvironment.PAPER, notes=notes))
        return deployment
    existing: v1.Deployment = client.strategies.get_deployment(name=deployment_name(target))
    return existing


def paper(args: argparse.Namespace, out: Output) -> int:
    if args.stale_after_bars < 0 or args.max_divergence < 0:
        raise UsageError("expected --stale-after-bars and --max-divergence >= 0")
    if not args.config and args.start and not args.end:
        args.end = "2999-01-01"   # only checked as a range: a paper run has no end
    config = build_config(args)
    if config.range is not None:
        config.range.end_time = None
    with client_for(args) as client:
        deployment = _deploy(client, args.target, args.notes)
        out.note(f"{deployment.name}: paper run of {deployment.version}: {_describe(config)}")
        run = client.backtests.start_paper_run(
            name=f"{deployment.name}/paperRun", config=config,
            stale_after_bars=args.stale_after_bars, max_divergence=args.max_divergence)
    if out.json:
        out.emit({"deployment": deployment, "paperRun": run})
    else:
        print_run(out, run)
    return EXIT_OK


def stop(args: argparse.Namespace, out: Output) -> int:
    name = deployment_name(args.deployment)
    with client_for(args) as client:
        deployment = client.strategies.stop_deployment(name=name, reason=args.reason)
        run: v1.PaperRun | None = None
        deadline = time.monotonic() + args.wait
        while True:   # the replica running it stops it within a few seconds
            try:
                run = client.backtests.get_paper_run(name=f"{name}/paperRun")
            except NotFound:
                break
            if run.state != v1.PaperRunState.RUNNING or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
    if out.json:
        out.emit({"deployment": deployment, "paperRun": run})
    else:
        out.line(f"{deployment.name}: {deployment.state.name.lower()}"
                 + (f"; paper run {_state(run)} after {run.bars:,} bars" if run else ""))
    return EXIT_OK


def status(args: argparse.Namespace, out: Output) -> int:
    name = deployment_name(args.deployment)
    with client_for(args) as client:
        run = client.backtests.get_paper_run(name=f"{name}/paperRun")
    if out.json:
        out.emit(run)
    else:
        print_run(out, run)
    return _exit(run)


def watch(args: argparse.Namespace, out: Output) -> int:
    name = deployment_name(args.deployment)
    last: v1.PaperRun | None = None
    seen = 0
    with client_for(args) as client:
        for attempt in range(RESUMES + 1):
            try:   # a dropped stream resumes after the last state seen
                for run in client.backtests.watch_paper_run(
                        name=f"{name}/paperRun", after_sequence=last.sequence if last else 0):
                    last, seen = run, seen + 1
                    if out.json:
                        out.out.write(run.to_json() + "\n")   # one JSON object per line
                        out.out.flush()
                    else:
                        out.line(f"{_when(run.last_bar_time)}  {_state(run)}  "
                                 f"bars {run.bars:,}  equity {run.equity:,.2f}  "
                                 f"fills {run.fills}  late bars {run.late_bars}")
                    if args.updates and seen >= args.updates:
                        return _exit(run)
                break
            except (Unavailable, DeadlineExceeded) as exc:
                if attempt == RESUMES:
                    raise
                out.note(f"{name}: the stream dropped ({exc.code.name}); resuming")
    return EXIT_OK if last is None else _exit(last)


def divergence(args: argparse.Namespace, out: Output) -> int:
    name = deployment_name(args.deployment)
    with client_for(args) as client:
        dv = divergence_of(client, name)
        if args.html:
            out.note(f"report written to {deployment_report(client, name, args.html)}")
    if out.json:
        dv.time_ms, dv.paper_equity_curve, dv.backtest_equity_curve = [], [], []
        out.emit(dv)
        return EXIT_OK
    q = dv.quote_asset
    out.line(f"{name}: {dv.bars:,} bars from {_when(dv.start_time)} to {_when(dv.end_time)}"
             f", {dv.strategy_version}")
    out.table("paper vs backtest of the same bars", ["", "paper", "backtest", "difference"],
              [[f"equity ({q})", f"{dv.paper_equity:,.2f}", f"{dv.backtest_equity:,.2f}",
                f"{dv.paper_equity - dv.backtest_equity:+,.2f}"],
               [f"PnL ({q})", f"{dv.paper_pnl:,.2f}", f"{dv.backtest_pnl:,.2f}",
                f"{dv.pnl_difference:+,.2f}"],
               ["fills", dv.paper_fills, dv.backtest_fills, f"{dv.differing_fills} differ"]],
              numeric=["paper", "backtest", "difference"])
    out.line(f"late bars {dv.late_bars}, bars missing in the store {dv.gap_bars}"
             + (f", bound {dv.max_divergence:,.2f} {q}"
                + (" EXCEEDED" if dv.diverged else " kept") if dv.max_divergence else ""))
    if dv.differences:
        frame = differences_frame(dv)
        shown = frame.head(args.limit) if args.limit else frame
        out.table(f"fills that differ ({len(frame)})", list(shown.columns),
                  shown.astype(str).values.tolist())
    return EXIT_OK


def report(args: argparse.Namespace, out: Output) -> int:
    name = deployment_name(args.deployment)
    with client_for(args) as client:
        path = deployment_report(client, name, args.output)
    out.report_written(name, path)
    return EXIT_OK


def register(commands: Any) -> None:
    """Add the ``deploy`` command and its subcommands."""
    parser = commands.add_parser("deploy", help="paper deployments: start, follow, compare",
                                 description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action",
                                metavar="paper|stop|status|watch|divergence|report")
    p = sub.add_parser("paper", help="deploy a version in PAPER mode and start its run")
    p.add_argument("target", help="strategies/{s}/versions/{v} (APPROVED) or an existing "
                                  "strategies/{s}/deployments/{d}")
    p.add_argument("--notes", default="", help="notes of a new deployment")
    p.add_argument("--stale-after-bars", type=int, default=0,
                   help="bars another market may run ahead before a missing bar counts "
                        "as missing (default 2)")
    p.add_argument("--max-divergence", type=float, default=0.0,
                   help="bound on |paper - backtest equity| in the quote asset: an event "
                        "when crossed (default 0: none)")
    add_config_options(p)
    p.set_defaults(handler=paper)
    p = sub.add_parser("stop", help="stop a deployment and its paper run")
    p.add_argument("deployment", help="strategies/{s}/deployments/{d}")
    p.add_argument("--reason", default="stopped from the CLI")
    p.add_argument("--wait", type=float, default=30.0,
                   help="seconds to wait for the run to stop (default 30)")
    p.set_defaults(handler=stop)
    p = sub.add_parser("status", help="the paper run: state, equity, fills, balances")
    p.add_argument("deployment", help="strategies/{s}/deployments/{d}")
    p.set_defaults(handler=status)
    p = sub.add_parser("watch", help="follow the paper run bar by bar until it stops")
    p.add_argument("deployment", help="strategies/{s}/deployments/{d}")
    p.add_argument("--updates", type=int, default=0,
                   help="exit after this many updates (default 0: when the run stops)")
    p.set_defaults(handler=watch)
    p = sub.add_parser("divergence", help="paper vs the backtest of the same bars")
    p.add_argument("deployment", help="strategies/{s}/deployments/{d}")
    p.add_argument("--limit", type=int, default=50,
                   help="rows of the differing fills table (default 50; 0: all)")
    p.add_argument("--html", metavar="FILE", help="also write the deployment's HTML report")
    p.set_defaults(handler=divergence)
    p = sub.add_parser("report", help="write the deployment's HTML report")
    p.add_argument("deployment", help="strategies/{s}/deployments/{d}")
    p.add_argument("-o", "--output", required=True, help="the HTML file to write")
    p.set_defaults(handler=report)
    for p in sub.choices.values():
        add_connection(p)
