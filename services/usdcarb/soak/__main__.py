"""``python -m usdcarb.soak [--seconds 180] [--seed 1] [--out .run/soak]``: one soak run.

Exit 0 when the accounting table is all zeros and every error was retried to success or
was a retryable status inside a documented fault window; 1 otherwise; 2 bad arguments.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from usdcarb.soak.driver import SoakSettings, run
from usdcarb.soak.report import text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m usdcarb.soak", description=__doc__)
    parser.add_argument("--seconds", type=float,
                        default=float(os.environ.get("SOAK_S", "180")),
                        help="length of the load phase (SOAK_S; default 180)")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("SOAK_SEED", "1")),
                        help="seed of the fault schedule and the clients' jitter (SOAK_SEED)")
    parser.add_argument("--out", type=Path, default=Path(".run/soak"),
                        help="report and the soak's own stack go here (default .run/soak)")
    parser.add_argument("--no-faults", action="store_true", help="load and accounting only")
    parser.add_argument("--faults", default="",
                        help="comma-separated fault kinds (default: the schedule's own set)")
    parser.add_argument("--streams", type=int, default=20, help="concurrent backtest streams")
    args = parser.parse_args(argv)
    if not 10 <= args.seconds <= 3600:
        parser.error(f"expected --seconds within 10..3600, got {args.seconds}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    settings = SoakSettings(seconds=args.seconds, seed=args.seed, out=args.out,
                            faults=not args.no_faults,
                            fault_kinds=[k for k in args.faults.split(",") if k] or None,
                            backtest_streams=args.streams)
    outcome = run(settings)
    sys.stdout.write(text(outcome.report))
    sys.stdout.write(f"report: {args.out / 'report.txt'} and report.json\n")
    return outcome.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
