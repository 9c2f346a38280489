"""End to end: 1M bars read from PostgreSQL and backtested through the gateway.

Starts its own Stack, loads two SYNTHETIC USDC/USDT venues of ``--bars`` 1m bars each
(derived from the real Binance.US series, tiled), then times RunBacktest through Envoy
over REST (NDJSON) and native gRPC, best of ``--repeat``, against the 1.5 s target. The
breakdown comes from the same code the service runs: DB read (binary COPY), align and
hash, engine, and store (one transaction); "stream" is the rest of the wall time
(job queueing, worker hand-off, pickling to the engine process, events through Envoy).
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
    from usdcarb.marketdata.reader import read_candles
    from usdcarb.platform.db import create_pool
    from usdcarb.v1 import backtest_pb2 as pb

    params = body["params"]
    cfg = json_format.ParseDict(body["config"], pb.BacktestConfig())
    legs = engine.required_series("cross-exchange-spread", params)
    spec = parse_config(cfg, legs)
    pool = await create_pool(dsn, 2, 4, search_path="backtest, public")
    try:
        t0 = time.perf_counter()

        async def one(v: str, s: str) -> Any:
            async with pool.acquire() as conn:
                return await read_candles(conn, exchange=v, symbol=s, timeframe="1m",
                                          start=spec.start, end=spec.end)

        candles = await asyncio.gather(*(one(v, s) for v, s in legs))
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
        return {"db read": t1 - t0, "align+hash": t2 - t1, "engine": t3 - t2,
                "columns": t4 - t3}
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
    import grpc
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
            with urllib.request.urlopen(req, timeout=60) as resp:
                return json.loads(resp.read())

        sid = f"bench-{uuid.uuid4().hex[:6]}"
        rest("POST", f"/v1/strategies?strategyId={sid}",
             {"displayName": "bench", "kind": "STRATEGY_KIND_CROSS_EXCHANGE_SPREAD"})
        version = rest("POST", f"/v1/strategies/{sid}/versions",
                       {"parameters": spread_params()})["name"]
        config = config_json(START_MS, START_MS + args.bars * 60_000)
        body = {"strategyVersion": version, "config": config, "progressInterval": "0.1s"}

        def run_rest() -> float:
            req = urllib.request.Request(info.gateway + "/v1/backtests:run", method="POST",
                                         data=json.dumps(body).encode(), headers=headers)
            t0 = time.perf_counter()
            with urllib.request.urlopen(req, timeout=300) as resp:
                lines = [json.loads(x) for x in resp if x.strip()]
            assert lines[-1]["completed"]["outcome"]["result"] == "RESULT_OK", lines[-1]
            return time.perf_counter() - t0

        request = json_format.ParseDict(body, pb.RunBacktestRequest())
        channel = grpc.insecure_channel(info.gateway.removeprefix("http://"))
        stub = backtest_pb2_grpc.BacktestServiceStub(channel)

        def run_grpc() -> float:
            t0 = time.perf_counter()
            events = list(stub.RunBacktest(request, metadata=(("authorization",
                                                                f"Bearer {token}"),),
                                           timeout=300))
            assert events[-1].completed.outcome.result == 1
            return time.perf_counter() - t0

        run_rest()  # warm-up: engine process caches, pools
        rest_s = min(run_rest() for _ in range(args.repeat))
        grpc_s = min(run_grpc() for _ in range(args.repeat))
        channel.close()
        parts = asyncio.run(_breakdown(info.dsn, args.bars, {
            "params": spread_params(), "config": config}))
        _say(f"end to end, {args.bars:,} bars x 2 venues, best of {args.repeat}:")
        for label, secs in (("REST NDJSON", rest_s), ("gRPC stream", grpc_s)):
            verdict = "OK" if secs <= TARGET_S else "over"
            _say(f"  {label:12s} {secs:6.3f}s  ({secs / TARGET_S:.2f} x the {TARGET_S}s "
                 f"target: {verdict})")
        known = sum(parts.values())
        _say("  breakdown (in-process, same code and data):")
        for k, v in parts.items():
            _say(f"    {k:12s} {v:6.3f}s")
        _say(f"    {'store+stream':12s} {max(0.0, rest_s - known):6.3f}s  (rest of the REST "
             "wall time: queue, hand-off, one-transaction store, events)")
        return 0
    finally:
        mesh.down()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
