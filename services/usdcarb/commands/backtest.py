"""``usdcarb backtest run|watch|get|list|cancel``: backtests, with live progress.

    usdcarb backtest run strategies/s/versions/v --start 2023-03-10 --end 2023-03-13 \\
        --venue binance --venue bybit --balance BTC=5 --balance USDC=200000 \\
        --taker-fee-bps 10 --slippage-bps 2 [--robustness] [--report out.html]
    usdcarb backtest run VERSION --config @config.json --no-wait   # queue, print the name
    usdcarb backtest watch backtests/ID
    usdcarb backtest get backtests/ID
    usdcarb backtest list [--state running] [--strategy strategies/s] [--limit 20]
    usdcarb backtest cancel backtests/ID

``run`` and ``watch`` draw a progress bar (stderr) until the outcome, then print the
figures: the strategy's absolute figures beside the hold baseline's, the excess over it,
the PnL attribution and the robustness panel when the result has them. Exit codes: 0
succeeded, 1 failed or cancelled, else see commands.common.
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Iterable
from datetime import timedelta
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
from usdcarb.commands.run_config import add_config_options, build_config, describe
from usdcarb_sdk import Client, DeadlineExceeded, Unavailable, v1
from usdcarb_sdk.results import attribution_parts, robustness_frame

_STATES = {s.name.lower(): s for s in v1.JobState if s.value}


def backtest_name(text: str) -> str:
    """Return "backtests/{id}" for an id or a name."""
    return text if text.startswith("backtests/") else f"backtests/{text}"


def _f(x: float, spec: str = ",.4f") -> str:
    return format(x, spec)


_ROWS: list[tuple[str, str, str]] = [
    ("total return", "total_return", "+.4%"), ("total PnL", "total_pnl", ",.2f"),
    ("annualised return", "annualized_return", "+.4%"), ("Sharpe", "sharpe", ".3f"),
    ("Sortino", "sortino", ".3f"), ("max drawdown", "max_drawdown", ".4%"),
    ("volatility", "volatility", ".4%"), ("round trips", "round_trips", "d"),
    ("win rate", "win_rate", ".1%"), ("fees paid", "fees_paid", ",.2f"),
    ("slippage paid", "slippage_paid", ",.2f"), ("exposure", "exposure", ".2%"),
]


def print_result(out: Output, bt: v1.Backtest) -> None:
    """Print a finished backtest's figures as tables."""
    result = bt.result
    if result is None:
        return
    m = result.metrics or v1.BacktestMetrics()
    base = result.baseline_metrics
    quote = bt.config.quote_asset if bt.config else ""
    out.line(f"{bt.name}: {result.bars} bars, {result.trade_count} fills, execution: "
             f"{result.execution_model or 'not reported'}"
             + ("  [OPTIMISTIC same-bar fills]" if result.optimistic_fills else ""))
    columns = ["figure", "strategy (absolute)"] + (["hold baseline"] if base else [])
    rows = []
    for label, field, spec in _ROWS:
        row = [label, format(getattr(m, field), spec)]
        if base is not None:
            row.append(format(getattr(base, field), spec))
        rows.append(row)
    out.table(None, columns, rows, numeric=columns[1:])
    if base is not None or m.attribution is not None:  # engine 2.x: excess in every run
        out.table("over the hold baseline (same balances, never traded)",
                  ["excess return", f"excess PnL ({quote})", "excess Sharpe",
                   "excess max drawdown"],
                  [[_f(m.excess_return, "+.4%"), _f(m.excess_pnl, ",.2f"),
                    _f(m.excess_sharpe, ".3f"), _f(m.excess_max_drawdown, ".4%")]])
    parts = attribution_parts(m)
    if parts is not None and m.attribution is not None:
        out.table(f"PnL attribution ({quote})", ["component", "amount"],
                  [*[(k, _f(v, ",.2f")) for k, v in parts],
                   ("total", _f(m.attribution.total_pnl, ",.2f"))], numeric=["amount"])
    if result.execution_model:  # engine 2.x figures
        out.line(f"legged trades {m.legged_trades}, partial fills {m.partial_fills}, "
                 f"fill ratio {m.fill_ratio:.1%}, rejected fills {m.rejected_fills}")
    panel = robustness_frame(result)
    if not panel.empty:
        out.table("robustness panel", ["scenario", "total return", "total PnL", "Sharpe",
                                       "max drawdown"],
                  [(r["scenario"], _f(r["total_return"], "+.4%"), _f(r["total_pnl"], ",.2f"),
                    _f(r["sharpe"], ".3f"), _f(r["max_drawdown"], ".4%"))
                   for _, r in panel.iterrows()],
                  numeric=["total return", "total PnL", "Sharpe", "max drawdown"])
    if result.fingerprint is not None:
        out.line(f"fingerprint {result.fingerprint.digest}")


