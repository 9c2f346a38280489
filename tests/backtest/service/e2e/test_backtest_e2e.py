"""The backtest service through Envoy: REST NDJSON and gRPC streams, watch from another
connection, bad input, and a replica SIGKILLed mid-job (a process this test starts)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
from google.protobuf import duration_pb2, json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc

from backtest.service.bt_helpers import (
    START_MS,
    SYMBOL,
    VENUES,
    config_json,
    load_bars,
    spread_params,
    synthetic_pair,
)
from usdcarb.backtest.engine import _cache
from usdcarb.backtest.service import SERVICE
from usdcarb.devstack import free_port
from usdcarb.devstack.ports import child_pids, pid_alive
from usdcarb.devstack.stack import REPO, StackInfo
from usdcarb.gateway.devtoken import mint_dev_token
from usdcarb.v1 import backtest_pb2 as pb
from usdcarb.v1 import backtest_pb2_grpc, common_pb2

pytestmark = pytest.mark.e2e

BARS = 20_000
END_MS = START_MS + BARS * 60_000


def http(stack: StackInfo, method: str, path: str, token: str, body: Any = None
         ) -> tuple[int, Any]:
    req = urllib.request.Request(
        stack.gateway + path, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw, code = resp.read(), resp.status
    except urllib.error.HTTPError as err:
        raw, code = err.read(), err.code
    return code, json.loads(raw or b"null")


def ndjson(stack: StackInfo, method: str, path: str, token: str, body: Any = None
           ) -> list[dict[str, Any]]:
    req = urllib.request.Request(
        stack.gateway + path, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        assert resp.status == 200
        return [json.loads(line) for line in resp if line.strip()]


@pytest.fixture(scope="module")
def token() -> str:
    return mint_dev_token("bt-e2e-analyst", ["analyst"])


@pytest.fixture(scope="module")
def bars(stack: StackInfo) -> None:
    async def load() -> None:
        conn = await asyncpg.connect(stack.dsn)
        try:
            data = synthetic_pair(BARS)
            for venue in VENUES:
                await conn.execute("DELETE FROM ingestion.market_data WHERE exchange = $1", venue)
                await load_bars(conn, "ingestion.market_data", venue, SYMBOL, data[venue])
        finally:
            await conn.close()

    asyncio.run(load())


@pytest.fixture(scope="module")
def version(stack: StackInfo, token: str, bars: None) -> str:
    sid = f"bt-e2e-{uuid.uuid4().hex[:6]}"
    code, body = http(stack, "POST", f"/v1/strategies?strategyId={sid}", token,
                      {"displayName": "e2e spread", "kind": "STRATEGY_KIND_CROSS_EXCHANGE_SPREAD"})
    assert code == 200, body
    code, body = http(stack, "POST", f"/v1/strategies/{sid}/versions", token,
                      {"parameters": spread_params()})
    assert code == 200, body
    return str(body["name"])


def run_body(version: str, **overrides: Any) -> dict[str, Any]:
    return {"strategyVersion": version, "config": config_json(START_MS, END_MS, **overrides),
            "progressInterval": "0s"}


def test_rest_streams_ndjson_and_grpc_gets_the_same_events(
        stack: StackInfo, token: str, version: str) -> None:
    lines = ndjson(stack, "POST", "/v1/backtests:run", token, run_body(version))
    assert lines[0]["state"] == "JOB_STATE_QUEUED"
    assert any("progress" in line and line["progress"]["progress"].get("total") == str(BARS)
               for line in lines)
    last = lines[-1]
    assert last["completed"]["outcome"]["result"] == "RESULT_OK"
    result = last["completed"]["result"]
    assert result["bars"] == str(BARS) and int(result["tradeCount"]) > 0
    assert [int(line["sequence"]) for line in lines] == sorted(
        {int(line["sequence"]) for line in lines})

    metadata = (("authorization", f"Bearer {token}"),)
    request = json_format.ParseDict(run_body(version), pb.RunBacktestRequest())
    with stack.channel() as channel:
        stub = backtest_pb2_grpc.BacktestServiceStub(channel)
        events = list(stub.RunBacktest(request, metadata=metadata, timeout=120))
        assert events[-1].completed.outcome.result == common_pb2.Outcome.RESULT_OK
        got = json_format.MessageToDict(events[-1].completed.result,
                                        always_print_fields_with_no_presence=True)
        assert got["fingerprint"] == result["fingerprint"]  # same inputs, same identity
        assert got["metrics"] == result["metrics"]  # and the same numbers
        # A second connection watches the finished job: its last message at once.
        with stack.channel() as other:
            watched = list(backtest_pb2_grpc.BacktestServiceStub(other).WatchBacktest(
                pb.WatchBacktestRequest(name=events[-1].backtest), metadata=metadata,
                timeout=30))
        assert watched[-1] == events[-1]
    rest_watch = ndjson(stack, "GET", f"/v1/{last['backtest']}:watch", token)
    assert rest_watch == lines
    # The same events as Server-Sent Events for a caller that asks for them.
    req = urllib.request.Request(stack.gateway + f"/v1/{last['backtest']}:watch", headers={
        "authorization": f"Bearer {token}", "accept": "text/event-stream"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        body = resp.read().decode()
    events = [chunk.removeprefix("data: ") for chunk in body.split("\n\n") if chunk.strip()]
    assert [json.loads(event) for event in events] == lines


def test_bad_input_through_the_gateway(stack: StackInfo, token: str, version: str) -> None:
    sid = version.split("/")[1]
    unknown = f"strategies/{sid}/versions/ffffffffffffffff"
    # A stream refused before its first message: Envoy answers with the status as JSON
    # (HTTP 200 for a streaming route); the unary CreateBacktest maps it to 404/400.
    code, body = http(stack, "POST", "/v1/backtests:run", token, run_body(unknown))
    assert body["code"] == 5, body  # NOT_FOUND
    assert any(d.get("resourceName", "").endswith("ffffffffffffffff") for d in body["details"])
    code, body = http(stack, "POST", "/v1/backtests", token,
                      {"strategyVersion": unknown, "config": config_json(START_MS, END_MS)})
    assert code == 404 and body["code"] == 5, body
    code, body = http(stack, "POST", "/v1/backtests", token, {
        "strategyVersion": version, "config": config_json(START_MS - 86_400_000, START_MS)})
    assert code == 400 and body["code"] == 9, body  # FAILED_PRECONDITION
    pf = next(d for d in body["details"] if "PreconditionFailure" in d["@type"])
    assert {v["subject"] for v in pf["violations"]} == {f"{v}:{SYMBOL}:1m" for v in VENUES}
    bad = config_json(START_MS, END_MS)
    bad["venues"][0]["takerFeeBps"] = -3
    code, body = http(stack, "POST", "/v1/backtests", token,
                      {"strategyVersion": version, "config": bad})
    assert code == 400 and body["code"] == 3, body  # INVALID_ARGUMENT
    br = next(d for d in body["details"] if "BadRequest" in d["@type"])
    assert br["fieldViolations"][0]["field"] == "backtest.config.venues[0].taker_fee_bps"
    code, body = http(stack, "POST", "/v1/backtests:run", token,
                      {"strategyVersion": version, "config": bad})
    assert body["code"] == 3, body


def test_rest_cancel_stops_a_running_sweep_and_frees_the_worker(
        stack: StackInfo, token: str, version: str) -> None:
    """Through Envoy: a long sweep holds the stack's only engine process while a backtest
    waits behind it; cancelling the sweep over REST ends its watch with RESULT_CANCELLED
    and lets the waiting backtest run to the end."""
    grid = [float(x) for x in range(5, 1005)]  # 1,000 x 5 combinations: minutes of work
    code, sweep = http(stack, "POST", "/v1/sweeps", token, {
        "strategyVersion": version, "config": config_json(START_MS, END_MS),
        "axes": [{"path": "entryBps", "values": grid},
                 {"path": "exitBps", "values": [0.5, 1, 2, 3, 4]}]})
    assert code == 200, sweep
    total = len(grid) * 5
    req = urllib.request.Request(stack.gateway + f"/v1/{sweep['name']}:watch",
                                 headers={"authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        for raw in resp:
            line = json.loads(raw)
            if line["state"] == "JOB_STATE_RUNNING" and int(
                    line.get("progress", {}).get("done", "0")) > 0:
                break
    code, waiting = http(stack, "POST", "/v1/backtests", token,
                         {"strategyVersion": version, "config": config_json(START_MS, END_MS)})
    assert code == 200, waiting
    code, cancelled = http(stack, "POST", f"/v1/{sweep['name']}:cancel", token, {})
    # A sweep split into chunks stops when its running chunks see the cancel: the reply may
    # still say RUNNING; the watch below ends with the outcome either way.
    assert code == 200 and cancelled["state"] in ("JOB_STATE_CANCELLED",
                                                  "JOB_STATE_RUNNING"), cancelled
    events = ndjson(stack, "GET", f"/v1/{sweep['name']}:watch", token)
    assert events[-1]["outcome"]["result"] == "RESULT_CANCELLED"
    stopped = events[-1]["progress"]  # where the work stopped, not the queued snapshot
    assert stopped["unit"] == "combinations" and stopped["total"] == str(total)
    assert 0 < int(stopped["done"]) < total
    finished = ndjson(stack, "GET", f"/v1/{waiting['name']}:watch", token)
    assert finished[-1]["completed"]["outcome"]["result"] == "RESULT_OK"
    code, after = http(stack, "GET", f"/v1/{sweep['name']}", token)
    assert code == 200 and after["state"] == "JOB_STATE_CANCELLED"
    assert after["progress"] == stopped


def _tree(root: int) -> dict[int, tuple[int, str]]:
    """The descendants of ``root``: pid -> (parent pid, command line)."""
    found: dict[int, tuple[int, str]] = {}
    todo = [root]
    while todo:
        parent = todo.pop()
        for pid in child_pids(parent):
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
            except OSError:
                continue
            found[pid] = (parent, cmd)
            todo.append(pid)
    return found


@pytest.fixture
def replicas(stack: StackInfo) -> Iterator[Any]:
    """Start backtest replicas of our own on the stack's stores, with their own queue."""
    prefix = f"usdcarb:e2ekill:{uuid.uuid4().hex[:6]}"
    started: list[tuple[subprocess.Popen[bytes], int]] = []

    def start(name: str, **extra_env: str) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        env = {**os.environ, **extra_env,
               "PYTHONPATH": os.pathsep.join(str(REPO / p) for p in
                                             ("services", "gen/python", "clients/python")),
               # As the stack runs backtest (peers, stores, its certificate), on its own port.
               **stack.service_env("backtest"),
               "USDCARB_BACKTEST_GRPC_PORT": str(port), "USDCARB_BACKTEST_METRICS_PORT": "-1",
               "USDCARB_BACKTEST_REDIS_PREFIX": prefix, "USDCARB_BACKTEST_CLAIM_IDLE_S": "2",
               "USDCARB_BACKTEST_LOG_JSON": "false"}
        log = open(f"{stack.root}/logs/bt-replica-{name}.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "usdcarb.backtest.main"], env=env,
                                cwd=REPO, stdout=log, stderr=log, start_new_session=True)
        log.close()
        started.append((proc, port))
        deadline = time.monotonic() + 60
        while True:
            try:
                with stack.channel("backtest", port=port) as ch:
                    grpc.channel_ready_future(ch).result(timeout=1)
                    break
            except grpc.FutureTimeoutError:
                assert proc.poll() is None and time.monotonic() < deadline
        return proc, port

    yield start
    for proc, _ in started:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)


