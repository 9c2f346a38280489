"""End to end: 1M bars read from PostgreSQL and backtested through the gateway.

Starts its own Stack, loads two SYNTHETIC USDC/USDT venues of ``--bars`` 1m bars each
(derived from the real Binance.US series, tiled), then times RunBacktest through Envoy
over REST (NDJSON) and native gRPC, best of ``--repeat``, against the 1.5 s target.

Two breakdowns. "service stages" is what the backtest service logged for the best run
(runner._Stages): load (block-cache read, align, hash), process (hand-off to the engine
process and back, of which engine), store (one transaction) and publish; "queue+stream"
is the rest of the wall time (submit, queueing, events through Envoy). "in-process" times
the reads on the same data: a cold read (binary COPY of market_data, what the cache
falls back to) against a warm block-cache read, then align+hash and the engine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

TARGET_S = 1.5
TESTS = Path(__file__).resolve().parents[1] / "tests"  # the synthetic data helpers


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def _load(dsn: str, bars: int) -> None:
    import asyncpg

    from backtest.service.bt_helpers import SYMBOL, VENUES, load_bars, synthetic_pair

    conn = await asyncpg.connect(dsn)
    try:
        data = synthetic_pair(bars, gap_rate=0.001)
        for venue in VENUES:
            await load_bars(conn, "ingestion.market_data", venue, SYMBOL, data[venue])
    finally:
        await conn.close()


async def _breakdown(dsn: str, bars: int, body: dict[str, Any]) -> dict[str, float]:
    """Time the service's own stages in-process on the same data."""
    from google.protobuf import json_format

    from usdcarb.backtest import engine
    from usdcarb.backtest.config import parse_config
    from usdcarb.backtest.loading import align, snapshot_hash
    from usdcarb.backtest.runner import equity_columns, trade_rows
    from usdcarb.marketdata.cache import CandleCache
    from usdcarb.marketdata.reader import read_candles
    from usdcarb.platform.db import create_pool
    from usdcarb.v1 import backtest_pb2 as pb

    params = body["params"]
    cfg = json_format.ParseDict(body["config"], pb.BacktestConfig())
    legs = engine.required_series("cross-exchange-spread", params)
    spec = parse_config(cfg, legs)
    pool = await create_pool(dsn, 2, 4, search_path="backtest, public")
    cache = CandleCache(table="ingestion.market_data", blocks="ingestion.candle_blocks")
    try:
        t = time.perf_counter()

        async def cold(v: str, s: str) -> Any:
            async with pool.acquire() as conn:
                return await read_candles(conn, exchange=v, symbol=s, timeframe="1m",
                                          start=spec.start, end=spec.end)

        async def warm(v: str, s: str) -> Any:
            async with pool.acquire() as conn:
                return await cache.read(conn, exchange=v, symbol=s, timeframe="1m",
                                        timeframe_ms=spec.timeframe_ms, start=spec.start,
                                        end=spec.end)

        await asyncio.gather(*(cold(v, s) for v, s in legs))
        t0 = time.perf_counter()
        candles = await asyncio.gather(*(warm(v, s) for v, s in legs))
        t1 = time.perf_counter()
        frame = align(legs, candles, start_ms=spec.start_ms, end_ms=spec.end_ms,
                      timeframe_ms=spec.timeframe_ms)
        snapshot_hash(legs, candles, "1m", spec.start_ms, spec.end_ms)
        t2 = time.perf_counter()
        out = engine.run_backtest("cross-exchange-spread", params, spec.engine, frame)
        t3 = time.perf_counter()
        trade_rows(frame.time_ms, out.trades)
        equity_columns(frame.time_ms, out)
        t4 = time.perf_counter()
        return {"read (COPY)": t0 - t, "read (cache)": t1 - t0, "align+hash": t2 - t1,
                "engine": t3 - t2, "columns": t4 - t3}
    finally:
        await pool.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    logging.basicConfig(level=logging.WARNING)
    from google.protobuf import json_format

    from backtest.service.bt_helpers import START_MS, config_json, spread_params
    from usdcarb.devstack import free_port, scratch_dir
    from usdcarb.devstack.stack import Stack
    from usdcarb.gateway.devtoken import mint_dev_token
    from usdcarb.v1 import backtest_pb2 as pb
    from usdcarb.v1 import backtest_pb2_grpc

    root = scratch_dir("usdcarb-bench-bt-")
    mesh = Stack(root / "stack", gateway_port=free_port(), fast_postgres=True)
    try:
        info = mesh.up()
        t = time.perf_counter()
        asyncio.run(_load(info.dsn, args.bars))
        _say(f"loaded 2 x {args.bars:,} synthetic bars in {time.perf_counter() - t:.1f}s")
        token = mint_dev_token("bench", ["analyst"])
        headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}

        def rest(method: str, path: str, body: Any) -> Any:
            req = urllib.request.Request(info.gateway + path, method=method,
                                         data=json.dumps(body).encode(), headers=headers)
            with urllib.request.urlopen(req, timeout=60, context=info.ssl_context()) as resp:
                return json.loads(resp.read())

        sid = f"bench-{uuid.uuid4().hex[:6]}"
        rest("POST", f"/v1/strategies?strategyId={sid}",
             {"displayName": "bench", "kind": "STRATEGY_KIND_CROSS_EXCHANGE_SPREAD"})
        version = rest("POST", f"/v1/strategies/{sid}/versions",
                       {"parameters": spread_params()})["name"]
        config = config_json(START_MS, START_MS + args.bars * 60_000)
        body = {"strategyVersion": version, "config": config, "progressInterval": "0.1s"}

        service_log = mesh.logs / "backtest.log"

        seen = [0]

        def stages() -> dict[str, float]:
            """The stages the service logged for the backtest that just ended (the log
            line may land just after the last event)."""
            deadline = time.monotonic() + 5.0
            while True:
                found = [json.loads(line)["stages"] for line in
                         service_log.read_text(errors="replace").splitlines()
                         if '"stages"' in line]
                if len(found) > seen[0] or time.monotonic() > deadline:
                    seen[0] = len(found)
                    return found[-1] if found else {}
                time.sleep(0.02)

        def run_rest() -> tuple[float, dict[str, float]]:
            req = urllib.request.Request(info.gateway + "/v1/backtests:run", method="POST",
                                         data=json.dumps(body).encode(), headers=headers)
            t0 = time.perf_counter()
            with urllib.request.urlopen(req, timeout=300, context=info.ssl_context()) as resp:
                lines = [json.loads(x) for x in resp if x.strip()]
            assert lines[-1]["completed"]["outcome"]["result"] == "RESULT_OK", lines[-1]
            assert sum("progress" in x for x in lines) >= 2, "expected progress events"
            return time.perf_counter() - t0, stages()

        request = json_format.ParseDict(body, pb.RunBacktestRequest())
        channel = info.channel()  # TLS with the stack's dev CA
        stub = backtest_pb2_grpc.BacktestServiceStub(channel)

        def run_grpc() -> tuple[float, dict[str, float]]:
            t0 = time.perf_counter()
            events = list(stub.RunBacktest(request, metadata=(("authorization",
                                                                f"Bearer {token}"),),
                                           timeout=300))
            assert events[-1].completed.outcome.result == 1
            return time.perf_counter() - t0, stages()

        first_s, first = run_rest()  # warm-up: engine process, pools, builds the blocks
        _say(f"first run (cold cache, builds blocks): {first_s:.3f}s  "
             + ", ".join(f"{k} {v:.3f}s" for k, v in first.items()))
        rest_s, rest_stages = min(run_rest() for _ in range(args.repeat))
        grpc_s, _ = min(run_grpc() for _ in range(args.repeat))
        channel.close()
        parts = asyncio.run(_breakdown(info.dsn, args.bars, {
            "params": spread_params(), "config": config}))
        _say(f"end to end, {args.bars:,} bars x 2 venues, best of {args.repeat}:")
        for label, secs in (("REST NDJSON", rest_s), ("gRPC stream", grpc_s)):
            verdict = "OK" if secs <= TARGET_S else "over"
            _say(f"  {label:12s} {secs:6.3f}s  ({secs / TARGET_S:.2f} x the {TARGET_S}s "
                 f"target: {verdict})")
        _say("  service stages of the best REST run (from its log):")
        for k, v in rest_stages.items():
            _say(f"    {k:12s} {v:6.3f}s" + ("  (inside process)" if k == "engine" else ""))
        known = sum(v for k, v in rest_stages.items() if k != "engine")
        _say(f"    {'queue+stream':12s} {max(0.0, rest_s - known):6.3f}s  (rest of the wall "
             "time: submit, queueing, events through Envoy)")
        _say("  in-process, same code and data:")
        for k, v in parts.items():
            _say(f"    {k:12s} {v:6.3f}s")
        return 0
    finally:
        mesh.down()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