def _detail(event: v1.BacktestEvent) -> str:
    p = event.progress
    if p is None:
        return ""
    if p.queue is not None and event.state == v1.JobState.QUEUED:
        return (f"queued, {p.queue.ahead} ahead"
                + (" (workers warming up)" if p.queue.warming_up else ""))
    prog = p.progress or v1.Progress()
    return f"{prog.done}/{prog.total} {prog.unit or 'bars'}  equity {p.equity:,.2f}"


RESUMES = 5  # reconnections of a dropped stream before giving up


def follow(client: Client, out: Output, events: Iterable[v1.BacktestEvent], label: str
           ) -> tuple[str, v1.BacktestCompleted | None]:
    """Draw a backtest stream until its last event; return the name and the completion.

    A stream that drops (UNAVAILABLE, DEADLINE_EXCEEDED) or ends before the outcome is
    resumed with WatchBacktest from the last event seen, up to RESUMES times.
    """
    name, sequence, completed = "", 0, None
    with JobProgress(out, label) as progress:
        for attempt in range(RESUMES + 1):
            try:
                for event in events:
                    name, sequence = event.backtest or name, event.sequence or sequence
                    if event.progress is not None:
                        prog = event.progress.progress
                        progress.update(prog.fraction if prog else 0.0, _detail(event))
                    if event.completed is not None:
                        completed = event.completed
                        if completed.outcome and completed.outcome.result == v1.OutcomeResult.OK:
                            progress.update(1.0, "done")
            except (Unavailable, DeadlineExceeded) as exc:
                if not name or attempt == RESUMES:
                    raise
                out.note(f"{name}: the stream dropped ({exc.code.name}); resuming")
            if completed is not None or not name:
                break
            events = client.backtests.watch_backtest(name=name, after_sequence=sequence)
    return name, completed


def finish(client: Client, out: Output, name: str,
           completed: v1.BacktestCompleted | None, report_path: str | None) -> int:
    """Print the outcome of a followed backtest and return the exit code."""
    if completed is None or completed.outcome is None:
        out.note(f"{name}: the stream ended without an outcome; follow it with "
                 f"`usdcarb backtest watch {name}`")
        return EXIT_JOB_FAILED
    bt = client.backtests.get_backtest(name=name)
    ok = completed.outcome.result == v1.OutcomeResult.OK
    if out.json:
        out.emit(bt)
    elif ok:
        print_result(out, bt)
    else:
        error = completed.outcome.error
        out.line(f"{name} ended {completed.outcome.result.name}: "
                 f"{error.message if error else ''}")
    if ok and report_path:
        from usdcarb_sdk.report import report

        out.note(f"report written to {report(client, name, report_path)}")
    return EXIT_OK if ok else EXIT_JOB_FAILED


def run(args: argparse.Namespace, out: Output) -> int:
    config = build_config(args)
    with client_for(args) as client:
        if args.no_wait:
            bt = client.backtests.create_backtest(
                backtest=v1.Backtest(strategy_version=args.version, config=config),
                request_id=uuid.uuid4().hex)
            if out.json:
                out.emit(bt)
            else:
                out.line(bt.name)
            return EXIT_OK
        out.note(f"backtest {args.version}: {describe(config)}")
        events = client.backtests.run_backtest(
            strategy_version=args.version, config=config, request_id=uuid.uuid4().hex,
            progress_interval=timedelta(seconds=args.progress_interval))
        name, completed = follow(client, out, events, "backtest")
        return finish(client, out, name, completed, args.report)


def watch(args: argparse.Namespace, out: Output) -> int:
    name = backtest_name(args.backtest)
    with client_for(args) as client:
        done, completed = follow(client, out, client.backtests.watch_backtest(name=name),
                                 name.split("/")[-1])
        return finish(client, out, done or name, completed, args.report)


