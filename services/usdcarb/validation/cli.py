"""``usdcarb data quality``: the quality report of one series, through the gateway.

    usdcarb data quality --exchange binance --symbol USDC/USDT [--timeframe 1m] \\
        [--start 2023-03-01 --end 2023-03-22] [--gateway https://localhost:8080] [--token JWT]

Prints coverage, gaps filled and unfilled, quarantined bars, issues by severity and rule,
the verdict with its stale/aliased/suspect spans, and the verdict history. The gateway
and token options are those of ``usdcarb backfill``. Exit status: 0 usable, 1 stale or
aliased somewhere in the range (a consumer must not take it as an independent price),
2 bad arguments or a failed call.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import grpc

from usdcarb.ingestion.cli import STACK_CA, _when, gateway_channel
from usdcarb.v1 import common_pb2 as cpb
from usdcarb.v1 import validation_pb2 as pb
from usdcarb.v1 import validation_pb2_grpc

_KIND = {v: k.removeprefix("SERIES_VERDICT_KIND_")
         for k, v in pb.SeriesVerdictKind.items()}


def _iso(ts: Any) -> str:
    return str(ts.ToDatetime().isoformat(timespec="minutes")) + "Z"


def _span(s: Any) -> str:
    line = (f"  {_KIND[s.verdict]:<8} {_iso(s.range.start_time)} .. {_iso(s.range.end_time)}"
            f"  {s.bars} bars")
    if s.twin.exchange:
        line += f"  twin {s.twin.exchange}:{s.twin.symbol} ({s.match_ratio:.1%})"
    return f"{line}\n    {s.reason}"


def render(q: pb.QualitySummary) -> str:
    """The report as text."""
    k = q.series
    stored = q.original_bars + q.filled_bars
    lines = [
        f"{k.exchange} {k.symbol} {k.timeframe}  {_iso(q.range.start_time)} .. "
        f"{_iso(q.range.end_time)}",
        f"verdict: {_KIND[q.verdict]}",
        f"coverage: {q.coverage:.2%} ({stored} of {q.expected_bars} bars: {q.original_bars} "
        f"original, {q.filled_bars} filled; {q.missing_bars} missing in {q.open_gaps} open "
        "gaps)",
        f"gaps: {q.filled_gaps} filled, {q.unfilled_gaps} unfilled; quarantined bars: "
        f"{q.quarantined_bars}; zero-volume bars: {q.zero_volume_bars}",
        "issues: " + (", ".join(f"{s.removeprefix('SEVERITY_')} {n}"
                                for s, n in sorted(q.issues_by_severity.items())) or "none")
        + ("  (" + ", ".join(f"{r} {n}" for r, n in sorted(q.issues_by_rule.items())) + ")"
           if q.issues_by_rule else ""),
        "spans:" + ("" if q.verdict_spans else " none (usable)"),
        *(_span(s) for s in q.verdict_spans),
        "verdict history:" + ("" if q.verdict_history else " none"),
        *(f"  {_iso(c.change_time)} {c.change} {_KIND[c.span.verdict]} "
          f"{_iso(c.span.range.start_time)} .. {_iso(c.span.range.end_time)}"
          + (f" twin {c.span.twin.exchange}:{c.span.twin.symbol}" if c.span.twin.exchange
             else "") for c in q.verdict_history),
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="usdcarb data quality", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exchange", required=True)
    p.add_argument("--symbol", required=True)
    p.add_argument("--timeframe", default="1m")
    p.add_argument("--start", help="ISO date or time (default: everything stored)")
    p.add_argument("--end", help="ISO date or time, exclusive")
    p.add_argument("--gateway",
                   default=os.environ.get("USDCARB_GATEWAY", "https://localhost:8080"))
    p.add_argument("--cacert", type=Path, default=os.environ.get("USDCARB_CA_FILE") or (
        STACK_CA if STACK_CA.exists() else None))
    p.add_argument("--token", default=os.environ.get("USDCARB_TOKEN", ""))
    args = p.parse_args(argv)
    if (args.start is None) != (args.end is None):
        p.error("expected both --start and --end, or neither")
    return args


async def quality(args: argparse.Namespace, out: TextIO) -> int:
    token = args.token
    if not token:
        from usdcarb.gateway.devtoken import mint_dev_token

        token = mint_dev_token(os.environ.get("USER", "cli"), ["viewer"])
    request = pb.GetQualitySummaryRequest(series=cpb.SeriesKey(
        exchange=args.exchange, symbol=args.symbol, timeframe=args.timeframe))
    if args.start:
        request.range.CopyFrom(cpb.TimeRange(start_time=_when(args.start),
                                             end_time=_when(args.end)))
    async with gateway_channel(args.gateway, args.cacert) as channel:
        stub = validation_pb2_grpc.ValidationServiceStub(channel)  # type: ignore[no-untyped-call]
        report = await stub.GetQualitySummary(
            request, metadata=(("authorization", f"Bearer {token}"),))
    out.write(render(report))
    bad = {pb.SERIES_VERDICT_KIND_STALE, pb.SERIES_VERDICT_KIND_ALIASED}
    return 1 if report.verdict in bad else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "quality":
        sys.stderr.write("usage: usdcarb data quality --exchange X --symbol A/B "
                         "[--timeframe 1m] [--start T --end T]\n")
        return 2
    try:
        return asyncio.run(quality(parse_args(args[1:]), sys.stdout))
    except grpc.aio.AioRpcError as exc:
        sys.stderr.write(f"usdcarb data quality: {exc.code().name}: {exc.details()}\n")
        return 2
