"""Gateway throughput with global rate limiting vs without, in one run on this machine.

REST ``GET /v1/strategies/{id}`` through Envoy (JWT check, route authorization,
transcoding) to a grpc.aio StrategyService backend with the platform's interceptors,
measured with wrk (``apt-get install wrk``): once with JWT alone, once with JWT plus the
``envoy.filters.http.ratelimit`` filter calling usdcarb's rate limit service on Redis
(limits high enough that nothing is refused, so every request pays a full check).
Rounds alternate the two gateways and the best of each is kept (a shared, noisy
2-core machine). Target: rate limiting costs at most 20 % of throughput
(shared/notes/envoy.md measured ~50 % for a naive Python service).

    python benchmarks/bench_gateway_ratelimit.py [--seconds 5] [--rounds 3] [--connections 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for _path in ("services", "gen/python", "clients/python", "benchmarks"):
    if str(REPO / _path) not in sys.path:
        sys.path.insert(0, str(REPO / _path))

from gatewaykit import cpu_seconds, stop, wait_http, wait_port, wrk  # noqa: E402

from usdcarb.devstack import RedisServer, free_port, scratch_dir  # noqa: E402
from usdcarb.gateway.config import GatewayConfig, write_envoy_config  # noqa: E402

SERVICES = ("ingestion", "validation", "strategy", "backtest", "notification", "identity")
LIMITS = """
api:
  default: {requests_per_unit: 1000000000, unit: second}
  viewer: {requests_per_unit: 1000000000, unit: second}
heavy:
  default: {requests_per_unit: 1000000000, unit: second}
auth: {requests_per_unit: 1000000000, unit: second}
"""
PATH = "/v1/strategies/bench"


# ---------------------------------------------------------------- backend (child process)

async def _serve_backend(port: int) -> None:
    from usdcarb.platform.server import run_service
    from usdcarb.platform.settings import PlatformSettings
    from usdcarb.v1 import strategy_pb2, strategy_pb2_grpc

    class Strategies(strategy_pb2_grpc.StrategyServiceServicer):
        async def GetStrategy(self, request: Any, context: Any) -> Any:
            return strategy_pb2.Strategy(name=request.name, display_name="bench",
                                         kind=strategy_pb2.STRATEGY_KIND_CROSS_EXCHANGE_SPREAD)

    settings = PlatformSettings(env="test", grpc_port=port, metrics_port=-1, log_level="WARNING",
                                jwks_file=REPO / "gateway/dev-keys/DEV-ONLY-jwks.json",
                                plaintext=True)  # the TLS cost is bench_gateway_tls's
    names = [f"usdcarb.v1.{s.capitalize()}Service" for s in SERVICES]
    await run_service(names, lambda server: strategy_pb2_grpc.add_StrategyServiceServicer_to_server(  # type: ignore[no-untyped-call]
        Strategies(), server), settings)


# ---------------------------------------------------------------- orchestration







def _envoy(root: Path, name: str, backend: int, ratelimit: int | None) -> tuple[Any, int]:
    port, admin = free_port(), free_port()
    cfg = GatewayConfig(
        listen_port=port, admin_port=admin, upstreams={s: f"127.0.0.1:{backend}" for s in SERVICES},
        descriptor_path=REPO / "gen/descriptor/usdcarb.binpb",
        jwks_file=REPO / "gateway/dev-keys/DEV-ONLY-jwks.json", route_authorization=True,
        ratelimit_address=None if ratelimit is None else f"127.0.0.1:{ratelimit}",
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











def _probe(port: int, token: str) -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{PATH}",
                                 headers={"authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status, {k.lower(): v for k, v in r.headers.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--serve-backend", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_backend:
        asyncio.run(_serve_backend(args.serve_backend))
        return 0
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install -y wrk): skipped")
        return 1
    from usdcarb.gateway.devtoken import mint_dev_token

    root = scratch_dir("usdcarb-bench-rl-")
    procs: list[Any] = []
    redis = RedisServer(root / "redis")
    try:
        redis.start()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            str(REPO / d) for d in ("services", "gen/python", "clients/python"))}
        backend, rls = free_port(), free_port()
        limits = root / "limits.yaml"
        limits.write_text(LIMITS)
        procs.append(subprocess.Popen(
            [sys.executable, __file__, "--serve-backend", str(backend)], env=env,
            stdin=subprocess.DEVNULL, start_new_session=True))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "usdcarb.ratelimit.main"], start_new_session=True,
            stdin=subprocess.DEVNULL, env={
                **env, "USDCARB_RATELIMIT_ENV": "test", "USDCARB_RATELIMIT_GRPC_PORT": str(rls),
                "USDCARB_RATELIMIT_PLAINTEXT": "true",
                "USDCARB_RATELIMIT_METRICS_PORT": "-1", "USDCARB_RATELIMIT_REDIS_URL": redis.url,
                "USDCARB_RATELIMIT_LIMITS_FILE": str(limits),
                "USDCARB_RATELIMIT_LOG_LEVEL": "WARNING"}))
        wait_port(backend)
        wait_port(rls)
        token = mint_dev_token("users/bench", ["viewer"], ttl=3600)
        auth = {"authorization": f"Bearer {token}"}
        results: dict[str, list[float]] = {"jwt": [], "jwt+ratelimit": []}
        cpu: dict[str, dict[str, float]] = {}
        for _ in range(args.rounds):
            for name, limited in (("jwt", None), ("jwt+ratelimit", rls)):
                envoy, port = _envoy(root, name.replace("+", "-"), backend, limited)
                url = f"http://127.0.0.1:{port}{PATH}"
                try:
                    status, headers = _probe(port, token)
                    if status != 200:
                        raise RuntimeError(f"{name}: expected 200 from the probe, got {status}")
                    if limited and "x-ratelimit-remaining" not in headers:
                        raise RuntimeError("expected x-ratelimit headers through the RLS")
                    wrk(url, seconds=1, connections=args.connections, headers=auth)  # warm-up
                    pids = {"envoy": envoy.pid, "backend": procs[0].pid, "rls": procs[1].pid,
                            "redis": redis.pid or 0}
                    before = {k: cpu_seconds(v) for k, v in pids.items()}
                    rps, bad = wrk(url, seconds=args.seconds, connections=args.connections,
                                   headers=auth)
                    if bad:
                        raise RuntimeError(f"{name}: {bad} non-2xx responses")
                    requests = rps * args.seconds
                    cpu[name] = {k: (cpu_seconds(v) - before[k]) / requests * 1e6
                                 for k, v in pids.items()}
                    results[name].append(rps)
                finally:
                    stop(envoy)
        plain, limited_best = max(results["jwt"]), max(results["jwt+ratelimit"])
        cost = 1 - limited_best / plain
        print(f"REST GET {PATH} via Envoy, wrk -c{args.connections}, {args.seconds}s x "
              f"{args.rounds} rounds (best of each)")
        print(f"  JWT alone            {plain:9.0f} req/s   rounds {results['jwt']}")
        print(f"  JWT + rate limiting  {limited_best:9.0f} req/s   rounds {results['jwt+ratelimit']}")
        for name, per in cpu.items():
            print(f"  CPU per request ({name}, last round): " + ", ".join(
                f"{k} {v:.0f} us" for k, v in per.items()))
        print(f"  ratio {limited_best / plain:.2f}: rate limiting costs {cost:.0%} of throughput "
              f"(target <= 20%; naive Python RLS ~50%)")
        return 0
    finally:
        for proc in reversed(procs):
            stop(proc)
        redis.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