def get(args: argparse.Namespace, out: Output) -> int:
    with client_for(args) as client:
        bt = client.backtests.get_backtest(name=backtest_name(args.backtest))
    if out.json:
        out.emit(bt)
        return EXIT_OK
    out.line(f"{bt.name}  {bt.state.name.lower()}  {bt.strategy_version}")
    if bt.config is not None and bt.config.range is not None:
        out.line(f"  {describe(bt.config)}")
    if bt.state == v1.JobState.SUCCEEDED:
        print_result(out, bt)
    elif bt.error is not None and bt.error.message:
        out.line(f"  error: {bt.error.message}")
    elif bt.progress is not None:
        out.line(f"  progress {bt.progress.fraction:.1%}")
    return EXIT_OK if bt.state not in (v1.JobState.FAILED, v1.JobState.CANCELLED) else \
        EXIT_JOB_FAILED


def _row(bt: v1.Backtest) -> list[Any]:
    m = bt.result.metrics if bt.result and bt.result.metrics else None
    when = bt.create_time.strftime("%Y-%m-%d %H:%M") if bt.create_time else ""
    return [bt.name, bt.state.name.lower(), bt.strategy_version, when,
            f"{m.total_return:+.4%}" if m else "",
            f"{m.excess_return:+.4%}" if m and (m.attribution is not None or (
                bt.result and bt.result.baseline_metrics)) else "",
            f"{bt.progress.fraction:.0%}" if bt.progress else ""]


def list_(args: argparse.Namespace, out: Output) -> int:
    request = v1.ListBacktestsRequest(page_size=min(args.limit or 100, 1000),
                                      strategy=args.strategy, owner=args.owner)
    if args.state:
        if args.state not in _STATES:
            raise UsageError(f"expected --state in {sorted(_STATES)}, got {args.state!r}")
        request.state = _STATES[args.state]
    rows: list[v1.Backtest] = []
    with client_for(args) as client:
        for bt in client.backtests.iterate("list_backtests", request):
            rows.append(bt)
            if args.limit and len(rows) >= args.limit:
                break
    if out.json:
        out.emit(rows)
        return EXIT_OK
    out.table(f"{len(rows)} backtests", ["name", "state", "version", "created",
                                         "return", "excess", "progress"],
              [_row(bt) for bt in rows], numeric=["return", "excess", "progress"])
    return EXIT_OK


def cancel(args: argparse.Namespace, out: Output) -> int:
    with client_for(args) as client:
        bt = client.backtests.cancel_backtest(name=backtest_name(args.backtest))
    if out.json:
        out.emit(bt)
    else:
        out.line(f"{bt.name}: {bt.state.name.lower()}")
    return EXIT_OK


def register(commands: Any) -> None:
    """Add the ``backtest`` command and its subcommands."""
    parser = commands.add_parser("backtest", help="run, watch, get, list and cancel backtests",
                                 description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", metavar="run|watch|get|list|cancel")
    p = sub.add_parser("run", help="run a backtest and follow it")
    p.add_argument("version", help="strategies/{s}/versions/{v}")
    p.add_argument("--no-wait", action="store_true", help="queue it, print its name, exit")
    p.add_argument("--report", metavar="FILE", help="write the HTML report when it succeeds")
    p.add_argument("--progress-interval", type=float, default=0.25,
                   help="seconds between progress events (default 0.25)")
    add_config_options(p)
    p.set_defaults(handler=run)
    p = sub.add_parser("watch", help="follow a backtest until it ends")
    p.add_argument("backtest", help="backtests/{id} or the id")
    p.add_argument("--report", metavar="FILE", help="write the HTML report when it succeeds")
    p.set_defaults(handler=watch)
    p = sub.add_parser("get", help="a backtest and its figures")
    p.add_argument("backtest", help="backtests/{id} or the id")
    p.set_defaults(handler=get)
    p = sub.add_parser("list", help="backtests, newest first")
    p.add_argument("--state", default="", help=" | ".join(sorted(_STATES)))
    p.add_argument("--strategy", default="", help="strategies/{s} or a version")
    p.add_argument("--owner", default="", help='"users/me" for your own')
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    p.set_defaults(handler=list_)
    p = sub.add_parser("cancel", help="cancel a queued or running backtest")
    p.add_argument("backtest", help="backtests/{id} or the id")
    p.set_defaults(handler=cancel)
    for p in sub.choices.values():
        add_connection(p)
