"""The ``usdcarb`` command line.

Subcommands:
  strategy    create | version | list | show (strategies and their versions)
  backtest    run | watch | get | list | cancel (live progress, figures vs the hold baseline)
  sweep       run | watch | get (grids, walk-forward, k-fold; deflated Sharpe)
  report      NAME -o report.html: one self-contained HTML report of a backtest or sweep
  deploy      paper | stop | status | watch | divergence | report (paper deployments)
  data        backfill | coverage | quality | import (market data)
  backfill    the same as `data backfill`
  dev-token   print a development JWT (USDCARB_ENV dev/test only)
  notify      channels | subscriptions | deliveries | watch (notifications)
  stack       up | down | status of the local mesh

Every command takes --gateway, --cacert, --token and --json (JSON on stdout for
scripts; progress goes to stderr). `usdcarb COMMAND --help` describes one command.

Exit codes: 0 done (the job succeeded); 1 the job failed or was cancelled; 2 bad
arguments (refused locally or INVALID_ARGUMENT); 3 not found; 4 unauthenticated or not
allowed; 5 refused in the current state (FAILED_PRECONDITION, ALREADY_EXISTS, ABORTED);
6 unavailable, timed out or rate limited (try again); 7 any other error; 130
interrupted. `data quality` keeps its own: 0 usable, 1 stale or aliased, 2 failed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

USAGE = __doc__ or ""

# Commands built on the SDK with argparse (usdcarb.commands.*), registered on one parser.
_SDK_COMMANDS = ("strategy", "backtest", "sweep", "report", "deploy")


def _sdk_command(argv: list[str]) -> int:
    from usdcarb.commands import backtest, deploy, report, strategy, sweep
    from usdcarb.commands.common import ArgumentParser, parse_and_run

    parser = ArgumentParser(prog="usdcarb", description=USAGE,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command")
    for module in (strategy, backtest, sweep, report, deploy):
        module.register(commands)
    return parse_and_run(parser, argv, f"usdcarb {argv[0]}")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command in _SDK_COMMANDS:
        return _sdk_command(args)
    if command == "dev-token":
        from usdcarb.gateway.devtoken import main as devtoken

        return devtoken(rest)
    if command in ("backfill", "data"):
        from usdcarb.commands.data import main as data

        return data(["backfill", *rest] if command == "backfill" else rest)
    if command == "notify":
        from usdcarb.notification.cli import main as notify

        return notify(rest)
    if command == "stack":
        from usdcarb.devstack.stack import main as stack

        return stack(rest)
    sys.stderr.write(f"usdcarb: unknown command {command!r}\n{USAGE}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
