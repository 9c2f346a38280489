"""Validation throughput: ValidateCandles in-process (gRPC, real PostgreSQL context reads)
for a 1,000-bar page and a 100,000-bar range, against a plain numpy pass over the same
arrays (the per-bar checks alone: the ceiling)."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import time
from pathlib import Path

import numpy as np

from usdcarb.devstack import PostgresServer, scratch_dir
from usdcarb.platform.db import create_pool
from usdcarb.platform.migrations import apply_migrations
from usdcarb.platform.testing import start_in_process
from usdcarb.v1 import common_pb2 as cpb
from usdcarb.v1 import validation_pb2 as pb
from usdcarb.v1 import validation_pb2_grpc
from usdcarb.validation.main import SERVICE, build

SERVICES = Path(__file__).resolve().parents[1] / "services" / "usdcarb"
M = 60_000
T0 = 1_678_406_400_000


class NoEvents:
    async def publish(self, event: object) -> None:
        return None


def arrays(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    close = np.exp(np.cumsum(rng.normal(0, 3e-4, n)))
    open_ = np.r_[close[0], close[:-1]]
    return {"open_time_ms": T0 + M * np.arange(n, dtype=np.int64), "open": open_,
            "high": np.maximum(open_, close) * 1.0002, "low": np.minimum(open_, close) * 0.9998,
            "close": close, "volume": rng.uniform(0, 10, n)}


def numpy_pass(a: dict[str, np.ndarray], now_ms: int) -> int:
    """The per-bar rules as bare vector operations: what a validator cannot beat."""
    ok = np.ones(len(a["close"]), bool)
    for name in ("open", "high", "low", "close", "volume"):
        ok &= np.isfinite(a[name]) & (a[name] >= 0)
    ok &= a["high"] >= np.maximum(a["open"], a["close"])
    ok &= a["low"] <= np.minimum(a["open"], a["close"])
    ok &= (a["open_time_ms"] % M == 0) & (a["open_time_ms"] <= now_ms)
    return int(ok.sum())


def request(a: dict[str, np.ndarray]) -> pb.ValidateCandlesRequest:
    key = cpb.SeriesKey(exchange="binance", symbol="USDC/USDT", timeframe="1m")
    cols = cpb.CandleColumns(**{k: v.astype("<i8" if k == "open_time_ms" else "<f8").tobytes()
                                for k, v in a.items()})
    return pb.ValidateCandlesRequest(batch=cpb.CandleBatch(series=key, columns=cols,
                                                           count=len(a["close"])))


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


async def measure(dsn: str, repeats: int) -> list[tuple[str, float, float]]:
    market = await create_pool(dsn, 1, 4, search_path="bench_ingestion, public")
    quality = await create_pool(dsn, 1, 4, search_path="bench_validation, public")
    await apply_migrations(market, "bench_ingestion", SERVICES / "ingestion" / "migrations")
    await apply_migrations(quality, "bench_validation", SERVICES / "validation" / "migrations")
    out = []
    try:
        register = build(quality, NoEvents(), table="bench_ingestion.market_data")
        async with await start_in_process([SERVICE], register) as server:
            async with server.channel() as channel:
                stub = validation_pb2_grpc.ValidationServiceStub(channel)
                now = int(time.time() * 1000)
                for n, reps in ((1_000, repeats), (100_000, max(1, repeats // 20))):
                    a = arrays(n)
                    req = request(a)
                    got = await stub.ValidateCandles(req)  # warm-up
                    assert got.accepted_count == n, got.accepted_count
                    t = time.perf_counter()
                    for _ in range(reps):
                        await stub.ValidateCandles(req)
                    service = rate(n * reps, time.perf_counter() - t)
                    t = time.perf_counter()
                    for _ in range(reps * 20):
                        numpy_pass(a, now)
                    ceiling = rate(n * reps * 20, time.perf_counter() - t)
                    out.append((f"{n:,}-bar batch", service, ceiling))
    finally:
        await market.close()
        await quality.close()
    return out


def new_rules_cost(n: int) -> tuple[float, float]:
    """Domain throughput on ``n`` bars: today's rules (validate_stored with one other
    venue) and the new ones on top (series verdicts against an alias candidate, and the
    implied cross of a stablecoin pair from two legs). Return both in bars/s."""
    from usdcarb.validation.domain.implied_cross import implied_cross
    from usdcarb.validation.domain.model import Bars, Thresholds
    from usdcarb.validation.domain.validate import validate_stored
    from usdcarb.validation.domain.verdicts import series_spans

    def bars_of(a: dict[str, np.ndarray]) -> Bars:
        return Bars.of(a["open_time_ms"], a["open"], a["high"], a["low"], a["close"],
                       a["volume"])

    th = Thresholds()
    own = bars_of(arrays(n))
    rng = np.random.default_rng(2)
    other = bars_of({k: (v * (1 + rng.normal(0, 1e-4, n)) if k != "open_time_ms" else v)
                     for k, v in arrays(n).items()})
    t0, t1 = int(own.open_time_ms[0]), int(own.open_time_ms[-1]) + M
    t = time.perf_counter()
    _, findings = validate_stored(own, tf_ms=M, now_ms=t1 + M, start_ms=t0, end_ms=t1,
                                  others={"other": other}, th=th)
    today = time.perf_counter() - t
    t = time.perf_counter()
    series_spans(own, M, ("binance", "USDC/USDT"), {("binance", "USDC/USD"): other},
                 [f.bar_time_ms for f in findings if f.index >= 0], th)
    implied_cross(own, np.arange(n, dtype=np.int64), [(other, own)], th)
    extra = time.perf_counter() - t
    return rate(n, today), rate(n, today + extra)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--new-rules-bars", type=int, default=1_000_000)
    parser.add_argument("--new-rules-only", action="store_true",
                        help="only the domain comparison of today's rules and the new ones")
    args, _ = parser.parse_known_args(argv)
    today, with_new = new_rules_cost(args.new_rules_bars)
    print(f"{'rules on ' + format(args.new_rules_bars, ',') + ' bars':<30}{'bars/s':>14}")
    print(f"{'today (validate_stored, 2 venues)':<36}{today:>14,.0f}")
    print(f"{'today + verdicts + implied cross':<36}{with_new:>14,.0f}")
    print(f"new rules cost {today / with_new - 1:.1%} of today's time (target <= 25 %)")
    if args.new_rules_only:
        return 0
    root = scratch_dir("usdcarb-bench-validation-")
    server = PostgresServer(root / "pg", fast=True)
    try:
        server.start()
        server.create_database("usdcarb")
        server.psql("CREATE EXTENSION IF NOT EXISTS timescaledb", database="usdcarb")
        rows = asyncio.run(measure(server.dsn("usdcarb"), args.repeats))
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"{'batch':<18}{'ValidateCandles bars/s':>24}{'numpy pass bars/s':>20}{'ratio':>8}")
    for name, service, ceiling in rows:
        print(f"{name:<18}{service:>24,.0f}{ceiling:>20,.0f}{service / ceiling:>8.3f}")
    print("ValidateCandles runs every rule (per-bar, duplicates, stored conflicts, stale, "
          "spikes on a robust rolling scale) and reads +-1440 stored bars of context; the "
          "numpy pass is the per-bar checks only.")
    return 0
