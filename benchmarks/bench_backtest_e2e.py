"""End to end: backtests read from PostgreSQL and run through the gateway, per run size.

Starts its own Stack, loads two SYNTHETIC USDC/USDT venues of the largest of ``--sizes``
1m bars each (derived from the real Binance.US series, tiled), then for each size
(default 4,320 = 3 days, 1M and 5M bars per venue) times RunBacktest through Envoy over
REST (NDJSON) and native gRPC — from the request (it creates the job) to the last stream
event — best of ``--repeat``, and states it as a ratio to the engine's own time on the
same frame (the result's ``elapsed``), with the service's stage breakdown. The 2 x 1M
REST run is held against the 0.15 s target (issue 13). Cold start: the time the engine
takes to be ready (``python -m usdcarb.backtest.engine.warm``) on an empty numba cache
and on a warm one, the replica's own "ready in" from its log, and a warm restart: the
backtest replica stopped (SIGTERM) and started again, timed to SERVING, to the gateway
routing to it (its health check saw it up) and through its first backtest, held against
the 1 s target (``--no-cold`` skips the empty-cache compile, 1-2.5 min on two cores).

Two breakdowns. "service stages" is what the backtest service logged for the best run
(runner._Stages): load (memory or block-cache read onto the grid, hash), process (hand-off
to the engine process and back with the trade columns, of which engine), store (one
transaction: the trades written while the engine process encodes the curve columns and
the final event's curve, "encode", finish.py; then the curve, and commit) and publish; "queue+stream" is the rest of the wall time (create, queueing, events
through Envoy). "in-process" times the reads on the same data: a cold read (binary COPY
of market_data, what the block cache falls back to), a load from the block cache (placed
on the grid and hashed, into the shared-memory frame) and one from the replica's memory
of current blocks (marketmemo.py; a repeat of the same bars through the gateway loads
less still: the engine process holds the frame of its last job and is sent only its
key), then the engine, the result columns and their compact encoding one after the
other, and all that the engine process makes of a result side by side (finish).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

TARGET_S = 0.15          # 2 x 1M bars end to end through the gateway, warm
TARGET_BARS = 1_000_000
FIRST_AFTER_RESTART_S = 1.0   # the first backtest after a warm restart
INNER = ("engine", "encode")   # in the engine process: engine inside "process"; encode
                               # from the engine's end, beside "process" and "store"
TESTS = Path(__file__).resolve().parents[1] / "tests"  # the synthetic data helpers


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _start_ms(bars: int) -> int:
    """The first bar: the data ends a week before today (the block cache keeps only weeks
    that are over, as a real run's would be; years from the depeg run past today)."""
    week = 7 * 24 * 3_600_000
    return (int(time.time() * 1000) - bars * 60_000 - week) // week * week


async def _load(dsn: str, bars: int) -> None:
    import asyncpg

    from backtest.service.bt_helpers import SYMBOL, VENUES, load_bars, synthetic_pair

    conn = await asyncpg.connect(dsn)
    try:
        data = synthetic_pair(bars, gap_rate=0.001, start_ms=_start_ms(bars))
        step = 1_000_000   # bounded memory: the helper builds one Python row per bar
        for venue in VENUES:
            cols = data[venue]
            for lo in range(0, len(cols["ts"]), step):
                await load_bars(conn, "ingestion.market_data", venue, SYMBOL,
                                {k: v[lo:lo + step] for k, v in cols.items()})
    finally:
        await conn.close()


async def _settle(dsn: str, *, vacuum: bool = False) -> None:
    """Let PostgreSQL finish what a bulk write left it before anything is timed: vacuum
    and analyze the candles once loaded, and flush dirty pages (a checkpoint) so the
    timed runs do not share the cores with the background writer."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        if vacuum:
            await conn.execute("VACUUM (ANALYZE) ingestion.market_data")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def _breakdown(dsn: str, bars: int, body: dict[str, Any]) -> dict[str, float]:
    """Time the service's own stages in-process on the same data."""
    from google.protobuf import json_format

    from usdcarb.backtest import engine
    from usdcarb.backtest.colcodec import encode_columns
    from usdcarb.backtest.config import parse_config
    from usdcarb.backtest.finish import curves_of, finish
    from usdcarb.backtest.handoff import create_frame, discard, write_frame
    from usdcarb.backtest.loading import load_market
    from usdcarb.backtest.marketmemo import MarketMemo
    from usdcarb.backtest.results import equity_columns, trade_rows
    from usdcarb.marketdata.reader import read_candles
    from usdcarb.platform.db import create_pool
    from usdcarb.v1 import backtest_pb2 as pb

    params = body["params"]
    cfg = json_format.ParseDict(body["config"], pb.BacktestConfig())
    legs = engine.required_series("cross-exchange-spread", params)
    spec = parse_config(cfg, legs)
    pool = await create_pool(dsn, 2, 4, search_path="backtest, public")
    memo = MarketMemo(1 << 30)
    try:
        t = time.perf_counter()

        async def cold(v: str, s: str) -> Any:
            async with pool.acquire() as conn:
                return await read_candles(conn, exchange=v, symbol=s, timeframe="1m",
                                          start=spec.start, end=spec.end)

        async def load(m: MarketMemo | None) -> Any:
            made: list[Any] = []

            def buffers(n: int, k: int) -> Any:
                ref, *arrays = create_frame(n, legs)
                made.append(ref)
                return arrays

            try:
                return await load_market(
                    pool, legs, timeframe="1m", timeframe_ms=spec.timeframe_ms,
                    start_ms=spec.start_ms, end_ms=spec.end_ms,
                    table="ingestion.market_data", memo=m, buffers=buffers)
            finally:
                for ref in made:
                    discard(ref)

        await asyncio.gather(*(cold(v, s) for v, s in legs))
        t0 = time.perf_counter()
        await load(None)
        t1 = time.perf_counter()
        await load(memo)   # fills the memo
        t2 = time.perf_counter()
        loaded = await load(memo)
        t3 = time.perf_counter()
        frame = loaded.frame
        out = engine.run_backtest("cross-exchange-spread", params, spec.engine, frame)
        t4 = time.perf_counter()
        trade_rows(frame.time_ms, out.trades)
        columns = equity_columns(frame.time_ms, out)
        t5 = time.perf_counter()
        encode_columns(columns, out.extras.get("initial_equity"))
        t6 = time.perf_counter()
        ref = write_frame(frame)
        try:
            t7 = time.perf_counter()
            finish(ref, "backtests/bench", frame.time_ms, out)
            curves_of(ref.path)
            t8 = time.perf_counter()
        finally:
            discard(ref)
        return {"read (COPY)": t0 - t, "load (blocks)": t1 - t0,
                "load (memo)": t3 - t2, "engine": t4 - t3, "columns": t5 - t4,
                "encode": t6 - t5, "finish": t8 - t7}
    finally:
        await pool.close()


def _cold_start(empty: bool) -> float:
    """Seconds for a fresh process to have every kernel ready (compile or cache load)."""
    import os
    import subprocess
    import tempfile

    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="usdcarb-numba-") as tmp:
        if empty:
            env["NUMBA_CACHE_DIR"] = tmp
        t = time.perf_counter()
        # An empty cache as `make setup` fills it (two processes, then a check); a warm
        # one as an engine process loads it (one process).
        part = [] if empty else ["--part", "all"]
        subprocess.run([sys.executable, "-m", "usdcarb.backtest.engine.warm", *part], env=env,
                       check=True, capture_output=True, timeout=1800)
        return time.perf_counter() - t


