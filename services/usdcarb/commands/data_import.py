"""``usdcarb data import binance|kraken``: import an exchange's bulk archive.

    usdcarb data import binance --symbol BTC/USDC --start 2024-01-01 --end 2024-04-01
    usdcarb data import binance --futures --symbol BTC/USDT:USDT --start 2024-03-01 --end 2024-03-08
    usdcarb data import kraken --symbol BTC/USDC --timeframe 5m --url https://…/Kraken_OHLCVT.zip

Starts an archive import (``CreateArchiveImport``) through the gateway and draws its
progress in files until the outcome; then prints every file that was not imported with
its reason. Binance reads ``--url`` (default https://data.binance.vision) with daily and
monthly zips checked against their .CHECKSUM; ``--path`` names a directory or zip on the
ingestion service's host (under its archive directory). Exit 0 when every file was
stored, 1 when the import failed or was cancelled (the files that were stored stay
stored), other codes: see usdcarb.commands.common.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

from usdcarb.commands.common import (
    EXIT_JOB_FAILED,
    EXIT_OK,
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

GRANULARITY = {"auto": v1.ArchiveGranularity.UNSPECIFIED,
               "daily": v1.ArchiveGranularity.DAILY,
               "monthly": v1.ArchiveGranularity.MONTHLY}


def _location(args: argparse.Namespace) -> str:
    if args.url and args.path:
        raise UsageError("expected --url or --path, not both")
    if args.path:
        return f"file://{Path(args.path).resolve()}"
    return str(args.url or "")


def build_import(args: argparse.Namespace) -> v1.ArchiveImport:
    """The ArchiveImport the options describe (refused locally when incomplete)."""
    if args.source == "binance":
        layout = (v1.ArchiveLayout.BINANCE_USDM if args.futures
                  else v1.ArchiveLayout.BINANCE_SPOT)
        exchange = "binanceusdm" if args.futures else "binance"
        if not (args.start and args.end):
            raise UsageError("expected --start and --end for a Binance archive")
    else:
        layout, exchange = v1.ArchiveLayout.KRAKEN_OHLCVT, "kraken"
        if not (args.url or args.path):
            raise UsageError("expected --url or --path of a Kraken OHLCVT zip")
        if bool(args.start) != bool(args.end):
            raise UsageError("expected both --start and --end, or neither")
    made = v1.ArchiveImport(
        source=v1.ArchiveSource(layout=layout, location=_location(args),
                                granularity=GRANULARITY[args.granularity]),
        series=v1.SeriesKey(exchange=exchange, symbol=args.symbol, timeframe=args.timeframe))
    if args.start and args.end:
        try:
            made.range = v1.TimeRange(start_time=parse_time(args.start),
                                      end_time=parse_time(args.end))
        except ValueError as exc:
            raise UsageError(f"expected ISO dates or times: {exc}") from None
    return made


def run(args: argparse.Namespace, out: Output) -> int:
    wanted = build_import(args)
    with client_for(args) as client:
        made = client.ingestion.create_archive_import(archive_import=wanted,
                                                      request_id=uuid.uuid4().hex)
        if args.no_wait:
            out.emit(made) if out.json else out.line(made.name)
            return EXIT_OK
        exchange = wanted.series.exchange if wanted.series else args.source
        out.note(f"{made.name}: {exchange} {args.symbol} {args.timeframe}")
        last: v1.ArchiveImportEvent | None = None
        with JobProgress(out, f"import {args.source} {args.symbol}") as progress:
            for event in client.ingestion.watch_archive_import(name=made.name):
                last = event
                imp = event.archive_import
                if imp is not None:
                    s = imp.stats or v1.ArchiveImportStats()
                    p = imp.progress or v1.Progress()
                    progress.update(p.fraction, f"{p.done}/{p.total} files  "
                                                f"{s.bars_stored:,} bars stored  "
                                                f"{s.files_failed} failed")
        ok = last is not None and last.outcome is not None and \
            last.outcome.result == v1.OutcomeResult.OK
        final = client.ingestion.get_archive_import(name=made.name)
    if out.json:
        out.emit(final)
        return EXIT_OK if ok else EXIT_JOB_FAILED
    s = final.stats or v1.ArchiveImportStats()
    out.line(f"{final.name} {final.state.name.lower()}: {s.files_stored} of {s.files_total} "
             f"files stored, {s.bars_stored:,} bars written, {s.bars_duplicate:,} already "
             f"stored, {s.bars_quarantined:,} quarantined ({s.bytes:,} bytes)")
    failed = [f for f in final.files if not f.stored]
    if failed:
        out.table(f"{len(failed)} files not imported (nothing of them stored)",
                  ["file", "reason", "why"], [(f.key, f.reason, f.message) for f in failed])
    if final.error is not None and final.error.message and not failed:
        out.line(f"error: {final.error.message}")
    return EXIT_OK if ok else EXIT_JOB_FAILED


def parser() -> ArgumentParser:
    top = ArgumentParser(prog="usdcarb data import", description=__doc__,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="source", metavar="binance|kraken")
    for name, help_ in (("binance", "Binance public data (data.binance.vision) klines"),
                        ("kraken", "Kraken's downloadable OHLCVT zip")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--symbol", required=True,
                       help="unified symbol, e.g. BTC/USDC (futures: BTC/USDT:USDT)")
        p.add_argument("--timeframe", default="1m")
        p.add_argument("--start", help="ISO date or time (UTC unless given)")
        p.add_argument("--end", help="ISO date or time, exclusive")
        p.add_argument("--url", help="Binance: base URL; Kraken: the zip's URL")
        p.add_argument("--path", help="a directory or zip on the ingestion service's host")
        p.add_argument("--no-wait", action="store_true", help="print the import name and exit")
        p.set_defaults(handler=run, futures=False, granularity="auto")
        if name == "binance":
            p.add_argument("--futures", action="store_true",
                           help="USDⓈ-M futures klines (data/futures/um) instead of spot")
            p.add_argument("--granularity", choices=sorted(GRANULARITY), default="auto",
                           help="monthly files for whole months, daily for the rest (auto)")
        add_connection(p)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(parser(), list(sys.argv[1:] if argv is None else argv),
                         "usdcarb data import")
