"""Gateway throughput with rate limiting vs without, in one run on this machine.

Issue 16's design: ordinary budgets are Envoy's own per-caller token buckets
(local_ratelimit, no call anywhere); shared budgets (backtests, sweeps, logins) are checked
by Envoy's reference rate limit service (envoyproxy/ratelimit, Go) on Redis, on those
routes only. Through Envoy (JWT check, route authorization, transcoding) to a grpc.aio
backend with the platform's interceptors, measured with wrk (``apt-get install wrk``):

- ordinary route ``GET /v1/strategies/{id}``: JWT + limits vs JWT alone (target >= 0.9x);
- heavy route ``POST /v1/backtests`` (a global check per request): same (target >= 0.8x),
  first on a backend whose CreateBacktest does no work — the check's cost at its largest,
  a ceiling no real heavy request comes near — then as users hit it: CreateBacktest on
  the real services of a whole stack (TLS, mutual TLS, PostgreSQL, Redis; no engine
  processes, so the queued jobs cost nothing more), through the stack's gateway and
  through a second Envoy with the same config without limits (``--no-real-backend``
  skips it);
- CPU per check of the rate limit service (and of Redis) on the heavy route.

Limits are high enough that nothing is refused, so every request pays a full check.
Rounds alternate the gateways and the best of each is kept (a shared, noisy 2-core
machine). For comparison, issue 16's figures for the Python service it replaced: 0.65x on
the ordinary route (every request made a gRPC call to it), ~370 us of CPU per check.

    python benchmarks/bench_gateway_ratelimit.py [--seconds 5] [--rounds 4] [--connections 16]
                                                 [--no-real-backend]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
for _path in ("services", "gen/python", "clients/python", "benchmarks", "tests"):
    if str(REPO / _path) not in sys.path:
        sys.path.insert(0, str(REPO / _path))

from gatewaykit import cpu_seconds, stop, wait_http, wait_port, wrk  # noqa: E402

from usdcarb.devstack import RedisServer, free_port, scratch_dir  # noqa: E402
from usdcarb.gateway.config import GatewayConfig, write_envoy_config  # noqa: E402

SERVICES = ("ingestion", "validation", "strategy", "backtest", "notification", "identity")
LIMITS = """
api:
  default: {requests_per_unit: 1000000000, unit: second}
heavy:
  default: {requests_per_unit: 1000000000, unit: second}