def _elapsed(result: dict[str, Any]) -> float:
    """The engine's own time from a REST result (a Duration string like "0.012s")."""
    return float(str(result.get("elapsed", "0s")).rstrip("s") or 0.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="4320,1000000,5000000",
                        help="bars per venue of each run, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-cold", action="store_true",
                        help="skip the empty-cache compile timing")
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    args.bars = max(sizes)
    first_ms = _start_ms(args.bars)
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    logging.basicConfig(level=logging.WARNING)
    from google.protobuf import json_format

    from backtest.service.bt_helpers import config_json, spread_params
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
        asyncio.run(_settle(info.dsn, vacuum=True))
        _say(f"loaded 2 x {args.bars:,} synthetic bars in {time.perf_counter() - t:.1f}s")
        # admin: its heavy-request budget (100 a minute) holds every run of the bench; an
        # analyst's (20 a minute) would refuse the later ones (RESOURCE_EXHAUSTED).
        token = mint_dev_token("bench", ["admin"])
        headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}

        def rest(method: str, path: str, body: Any) -> Any:
            req = urllib.request.Request(
                info.gateway + path, method=method, headers=headers,
                data=None if body is None else json.dumps(body).encode())
            with urllib.request.urlopen(req, timeout=60, context=info.ssl_context()) as resp:
                return json.loads(resp.read())

        sid = f"bench-{uuid.uuid4().hex[:6]}"
        rest("POST", f"/v1/strategies?strategyId={sid}",
             {"displayName": "bench", "kind": "STRATEGY_KIND_CROSS_EXCHANGE_SPREAD"})
        version = rest("POST", f"/v1/strategies/{sid}/versions",
                       {"parameters": spread_params()})["name"]
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

        channel = info.channel()  # TLS with the stack's dev CA
        stub = backtest_pb2_grpc.BacktestServiceStub(channel)

        def body_for(bars: int) -> dict[str, Any]:
            return {"strategyVersion": version,
                    "config": config_json(first_ms, first_ms + bars * 60_000),
                    "progressInterval": "0.1s"}

        def run_rest(bars: int) -> tuple[float, float, dict[str, float]]:
            req = urllib.request.Request(info.gateway + "/v1/backtests:run", method="POST",
                                         data=json.dumps(body_for(bars)).encode(),
                                         headers=headers)
            t0 = time.perf_counter()
            with urllib.request.urlopen(req, timeout=600, context=info.ssl_context()) as resp:
                lines = [json.loads(x) for x in resp if x.strip()]
            wall = time.perf_counter() - t0
            done = lines[-1]["completed"]
            assert done["outcome"]["result"] == "RESULT_OK", lines[-1]
            return wall, _elapsed(done["result"]), stages()

        def run_grpc(bars: int) -> tuple[float, float]:
            request = json_format.ParseDict(body_for(bars), pb.RunBacktestRequest())
            t0 = time.perf_counter()
            events = list(stub.RunBacktest(request, metadata=(("authorization",
                                                                f"Bearer {token}"),),
                                           timeout=600))
            wall = time.perf_counter() - t0
            assert events[-1].completed.outcome.result == 1
            stages()   # consume its log line
            return wall, events[-1].completed.result.elapsed.ToNanoseconds() / 1e9

        ready = [line for line in service_log.read_text(errors="replace").splitlines()
                 if "ready in" in line]
        first_s, first_engine, first = run_rest(min(sizes))  # engine process, pools
        _say(f"first run ({min(sizes):,} bars): {first_s:.3f}s, engine {first_engine:.4f}s  "
             + ", ".join(f"{k} {v:.3f}s" for k, v in first.items()))
        _say(f"end to end, CreateBacktest to the last stream event, best of {args.repeat} "
             "(ratio = wall / the engine's own time on the same frame):")
        cold = {min(sizes): first}   # each range's first run: its data from the database
        for bars in sizes:
            # builds this range's blocks in the cache; the memo holds them after
            cold.setdefault(bars, run_rest(bars)[2])
            asyncio.run(_settle(info.dsn))   # (the blocks it wrote)
            rest_s, engine_s, rest_stages = min(run_rest(bars) for _ in range(args.repeat))
            grpc_s, grpc_engine = min(run_grpc(bars) for _ in range(args.repeat))
            target = ""
            if bars == TARGET_BARS:
                target = (f"  target {TARGET_S}s: "
                          f"{'OK' if rest_s <= TARGET_S else 'over'}")
            _say(f"  2 x {bars:>9,} bars  REST {rest_s:7.3f}s = {rest_s / engine_s:6.1f} x "
                 f"engine {engine_s:.4f}s   gRPC {grpc_s:7.3f}s = "
                 f"{grpc_s / grpc_engine:6.1f} x engine {grpc_engine:.4f}s{target}")
            # Beside the engine: the hand-off (process less engine and encode), encode,
            # store, publish, and queue+stream; held against loading the data.
            load_s = rest_stages.get("load", 0.0)
            outer = {k: v for k, v in rest_stages.items() if k not in INNER}
            queue_stream = max(0.0, rest_s - sum(outer.values()))
            beside = {"hand-off": max(0.0, rest_stages.get("process", 0.0)
                                      - rest_stages.get("engine", 0.0)),
                **{k: v for k, v in rest_stages.items() if k not in ("load", "process", "engine")},
                "queue+stream": queue_stream}
            slowest = max(beside, key=lambda k: beside[k], default="")
            _say("      stages: " + ", ".join(f"{k} {v:.4f}s" for k, v in rest_stages.items())
                 + f", queue+stream {queue_stream:.4f}s"
                 + (f"  (slowest beside the engine: {slowest} {beside[slowest]:.4f}s"
                    f"{'' if beside[slowest] <= load_s else ', slower than load'})"
                    if slowest else ""))
            # The same run's stages against the range's first load, from the database
            # (the best run above loaded from the replica's memo of it).
            first_load = cold[bars].get("load", 0.0)
            slowest_stored = max(("store", "encode", "publish"),
                                 key=lambda k: rest_stages.get(k, 0.0))
            _say(f"      its first run loaded the range from the database in {first_load:.4f}s"
                 f" (stages then: " + ", ".join(f"{k} {v:.4f}s" for k, v in cold[bars].items())
                 + f"); {slowest_stored} {rest_stages.get(slowest_stored, 0.0):.4f}s is "
                 f"{'faster' if rest_stages.get(slowest_stored, 0.0) <= first_load else 'slower'}"
                 " than that load")
        channel.close()
        if TARGET_BARS in sizes:
            parts = asyncio.run(_breakdown(info.dsn, TARGET_BARS, {
                "params": spread_params(),
                "config": config_json(first_ms, first_ms + TARGET_BARS * 60_000)}))
            _say(f"  in-process, 2 x {TARGET_BARS:,} bars, same code and data:")
            for k, v in parts.items():
                _say(f"    {k:12s} {v:6.3f}s")
        # A warm restart: the replica stopped (SIGTERM) and started again on the warm
        # cache, its first backtest sent through the gateway once it reports SERVING.
        mesh.stop_service("backtest")
        t = time.perf_counter()
        mesh.start_service("backtest")
        serving_s = time.perf_counter() - t
        # Until the gateway routes to it (its health check saw it up), asked on a cheap
        # route: a backtest's heavy-request budget would not last the polling.
        while True:
            try:
                rest("GET", "/v1/backtests?pageSize=1", None)
                break
            except urllib.error.HTTPError as exc:
                if exc.code != 503 or time.perf_counter() - t > 30:
                    raise
                time.sleep(0.01)
        routed_s = time.perf_counter() - t
        after_s, after_engine, after = run_rest(min(sizes))
        restarted = [line for line in service_log.read_text(errors="replace").splitlines()
                     if "ready in" in line][len(ready):]
        _say("cold start (every kernel ready in a fresh process):")
        for line in ready + restarted:
            try:
                _say(f"  stack's backtest replica: {json.loads(line)['message']}")
            except (ValueError, KeyError):
                _say(f"  stack's backtest replica: {line.strip()[:160]}")
        _say(f"  warm restart: SERVING {serving_s:.3f}s after the start, routed by the "
             f"gateway at {routed_s:.3f}s; its first backtest ({min(sizes):,} bars) "
             f"{after_s:.3f}s (engine {after_engine:.4f}s), {routed_s + after_s:.3f}s from "
             f"the start  target {FIRST_AFTER_RESTART_S}s: "
             f"{'OK' if after_s < FIRST_AFTER_RESTART_S else 'over'}")
        _say("    its stages: " + ", ".join(f"{k} {v:.3f}s" for k, v in after.items()))
        _say(f"  warm cache : {_cold_start(empty=False):6.1f}s")
        if not args.no_cold:
            _say(f"  empty cache: {_cold_start(empty=True):6.1f}s  (a fresh install before "
                 "'make setup' warmed it)")
        return 0
    finally:
        mesh.down()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
