"""``usdcarb backfill``: start an ingest job through the gateway and follow it.

    usdcarb backfill --exchange binance --symbol USDC/USDT --timeframe 1m \\
        --start 2023-03-09 --end 2023-03-14 [--gateway https://localhost:8080] [--token JWT]

The gateway is called over TLS, trusting ``--cacert`` (default ``$USDCARB_CA_FILE``, else
the local stack's dev CA ``.run/stack/tls/ca.pem`` when it exists, else the system's
roots); an ``http://`` gateway is called in plaintext (a stack started with --plaintext).
Without ``--token`` a development token is minted (USDCARB_ENV dev/test only). The job
is followed with WatchIngestJob and drawn as a progress bar on a terminal (plain lines
otherwise). Exit status: 0 succeeded, 1 failed or cancelled, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import grpc
from google.protobuf import timestamp_pb2

from usdcarb.platform.tls import channel_credentials
from usdcarb.v1 import common_pb2 as cpb
from usdcarb.v1 import ingestion_pb2 as pb
from usdcarb.v1 import ingestion_pb2_grpc

STACK_CA = Path(__file__).resolve().parents[3] / ".run" / "stack" / "tls" / "ca.pem"

_RESULT = {cpb.Outcome.RESULT_OK: "succeeded", cpb.Outcome.RESULT_FAILED: "failed",
           cpb.Outcome.RESULT_CANCELLED: "cancelled"}


def _when(text: str) -> timestamp_pb2.Timestamp:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def bar(fraction: float, width: int = 30) -> str:
    """Return a text progress bar like ``[#########.........]  30.0%``."""
    f = min(1.0, max(0.0, fraction))
    filled = round(f * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {f * 100:5.1f}%"


class Progress:
    """Draw job events: one redrawn line on a terminal, one line per change otherwise."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._tty = out.isatty()
        self._last = ""

    def show(self, job: Any) -> None:
        s = job.stats
        line = (f"{bar(job.progress.fraction)} {s.bars_stored} stored, "
                f"{s.bars_quarantined} quarantined, {s.retries} retries")
        if line == self._last:
            return
        self._last = line
        self._out.write(("\r" + line) if self._tty else line + "\n")
        self._out.flush()

    def end(self) -> None:
        if self._tty:
            self._out.write("\n")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="usdcarb backfill", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exchange", required=True, help="ccxt id, e.g. binance")
    p.add_argument("--symbol", required=True, help="unified symbol, e.g. USDC/USDT")
    p.add_argument("--timeframe", default="1m")
    p.add_argument("--start", required=True, help="ISO date or time (UTC unless given)")
    p.add_argument("--end", required=True, help="ISO date or time, exclusive")
    p.add_argument("--gateway",
                   default=os.environ.get("USDCARB_GATEWAY", "https://localhost:8080"),
                   help="gateway URL or host:port (TLS unless http://)")
    p.add_argument("--cacert", type=Path, default=os.environ.get("USDCARB_CA_FILE") or (
        STACK_CA if STACK_CA.exists() else None), help="CA to trust (PEM)")
    p.add_argument("--token", default=os.environ.get("USDCARB_TOKEN", ""),
                   help="bearer token (default: a minted development token)")
    p.add_argument("--no-wait", action="store_true", help="print the job name and exit")
    return p.parse_args(argv)


async def backfill(args: argparse.Namespace, out: TextIO) -> int:
    token = args.token
    if not token:
        from usdcarb.gateway.devtoken import mint_dev_token

        token = mint_dev_token(os.environ.get("USER", "cli"), ["analyst"])
    metadata = (("authorization", f"Bearer {token}"),)
    request = pb.CreateIngestJobRequest(
        ingest_job=pb.IngestJob(
            series=cpb.SeriesKey(exchange=args.exchange, symbol=args.symbol,
                                 timeframe=args.timeframe),
            mode=pb.INGEST_MODE_BACKFILL,
            range=cpb.TimeRange(start_time=_when(args.start), end_time=_when(args.end))),
        request_id=uuid.uuid4().hex)
    async with gateway_channel(args.gateway, args.cacert) as channel:
        stub = ingestion_pb2_grpc.IngestionServiceStub(channel)  # type: ignore[no-untyped-call]
        job = await stub.CreateIngestJob(request, metadata=metadata)
        out.write(f"{job.name}: {args.exchange} {args.symbol} {args.timeframe} "
                  f"{args.start} .. {args.end}\n")
        if args.no_wait:
            return 0
        progress = Progress(out)
        last: Any = None
        sequence = 0
        while last is None or not last.HasField("outcome"):
            try:
                async for event in stub.WatchIngestJob(
                        pb.WatchIngestJobRequest(name=job.name, after_sequence=sequence),
                        metadata=metadata):
                    sequence, last = event.sequence, event
                    progress.show(event.job)
            except grpc.aio.AioRpcError as exc:  # reconnect after a dropped stream
                if exc.code() not in (grpc.StatusCode.UNAVAILABLE,
                                      grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise
                await asyncio.sleep(1)
        progress.end()
        result = _RESULT.get(last.outcome.result, "ended")
        out.write(f"{job.name} {result}: {last.job.progress.message}\n")
        if last.outcome.result == cpb.Outcome.RESULT_FAILED:
            out.write(f"error: {last.outcome.error.message}\n")
        return 0 if last.outcome.result == cpb.Outcome.RESULT_OK else 1


def gateway_channel(gateway: str, cacert: Path | None) -> grpc.aio.Channel:
    """Open a channel to ``gateway`` ("https://host:port", "http://host:port" or
    "host:port"): TLS trusting ``cacert`` (or the system's roots) unless http://."""
    parts = urlsplit(gateway if "://" in gateway else f"https://{gateway}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected a gateway URL or host:port, got {gateway!r}")
    tls = parts.scheme == "https"
    target = f"{parts.hostname}:{parts.port or (443 if tls else 80)}"
    if not tls:
        return grpc.aio.insecure_channel(target)
    credentials = (grpc.ssl_channel_credentials() if cacert is None
                   else channel_credentials(Path(cacert)))
    return grpc.aio.secure_channel(target, credentials)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        return asyncio.run(backfill(args, sys.stdout))
    except grpc.aio.AioRpcError as exc:
        sys.stderr.write(f"usdcarb backfill: {exc.code().name}: {exc.details()}\n")
        return 2 if exc.code() == grpc.StatusCode.INVALID_ARGUMENT else 1