def test_a_replica_killed_mid_job_leaves_the_job_rerun_not_running(
        stack: StackInfo, token: str, version: str, replicas: Any) -> None:
    victim, port = replicas("victim")
    auth = (("authorization", f"Bearer {token}"),)
    # A walk-forward of ~28 folds x 2,000 combinations runs for several seconds.
    sweep = pb.Sweep(
        strategy_version=version,
        config=json_format.ParseDict(config_json(START_MS, END_MS), pb.BacktestConfig()),
        axes=[pb.ParameterAxis(path="entryBps", values=[float(x) for x in range(5, 505)]),
              pb.ParameterAxis(path="exitBps", values=[0.5, 1, 2, 3])],
        walk_forward=pb.WalkForwardSpec(in_sample=duration_pb2.Duration(seconds=6000 * 60),
                                        out_of_sample=duration_pb2.Duration(seconds=500 * 60)))
    with stack.channel("backtest", port=port) as ch:
        stub = backtest_pb2_grpc.BacktestServiceStub(ch)
        created = stub.CreateSweep(pb.CreateSweepRequest(sweep=sweep), metadata=auth,
                                   timeout=30)
        for event in stub.WatchSweep(pb.WatchSweepRequest(name=created.name),
                                      metadata=auth, timeout=120):
            if event.state == common_pb2.JOB_STATE_RUNNING and event.progress.done > 0:
                break
    # Its engine processes are forks of one forkserver (engine_server.py), its child.
    tree = _tree(victim.pid)
    servers = [p for p, (parent, cmd) in tree.items()
               if parent == victim.pid and "multiprocessing.forkserver" in cmd]
    assert len(servers) == 1, tree
    engines = [p for p, (parent, _) in tree.items() if parent == servers[0]]
    assert len(engines) == min(2, os.cpu_count() or 1), tree   # one per slot
    os.kill(victim.pid, signal.SIGKILL)   # the service alone, not its process group
    victim.wait(10)
    # ...and they end with it: each engine process watches the service (exit_with_parent),
    # and the forkserver ends once they have.
    deadline = time.monotonic() + 10
    while left := [p for p in tree if pid_alive(p)]:
        assert time.monotonic() < deadline, f"still running after the service died: {left}"
        time.sleep(0.1)
    _, port2 = replicas("survivor")
    with stack.channel("backtest", port=port2) as ch:
        stub = backtest_pb2_grpc.BacktestServiceStub(ch)
        events = list(stub.WatchSweep(pb.WatchSweepRequest(name=created.name),
                                     metadata=auth, timeout=240))
        got = stub.GetSweep(pb.GetSweepRequest(name=created.name), metadata=auth,
                             timeout=30)
    assert events[-1].HasField("outcome")
    assert got.state in (common_pb2.JOB_STATE_SUCCEEDED, common_pb2.JOB_STATE_FAILED)
    if got.state == common_pb2.JOB_STATE_FAILED:
        assert got.error.message
    else:
        assert len(got.folds) == 28