auth: {requests_per_unit: 1000000000, unit: second}
"""
PATH = "/v1/strategies/bench"
HEAVY_PATH = "/v1/backtests"
POST_SCRIPT = 'wrk.method = "POST"\nwrk.body = "{}"\nwrk.headers["content-type"] = "application/json"\n'


# ---------------------------------------------------------------- backend (child process)

async def _serve_backend(port: int) -> None:
    from usdcarb.platform.server import run_service
    from usdcarb.platform.settings import PlatformSettings
    from usdcarb.v1 import backtest_pb2, backtest_pb2_grpc, strategy_pb2, strategy_pb2_grpc

    class Strategies(strategy_pb2_grpc.StrategyServiceServicer):
        async def GetStrategy(self, request: Any, context: Any) -> Any:
            return strategy_pb2.Strategy(name=request.name, display_name="bench",
                                         kind=strategy_pb2.STRATEGY_KIND_CROSS_EXCHANGE_SPREAD)

    class Backtests(backtest_pb2_grpc.BacktestServiceServicer):
        async def CreateBacktest(self, request: Any, context: Any) -> Any:
            return backtest_pb2.Backtest(name="backtests/bench")

    def add(server: Any) -> None:
        strategy_pb2_grpc.add_StrategyServiceServicer_to_server(Strategies(), server)  # type: ignore[no-untyped-call]
        backtest_pb2_grpc.add_BacktestServiceServicer_to_server(Backtests(), server)  # type: ignore[no-untyped-call]

    settings = PlatformSettings(env="test", grpc_port=port, metrics_port=-1, log_level="WARNING",
                                jwks_file=REPO / "gateway/dev-keys/DEV-ONLY-jwks.json",
                                plaintext=True)  # the TLS cost is bench_gateway_tls's
    names = [f"usdcarb.v1.{s.capitalize()}Service" for s in SERVICES]
    await run_service(names, add, settings)


# ---------------------------------------------------------------- orchestration

def _envoy(root: Path, name: str, backend: int, ratelimit: int | None) -> tuple[Any, int]:
    from usdcarb.ratelimit.limits import parse_limits

    port, admin = free_port(), free_port()
    cfg = GatewayConfig(
        listen_port=port, admin_port=admin, upstreams={s: f"127.0.0.1:{backend}" for s in SERVICES},
        descriptor_path=REPO / "gen/descriptor/usdcarb.binpb",
        jwks_file=REPO / "gateway/dev-keys/DEV-ONLY-jwks.json", route_authorization=True,
        ratelimit_address=None if ratelimit is None else f"127.0.0.1:{ratelimit}",
        rate_limiting=ratelimit is not None, limits=parse_limits(yaml.safe_load(LIMITS)),
        # The per-caller filters from the files _start_rls wrote (ECDS), as deployed.
        local_limits_dir=None if ratelimit is None else str(root / "rls" / "envoy"),
        access_log_path="/dev/null", introspection_backend=None)
    config = write_envoy_config(cfg, root / f"{name}.yaml")
    log = (root / f"{name}.log").open("ab")
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("envoy")), "-c", str(config), "--disable-hot-restart",
         "--base-id", str(os.getpid() % 10000 * 10 + (1 if ratelimit else 2)),
         "--log-level", "error", "--concurrency", "1"],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    wait_http(f"http://127.0.0.1:{admin}/ready")
    return proc, port


def _probe(port: int, token: str, path: str, post: bool) -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=b"{}" if post else None,
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status, {k.lower(): v for k, v in r.headers.items()}


def _start_rls(root: Path, redis: RedisServer) -> tuple[Any, int]:
    from usdcarb.ratelimit import service
    from usdcarb.ratelimit.limits import parse_limits

    runtime = root / "rls"
    service.write_config(parse_limits(yaml.safe_load(LIMITS)), runtime)
    port, http_port = free_port(), free_port()
    env = {**os.environ, **service.environment(
        runtime_root=runtime, redis_url=redis.url, grpc_port=port, http_port=http_port,
        debug_port=free_port(), metrics_port=free_port())}
    proc = subprocess.Popen([str(service.binary())], env=env, cwd=runtime,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            start_new_session=True)
    wait_http(f"http://127.0.0.1:{http_port}/healthcheck")
    return proc, port


def _tree_cpu(pid: int) -> dict[int, float]:
    """Return the CPU seconds of ``pid`` and of every process descending from it (a
    PostgreSQL server's backends), by pid."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp in parents.items() if pp == parent and p not in tree]
        tree.update(children)
        frontier.extend(children)
    out = {}
    for p in tree:
        try:
            out[p] = cpu_seconds(p)
        except (OSError, IndexError, ValueError):
            continue
    return out


async def _load_bars(dsn: str, start_ms: int, bars: int) -> None:
    import asyncpg

    from backtest.service.bt_helpers import SYMBOL, VENUES, load_bars, synthetic_pair

    conn = await asyncpg.connect(dsn)
    try:
        data = synthetic_pair(bars, gap_rate=0.001, start_ms=start_ms)
        for venue in VENUES:
            await load_bars(conn, "ingestion.market_data", venue, SYMBOL, data[venue])
    finally:
        await conn.close()


def _real_backend(args: argparse.Namespace, root: Path) -> list[str]:
    """The heavy route as users hit it: CreateBacktest on the real services (a whole
    stack: strategy lookup, data coverage and verdict checks in PostgreSQL, the insert,
    the queue in Redis; TLS at the gateway and mutual TLS behind it, Envoy with its
    default workers), through the stack's gateway (JWT + limits) and through a second
    Envoy with the same config without limits, interleaved. The backtest replica runs no
    engine processes, so the queued jobs cost nothing more while the rounds run."""
    import dataclasses
    import json
    import time

    from backtest.service.bt_helpers import config_json, spread_params
    from usdcarb.devstack.stack import Stack
    from usdcarb.gateway.devtoken import mint_dev_token

    limits_file = root / "limits.yaml"
    limits_file.write_text(LIMITS)
    mesh = Stack(root / "stack", gateway_port=free_port(), fast_postgres=True, env={
        "USDCARB_RATELIMIT_LIMITS_FILE": str(limits_file),
        "USDCARB_BACKTEST_WORKER_PROCESSES": "0"})
    plain: Any = None
    try:
        info = mesh.up()
        bars = 4320  # three days of 1m bars per venue
        start_ms = (int(time.time() * 1000) - 30 * 86_400_000) // 86_400_000 * 86_400_000
        asyncio.run(_load_bars(info.dsn, start_ms, bars))
        token = mint_dev_token("users/bench", ["analyst"], ttl=3600)
        headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}

        def rest(base: str, path: str, body: Any) -> tuple[int, Any]:
            req = urllib.request.Request(base + path, method="POST", headers=headers,
                                         data=json.dumps(body).encode())
            try:
                with urllib.request.urlopen(req, timeout=30, context=info.ssl_context()) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read()

        rest(info.gateway, "/v1/strategies?strategyId=bench",
             {"displayName": "bench", "kind": "STRATEGY_KIND_CROSS_EXCHANGE_SPREAD"})
        _, version = rest(info.gateway, "/v1/strategies/bench/versions",
                          {"parameters": spread_params()})
        body = {"strategyVersion": version["name"],
                "config": config_json(start_ms, start_ms + bars * 60_000)}
        status, created = rest(info.gateway, "/v1/backtests", body)
        if status != 200:
            raise RuntimeError(f"CreateBacktest: expected 200, got {status}: {created!r}")
        # The same gateway without rate limits, beside the stack's.
        gw, admin = free_port(), free_port()
        cfg = dataclasses.replace(
            mesh.gateway_config(gw, admin, info.processes, mesh._pki()), rate_limiting=False,
            ratelimit_address=None, local_limits_dir=None,
            access_log_path=str(root / "plain-access.log"))
        config = write_envoy_config(cfg, root / "plain.yaml", base_dir=REPO)
        log = (root / "plain.log").open("ab")
        plain = subprocess.Popen(
            [str(Path(sys.executable).with_name("envoy")), "-c", str(config),
             "--disable-hot-restart", "--log-level", "warn"], cwd=root, stdout=log, stderr=log,
            stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        wait_http(f"http://127.0.0.1:{admin}/ready")
        plain_url = f"https://localhost:{gw}"
        deadline = time.monotonic() + 30
        while (status := rest(plain_url, "/v1/backtests", body)[0]) != 200:
            if time.monotonic() > deadline:  # its JWKS comes from the stack's gateway
                raise RuntimeError(f"expected the gateway without limits to answer, got {status}")
            time.sleep(0.2)
        script = root / "create.lua"
        script.write_text(f"wrk.method = \"POST\"\nwrk.body = {json.dumps(json.dumps(body))}\n"
                          'wrk.headers["content-type"] = "application/json"\n')
        procs = info.processes
        serving = ["backtest", "strategy", "postgres", "redis"]
        gateways = {"jwt": (plain_url, plain.pid), "jwt+limits": (info.gateway, procs["envoy"].pid)}
        rps: dict[str, list[float]] = {}
        cpu: dict[str, dict[str, list[float]]] = {}
        names = list(gateways)
        for round_ in range(args.rounds):
            # A B B A ...: a drift over the run (other work on the machine, tables that
            # grow) weighs on both alike.
            for name in names if round_ % 2 == 0 else names[::-1]:
                base, envoy_pid = gateways[name]
                url = base + HEAVY_PATH
                wrk(url, seconds=1, connections=args.connections, headers=headers, script=script)
                pids = {"envoy": envoy_pid, **{k: procs[k].pid for k in serving}}
                if name == "jwt+limits":
                    pids["rls"] = procs["ratelimit"].pid
                before = {k: _tree_cpu(pid) for k, pid in pids.items()}
                rate, bad = wrk(url, seconds=args.seconds, connections=args.connections,
                                headers=headers, script=script)
                if bad:
                    raise RuntimeError(f"{name} CreateBacktest: {bad} non-2xx responses")
                for k, pid in pids.items():
                    used = sum(t - before[k].get(p, 0.0) for p, t in _tree_cpu(pid).items())
                    cpu.setdefault(name, {}).setdefault(k, []).append(
                        used / (rate * args.seconds) * 1e6)
                rps.setdefault(name, []).append(rate)
        least = {name: {k: min(v) for k, v in per.items()} for name, per in cpu.items()}
        base_rps, lim_rps = max(rps["jwt"]), max(rps["jwt+limits"])
        base_cpu, lim_cpu = sum(least["jwt"].values()), sum(least["jwt+limits"].values())

        def breakdown(name: str) -> str:
            return ", ".join(f"{k} {v:.0f}" for k, v in least[name].items())

        return [
            f"  heavy route as users hit it (CreateBacktest, {HEAVY_PATH} on the real services "
            "of a stack: TLS, mutual TLS, PostgreSQL, Redis)",
            f"    JWT alone        {base_rps:7.0f} req/s best  rounds {[round(r) for r in rps['jwt']]}",
            f"    JWT + limits     {lim_rps:7.0f} req/s best  rounds "
            f"{[round(r) for r in rps['jwt+limits']]}",
            f"    least CPU per request (us): JWT alone {base_cpu:.0f} ({breakdown('jwt')}); "
            f"JWT + limits {lim_cpu:.0f} ({breakdown('jwt+limits')})",
            f"    ratio: throughput (best) {lim_rps / base_rps:.2f}, CPU per request "
            f"{base_cpu / lim_cpu:.2f} (target >= 0.8)"]
    finally:
        if plain is not None:
            stop(plain)
        mesh.down()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--no-real-backend", action="store_true",
                   help="skip CreateBacktest on a whole stack (the heavy route as users hit it)")
    p.add_argument("--serve-backend", type=int, help=argparse.SUPPRESS)
    p.add_argument("--only-real-backend", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_backend:
        asyncio.run(_serve_backend(args.serve_backend))
        return 0
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install -y wrk): skipped")
        return 1
    from usdcarb.gateway.devtoken import mint_dev_token

    root = scratch_dir("usdcarb-bench-rl-")
    if args.only_real_backend:
        try:
            print("\n".join(_real_backend(args, root)))
            return 0
        finally:
            shutil.rmtree(root, ignore_errors=True)
    procs: list[Any] = []
    redis = RedisServer(root / "redis")
    try:
        redis.start()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            str(REPO / d) for d in ("services", "gen/python", "clients/python"))}
        backend = free_port()
        procs.append(subprocess.Popen(
            [sys.executable, __file__, "--serve-backend", str(backend)], env=env,
            stdin=subprocess.DEVNULL, start_new_session=True))
        rls, rls_port = _start_rls(root, redis)
        procs.append(rls)
        wait_port(backend)
        token = mint_dev_token("users/bench", ["analyst"], ttl=3600)
        auth = {"authorization": f"Bearer {token}"}
        script = root / "post.lua"
        script.write_text(POST_SCRIPT)
        routes = {"ordinary": (PATH, None), "heavy": (HEAVY_PATH, script)}
        results: dict[tuple[str, str], list[float]] = {}
        cpu: dict[tuple[str, str], dict[str, list[float]]] = {}
        for _ in range(args.rounds):
            for name, limited in (("jwt", None), ("jwt+limits", rls_port)):
                envoy, port = _envoy(root, name.replace("+", "-"), backend, limited)
                try:
                    for route, (path, body) in routes.items():
                        url = f"http://127.0.0.1:{port}{path}"
                        status, headers = _probe(port, token, path, body is not None)
                        if status != 200:
                            raise RuntimeError(f"{name} {route}: expected 200, got {status}")
                        if limited and "x-ratelimit-remaining" not in headers:
                            raise RuntimeError(f"{name} {route}: expected x-ratelimit headers")
                        if limited and route == "heavy" and "name=" not in headers.get(
                                "x-ratelimit-limit", ""):
                            raise RuntimeError("expected the rate limit service's headers")
                        wrk(url, seconds=1, connections=args.connections, headers=auth,
                            script=body)  # warm-up
                        pids = {"envoy": envoy.pid, "backend": procs[0].pid, "rls": rls.pid,
                                "redis": redis.pid or 0}
                        before = {k: cpu_seconds(v) for k, v in pids.items()}
                        rps, bad = wrk(url, seconds=args.seconds, connections=args.connections,
                                       headers=auth, script=body)
                        if bad:
                            raise RuntimeError(f"{name} {route}: {bad} non-2xx responses")
                        requests = rps * args.seconds
                        for k, v in pids.items():
                            cpu.setdefault((name, route), {}).setdefault(k, []).append(
                                (cpu_seconds(v) - before[k]) / requests * 1e6)
                        results.setdefault((name, route), []).append(rps)
                finally:
                    stop(envoy)
        # The least CPU per request a process showed in any round: other work on a shared
        # machine only ever adds to it. On a CPU-bound box throughput follows the inverse
        # of the CPU a request costs all the processes that serve it.
        least = {key: {k: min(v) for k, v in per.items()} for key, per in cpu.items()}
        print(f"REST via Envoy, wrk -c{args.connections}, {args.seconds}s x {args.rounds} rounds "
              "alternating; JWT + route roles + transcoding in both")
        targets = {"ordinary": 0.9, "heavy": 0.8}
        for route, (path, _) in routes.items():
            plain, limited_best = max(results["jwt", route]), max(results["jwt+limits", route])
            base, lim = least["jwt", route], least["jwt+limits", route]
            serving = ("envoy", "backend", "rls", "redis")
            base_cpu = base["envoy"] + base["backend"]
            lim_cpu = sum(lim[k] for k in serving) if route == "heavy" else (
                lim["envoy"] + lim["backend"])
            print(f"  {route} route ({path}" + (
                ", a backend that does no work: the check's cost at its largest)"
                if route == "heavy" else ")"))
            print(f"    JWT alone        {plain:7.0f} req/s best  rounds "
                  f"{[round(r) for r in results['jwt', route]]}")
            print(f"    JWT + limits     {limited_best:7.0f} req/s best  rounds "
                  f"{[round(r) for r in results['jwt+limits', route]]}")
            print("    least CPU per request: JWT alone " + ", ".join(
                f"{k} {base[k]:.0f} us" for k in ("envoy", "backend")) + "; JWT + limits "
                + ", ".join(f"{k} {lim[k]:.0f} us" for k in serving
                            if route == "heavy" or k in ("envoy", "backend")))
            print(f"    ratio: throughput (best) {limited_best / plain:.2f}, CPU per request "
                  f"{base_cpu / lim_cpu:.2f} (target >= {targets[route]})")
        heavy = least["jwt+limits", "heavy"]
        print(f"  rate limit service (Go): {heavy['rls']:.0f} us CPU per check, Redis "
              f"{heavy['redis']:.0f} us; the Python service it replaced: ~370 us per check, "
              "ordinary route 0.65x (issue 16)")
        if not args.no_real_backend:
            for proc in reversed(procs):
                stop(proc)  # the stack below brings its own
            procs.clear()
            for line in _real_backend(args, root):
                print(line)
        return 0
    finally:
        for proc in reversed(procs):
            stop(proc)
        redis.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
