"""The ``usdcarb`` command line.

Subcommands:
  backfill    start an ingest job through the gateway and follow it with a progress bar
  data        quality: the quality report of a series (coverage, gaps, verdicts, history)
  dev-token   print a development JWT (USDCARB_ENV dev/test only)
  notify      channels | subscriptions | deliveries | watch (notifications)
  stack       up | down | status of the local mesh
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE = __doc__ or ""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "dev-token":
        from usdcarb.gateway.devtoken import main as devtoken

        return devtoken(rest)
    if command == "backfill":
        from usdcarb.ingestion.cli import main as backfill

        return backfill(rest)
    if command == "data":
        from usdcarb.validation.cli import main as data

        return data(rest)
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