def test_a_replica_on_a_fresh_cache_compiles_before_serving(
        stack: StackInfo, token: str, version: str, replicas: Any, tmp_path: Path) -> None:
    """The service as deployed (``python -m usdcarb.backtest.main``: engine processes
    forked from its forkserver) on a numba cache missing ``legs.simulate`` (what every
    single backtest calls; test_lanes_warmup says why that one): it compiles and saves it
    while health says NOT_SERVING, and its first backtest has no compile in its engine
    time."""
    cache = tmp_path / "numba"
    shutil.copytree(_cache.CACHE_DIR, cache)
    removed = sorted(cache.rglob("legs.simulate-*"))
    assert removed, "the warmed cache has no legs.simulate"
    for p in removed:
        p.unlink()
    proc, port = replicas("fresh", NUMBA_CACHE_DIR=str(cache))
    statuses = []
    with stack.channel("backtest", port=port) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        deadline = time.monotonic() + 300
        while True:
            status = health.Check(health_pb2.HealthCheckRequest(service=SERVICE),
                                  timeout=5).status
            statuses.append(status)
            if status == health_pb2.HealthCheckResponse.SERVING:
                break
            assert proc.poll() is None and time.monotonic() < deadline, statuses
            time.sleep(0.1)
        assert statuses[0] == health_pb2.HealthCheckResponse.NOT_SERVING, statuses
        assert sorted(cache.rglob("legs.simulate-*")), "the forkserver did not save simulate"
        request = json_format.ParseDict(run_body(version), pb.RunBacktestRequest())
        events = list(backtest_pb2_grpc.BacktestServiceStub(ch).RunBacktest(
            request, metadata=(("authorization", f"Bearer {token}"),), timeout=120))
    done = events[-1].completed
    assert done.outcome.result == common_pb2.Outcome.RESULT_OK, events[-1]
    assert done.result.elapsed.ToNanoseconds() < 1e9   # no compile in the engine's time
