"""``usdcarb sweep run|watch|get``: parameter sweeps (grid, walk-forward, k-fold).

    usdcarb sweep run VERSION --axis crossExchangeSpread.entryBps=20,40,60 \\
        --axis execution.feeMultiplier=1,1.5,2 --objective sharpe \\
        --start 2023-03-10 --end 2023-03-13 --venue binance --venue bybit --balance ...
    usdcarb sweep run VERSION --axis ... --walk-forward 1d/12h[/12h]   # in-sample/out-of-sample
    usdcarb sweep run VERSION --axis ... --folds 5 --purge 30m --embargo 30m
    usdcarb sweep watch sweeps/ID
    usdcarb sweep get sweeps/ID [--top 10]

Axes are strategy parameters ("crossExchangeSpread.entryBps") or cost axes
("execution.feeMultiplier", "execution.slippageMultiplier", "execution.extraLatencyBars").
The result shows the best points, the deflated Sharpe ratio of the best point for the
number of trials, and in-sample vs out-of-sample decay for walk-forward and k-fold runs.
Exit codes: 0 succeeded, 1 failed or cancelled, else see commands.common.
"""

from __future__ import annotations

import argparse
import uuid
from typing import Any

from usdcarb.commands.common import (
    EXIT_JOB_FAILED,
    EXIT_OK,
    JobProgress,
    Output,
    UsageError,
    add_connection,
    client_for,
)
from usdcarb.commands.run_config import (
    add_config_options,
    build_config,
    describe,
    parse_axes,
    parse_duration,
)
from usdcarb_sdk import Client, v1
from usdcarb_sdk.results import cv_folds_frame, folds_frame, sweep_points_frame


def sweep_name(text: str) -> str:
    """Return "sweeps/{id}" for an id or a name."""
    return text if text.startswith("sweeps/") else f"sweeps/{text}"


def print_sweep(out: Output, sweep: v1.Sweep, top: int) -> None:
    """Print a sweep's best points, deflated Sharpe and fold decay."""
    objective = sweep.objective or "sharpe"
    axes = [a.path for a in sweep.axes]
    out.line(f"{sweep.name}  {sweep.state.name.lower()}  {sweep.strategy_version}  "
             f"objective {objective}, {len(sweep.points)} points")
    points = sweep_points_frame(sweep)
    if not points.empty:
        shown = points.head(top)
        cols = [c for c in [*axes, objective, "total_return", "max_drawdown", "round_trips"]
                if c in shown]
        out.table(f"best {len(shown)} of {len(points)} points", cols,
                  [[f"{row[c]:.6g}" if isinstance(row[c], float) else row[c] for c in cols]
                   for _, row in shown.iterrows()], numeric=cols)
    ds = sweep.deflated_sharpe
    if ds is not None and ds.trials:
        out.line(f"deflated Sharpe ratio of the best point: {ds.deflated_sharpe:.3f} "
                 f"(Sharpe {ds.sharpe:.4g} per bar, {ds.annualized_sharpe:.3f} annualised; "
                 f"{ds.trials} trials, expected max under the null {ds.expected_max_sharpe:.4g})")
    folds = folds_frame(sweep, objective) if sweep.folds else cv_folds_frame(sweep, objective)
    if not folds.empty:
        out.table("in sample vs out of sample", ["fold", "chosen", f"{objective} in sample",
                                                 f"{objective} out of sample"],
                  [(r["fold"], r["chosen"], f"{r['in_sample']:.4g}",
                    f"{r['out_of_sample']:.4g}") for _, r in folds.iterrows()])
    oos = sweep.out_of_sample
    if oos is not None and oos.folds:
        out.line(f"out-of-sample decay {oos.decay:.3f}: mean {oos.mean_in_sample:.4g} in "
                 f"sample, {oos.mean_out_of_sample:.4g} out of sample, "
                 f"{oos.folds_decayed}/{oos.folds} folds decayed")
    if sweep.error is not None and sweep.error.message:
        out.line(f"error: {sweep.error.message}")


