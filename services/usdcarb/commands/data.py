"""``usdcarb data backfill|coverage|quality|import``: market data.

    usdcarb data backfill --exchange binance --symbol BTC/USDT --start 2023-03-10 --end 2023-03-13
    usdcarb data backfill --exchange kraken --symbol USDC/USD --incremental   # up to now
    usdcarb data coverage [--exchange binance] [--symbol BTC/USDC] [--timeframe 1m]
    usdcarb data quality --exchange binance --symbol USDC/USDT [--start T --end T]
    usdcarb data import ...        # issue 17: recorded exchange archives (own module)

``backfill`` starts an ingest job through the gateway and draws its progress until the
outcome (exit 0 succeeded, 1 failed or cancelled); ``coverage`` lists the stored series
with their first and last bars and the share of the bars between them that are stored.
``quality`` is ``usdcarb.validation.cli`` (its own exit codes: 0 usable, 1 stale or
aliased, 2 bad arguments or a failed call). Other exit codes: see commands.common.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from usdcarb.commands.common import (
    EXIT_JOB_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    ArgumentParser,
    JobProgress,
    Output,
    UsageError,
    add_connection,
    client_for,
    parse_and_run,
)
from usdcarb_sdk import v1
from usdcarb_sdk.backtest_config import parse_time

TIMEFRAME_S = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14_400, "1d": 86_400}

# Subcommands that live in modules of their own and parse their own options: the name,
# then the module and its ``main(argv) -> int``. ``import`` is issue 17's archive imports
# (usdcarb.commands.data_import); a build without a module answers exit 2.
DELEGATED = {"quality": ("usdcarb.validation.cli", True),
             "import": ("usdcarb.commands.data_import", False)}


def _time(text: str) -> datetime:
    try:
        return parse_time(text)
    except ValueError:
        raise UsageError(f"expected an ISO date or time, got {text!r}") from None


def backfill(args: argparse.Namespace, out: Output) -> int:
    job = v1.IngestJob(series=v1.SeriesKey(exchange=args.exchange, symbol=args.symbol,
                                           timeframe=args.timeframe),
                       mode=v1.IngestMode.INCREMENTAL if args.incremental
                       else v1.IngestMode.BACKFILL)
    if args.start or args.end:
        if not (args.start and args.end):
            raise UsageError("expected both --start and --end, or neither")
        job.range = v1.TimeRange(start_time=_time(args.start), end_time=_time(args.end))
    elif not args.incremental:
        raise UsageError("expected --start and --end (or --incremental)")
    with client_for(args) as client:
        made = client.ingestion.create_ingest_job(ingest_job=job, request_id=uuid.uuid4().hex)
        if args.no_wait:
            out.emit(made) if out.json else out.line(made.name)
            return EXIT_OK
        out.note(f"{made.name}: {args.exchange} {args.symbol} {args.timeframe}")
        last: v1.IngestJobEvent | None = None
        with JobProgress(out, f"backfill {args.exchange} {args.symbol}") as progress:
            for event in client.ingestion.watch_ingest_job(name=made.name):
                last = event
                if event.job is not None:
                    s = event.job.stats or v1.IngestStats()
                    fraction = event.job.progress.fraction if event.job.progress else 0.0
                    progress.update(fraction, f"{s.bars_stored} stored  "
                                              f"{s.bars_quarantined} quarantined")
        ok = last is not None and last.outcome is not None and \
            last.outcome.result == v1.OutcomeResult.OK
        final = client.ingestion.get_ingest_job(name=made.name)
    if out.json:
        out.emit(final)
    else:
        s = final.stats or v1.IngestStats()
        message = final.progress.message if final.progress else ""
        out.line(f"{final.name} {final.state.name.lower()}: {s.bars_stored} bars stored, "
                 f"{s.bars_duplicate} already stored, {s.bars_quarantined} quarantined, "
                 f"{s.gaps_found} gaps{'; ' + message if message else ''}")
        if final.error is not None and final.error.message:
            out.line(f"error: {final.error.message}")
    return EXIT_OK if ok else EXIT_JOB_FAILED


def _coverage(stored: v1.StoredSeries) -> float:
    step = TIMEFRAME_S.get(stored.timeframe)
    if not step or stored.first_bar_time is None or stored.last_bar_time is None:
        return float("nan")
    span = (stored.last_bar_time - stored.first_bar_time).total_seconds() // step + 1
    return stored.bar_count / span if span > 0 else float("nan")


def coverage(args: argparse.Namespace, out: Output) -> int:
    rows: list[dict[str, Any]] = []
    with client_for(args) as client:
        exchanges = args.exchange or [
            e.name.split("/")[-1] for e in client.ingestion.list_exchanges().exchanges]
        for exchange in exchanges:
            for market in client.ingestion.iterate("list_markets",
                                                   parent=f"exchanges/{exchange}"):
                if args.symbol and market.symbol not in args.symbol:
                    continue
                for s in market.stored:
                    if args.timeframe and s.timeframe != args.timeframe:
                        continue
                    rows.append({"exchange": exchange, "symbol": market.symbol,
                                 "timeframe": s.timeframe, "first": s.first_bar_time,
                                 "last": s.last_bar_time, "bars": s.bar_count,
                                 "coverage": _coverage(s)})
    if out.json:
        out.emit([{**r, "first": r["first"].isoformat() if r["first"] else None,
                   "last": r["last"].isoformat() if r["last"] else None} for r in rows])
        return EXIT_OK

    def when(t: datetime | None) -> str:
        return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if t else ""

    out.table(f"{len(rows)} stored series", ["exchange", "symbol", "timeframe", "first bar",
                                             "last bar", "bars", "coverage"],
              [(r["exchange"], r["symbol"], r["timeframe"], when(r["first"]), when(r["last"]),
                f"{r['bars']:,}", f"{r['coverage']:.2%}") for r in rows],
              numeric=["bars", "coverage"])
    return EXIT_OK


def parser() -> ArgumentParser:
    """The parser of the argparse-based ``data`` subcommands."""
    top = ArgumentParser(prog="usdcarb data", description=__doc__,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="action", metavar="backfill|coverage|quality|import")
    p = sub.add_parser("backfill", help="ingest a series through the gateway")
    p.add_argument("--exchange", required=True, help="ccxt id, e.g. binance")
    p.add_argument("--symbol", required=True, help="unified symbol, e.g. BTC/USDC")
    p.add_argument("--timeframe", default="1m")
    p.add_argument("--start", help="ISO date or time (UTC unless given)")
    p.add_argument("--end", help="ISO date or time, exclusive")
    p.add_argument("--incremental", action="store_true",
                   help="from the last stored bar up to now (or --end)")
    p.add_argument("--no-wait", action="store_true", help="print the job name and exit")
    p.set_defaults(handler=backfill)
    p = sub.add_parser("coverage", help="stored series and their coverage")
    p.add_argument("--exchange", action="append", default=[], help="only these (repeatable)")
    p.add_argument("--symbol", action="append", default=[], help="only these (repeatable)")
    p.add_argument("--timeframe", default="")
    p.set_defaults(handler=coverage)
    for name in DELEGATED:
        sub.add_parser(name, help=f"see usdcarb data {name} --help", add_help=False)
    for p in (sub.choices["backfill"], sub.choices["coverage"]):
        add_connection(p)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in DELEGATED:
        module_name, whole = DELEGATED[args[0]]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            sys.stderr.write(f"usdcarb data {args[0]}: not available in this build\n")
            return EXIT_USAGE
        # validation.cli takes "quality ..." itself; the others take what follows.
        code: int = module.main(args if whole else args[1:])
        return code
    return parse_and_run(parser(), args, "usdcarb data")