def follow(client: Client, out: Output, name: str, top: int, report_path: str | None) -> int:
    """Draw a sweep's progress until its outcome; print it; return the exit code."""
    outcome: v1.Outcome | None = None
    with JobProgress(out, name.split("/")[-1]) as progress:
        for event in client.backtests.watch_sweep(name=name):
            p = event.progress or v1.Progress()
            if event.queue is not None and event.state == v1.JobState.QUEUED:
                progress.update(0.0, f"queued, {event.queue.ahead} ahead")
            else:
                progress.update(p.fraction, f"{p.done}/{p.total} {p.unit or 'points'}")
            if event.outcome is not None:
                outcome = event.outcome
    sweep = client.backtests.get_sweep(name=name)
    ok = outcome is not None and outcome.result == v1.OutcomeResult.OK
    if out.json:
        out.emit(sweep)
    else:
        print_sweep(out, sweep, top)
        if not ok:
            out.line(f"{name} ended {outcome.result.name if outcome else 'without an outcome'}")
    if ok and report_path:
        from usdcarb_sdk.report import report

        out.note(f"report written to {report(client, name, report_path)}")
    return EXIT_OK if ok else EXIT_JOB_FAILED


def run(args: argparse.Namespace, out: Output) -> int:
    axes = parse_axes(args.axis)
    if not axes:
        raise UsageError("expected at least one --axis PATH=V1,V2,...")
    sweep = v1.Sweep(strategy_version=args.version, config=build_config(args), axes=axes,
                     objective=args.objective)
    if args.walk_forward and args.folds:
        raise UsageError("expected --walk-forward or --folds, not both")
    if args.walk_forward:
        parts = args.walk_forward.split("/")
        if len(parts) not in (2, 3):
            raise UsageError(f"expected --walk-forward IN/OUT[/STEP], got {args.walk_forward!r}")
        spec = v1.WalkForwardSpec(in_sample=parse_duration(parts[0]),
                                  out_of_sample=parse_duration(parts[1]))
        if len(parts) == 3:
            spec.step = parse_duration(parts[2])
        sweep.walk_forward = spec
    if args.folds:
        sweep.cross_validation = v1.CrossValidationSpec(
            folds=args.folds, purge=parse_duration(args.purge),
            embargo=parse_duration(args.embargo))
    with client_for(args) as client:
        made = client.backtests.create_sweep(sweep=sweep, request_id=uuid.uuid4().hex)
        if args.no_wait:
            if out.json:
                out.emit(made)
            else:
                out.line(made.name)
            return EXIT_OK
        out.note(f"{made.name}: {len(axes)} axes over {describe(sweep.config)}")
        return follow(client, out, made.name, args.top, args.report)


def watch(args: argparse.Namespace, out: Output) -> int:
    with client_for(args) as client:
        return follow(client, out, sweep_name(args.sweep), args.top, args.report)


def get(args: argparse.Namespace, out: Output) -> int:
    with client_for(args) as client:
        sweep = client.backtests.get_sweep(name=sweep_name(args.sweep))
    if out.json:
        out.emit(sweep)
    else:
        print_sweep(out, sweep, args.top)
    return EXIT_JOB_FAILED if sweep.state in (v1.JobState.FAILED, v1.JobState.CANCELLED) \
        else EXIT_OK


def register(commands: Any) -> None:
    """Add the ``sweep`` command and its subcommands."""
    parser = commands.add_parser("sweep", help="run, watch and get parameter sweeps",
                                 description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", metavar="run|watch|get")
    p = sub.add_parser("run", help="queue a sweep and follow it")
    p.add_argument("version", help="strategies/{s}/versions/{v}")
    p.add_argument("--axis", action="append", default=[], help="PATH=V1,V2,... (repeatable)")
    p.add_argument("--objective", default="sharpe", help="metric to rank by (default sharpe)")
    p.add_argument("--walk-forward", default="", metavar="IN/OUT[/STEP]",
                   help="walk-forward windows, e.g. 1d/12h")
    p.add_argument("--folds", type=int, default=0, help="purged k-fold evaluation, 2..20")
    p.add_argument("--purge", default="0s", help="purge around each test fold (e.g. 30m)")
    p.add_argument("--embargo", default="0s", help="embargo after each test fold (e.g. 30m)")
    p.add_argument("--no-wait", action="store_true", help="queue it, print its name, exit")
    p.add_argument("--report", metavar="FILE", help="write the HTML report when it succeeds")
    add_config_options(p)
    p.set_defaults(handler=run)
    for action, helptext, handler in (("watch", "follow a sweep until it ends", watch),
                                      ("get", "a sweep and its results", get)):
        p = sub.add_parser(action, help=helptext)
        p.add_argument("sweep", help="sweeps/{id} or the id")
        if action == "watch":
            p.add_argument("--report", metavar="FILE")
        p.set_defaults(handler=handler)
    for p in sub.choices.values():
        p.add_argument("--top", type=int, default=10, help="points to show (default 10)")
        add_connection(p)
