"""What refusing unknown JSON fields costs: a small REST POST with and without the check.

Envoy's transcoder cannot refuse unknown fields, so a Lua step on REST routes with a body
hands the raw body (base64 in ``x-usdcarb-json-body``) to the service, whose
RequestCheckInterceptor walks it against the request message (usdcarb.platform.strictjson).
This measures ``POST /v1/strategies`` (a ~130-byte body, JWT, route authorization,
transcoding) to a grpc.aio StrategyService with the platform's interceptors, with wrk:

- **strict**: the gateway as generated (Lua step) and the services' interceptors as shipped;
- **off**: the same config without the Lua step, and a backend without the request check
  (the path before this change).

Rounds alternate the two and the best of each is kept (a shared, noisy 2-core machine).

    python benchmarks/bench_strict_json.py [--seconds 5] [--rounds 3] [--connections 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for _path in ("services", "gen/python", "clients/python", "benchmarks"):
    if str(REPO / _path) not in sys.path:
        sys.path.insert(0, str(REPO / _path))

from gatewaykit import cpu_seconds, stop, wrk  # noqa: E402

from usdcarb.devstack import free_port, scratch_dir  # noqa: E402
from usdcarb.gateway.config import GatewayConfig, render_envoy_yaml  # noqa: E402

SERVICES = ("ingestion", "validation", "strategy", "backtest", "notification", "identity")
PATH = "/v1/strategies"
BODY = json.dumps({"displayName": "bench", "kind": "STRATEGY_KIND_PEG_REVERSION",
                   "description": "a small REST call", "labels": {"desk": "usdc"}})
DEV_JWKS = REPO / "gateway/dev-keys/DEV-ONLY-jwks.json"
LUA = "envoy.filters.http.lua"


async def _serve_backend(port: int, strict: bool) -> None:
    import grpc

    from usdcarb.platform import interceptors
    from usdcarb.platform.server import run_service
    from usdcarb.platform.settings import PlatformSettings
    from usdcarb.v1 import strategy_pb2_grpc

    if not strict:
        class Off(grpc.aio.ServerInterceptor):  # type: ignore[misc]
            async def intercept_service(self, continuation: Any, details: Any) -> Any:
                return await continuation(details)

        interceptors.RequestCheckInterceptor = Off  # type: ignore[attr-defined]

    class Strategies(strategy_pb2_grpc.StrategyServiceServicer):
        async def CreateStrategy(self, request: Any, context: Any) -> Any:
            return request.strategy

    settings = PlatformSettings(env="test", grpc_port=port, metrics_port=-1, plaintext=True,
                                log_level="WARNING", jwks_file=DEV_JWKS)
    names = [f"usdcarb.v1.{s.capitalize()}Service" for s in SERVICES]
    await run_service(names, lambda server: strategy_pb2_grpc.add_StrategyServiceServicer_to_server(  # type: ignore[no-untyped-call]
        Strategies(), server), settings)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=2) as r:
        return str(r.read().decode())


def _envoy(root: Path, name: str, backend: int, strict: bool) -> tuple[Any, int]:
    import yaml

    port, admin = free_port(), free_port()
    cfg = GatewayConfig(
        listen_port=port, admin_port=admin, upstreams={s: f"127.0.0.1:{backend}" for s in SERVICES},
        descriptor_path=REPO / "gen/descriptor/usdcarb.binpb", jwks_file=DEV_JWKS,
        route_authorization=True, access_log_path="/dev/null", introspection_backend=None)
    config = yaml.safe_load(render_envoy_yaml(cfg))
    if not strict:
        hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        typed = hcm["typed_config"]
        typed["http_filters"] = [f for f in typed["http_filters"] if f["name"] != LUA]
        for route in typed["route_config"]["virtual_hosts"][0]["routes"]:
            route.get("typed_per_filter_config", {}).pop(LUA, None)
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    log = (root / f"{name}.log").open("ab")
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("envoy")), "-c", str(path), "--disable-hot-restart",
         "--base-id", str(os.getpid() % 10000 * 10 + (5 if strict else 6)),
         "--log-level", "error", "--concurrency", "1"],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    deadline = time.monotonic() + 30
    while True:
        try:
            if f"strategy::127.0.0.1:{backend}::health_flags::healthy" in _get(
                    f"http://127.0.0.1:{admin}/clusters"):
                return proc, port
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"expected {name}'s gateway and backend up within 30s")
        time.sleep(0.1)











def _probe(url: str, token: str, body: str) -> tuple[int, str]:
    req = urllib.request.Request(url + PATH, data=body.encode(), method="POST", headers={
        "authorization": f"Bearer {token}", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--serve-backend", type=int, help=argparse.SUPPRESS)
    p.add_argument("--off", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_backend:
        asyncio.run(_serve_backend(args.serve_backend, strict=not args.off))
        return 0
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install -y wrk): skipped")
        return 1
    from usdcarb.gateway.devtoken import mint_dev_token

    root = scratch_dir("usdcarb-bench-strict-")
    procs: dict[str, Any] = {}
    try:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            str(REPO / d) for d in ("services", "gen/python", "clients/python"))}
        ports = {"strict": free_port(), "off": free_port()}
        for name, port in ports.items():
            procs[name] = subprocess.Popen(
                [sys.executable, __file__, "--serve-backend", str(port),
                 *(["--off"] if name == "off" else [])],
                env=env, stdin=subprocess.DEVNULL, start_new_session=True)
        token = mint_dev_token("users/bench", ["admin"], ttl=3600)
        script = root / "post.lua"
        script.write_text(
            'wrk.method = "POST"\n'
            f"wrk.body = {json.dumps(BODY)}\n"
            'wrk.headers["content-type"] = "application/json"\n'
            f'wrk.headers["authorization"] = "Bearer {token}"\n')
        results: dict[str, list[float]] = {"strict": [], "off": []}
        cpu: dict[str, dict[str, float]] = {}
        for _ in range(args.rounds):
            for name in ("off", "strict"):
                envoy, port = _envoy(root, name, ports[name], strict=name == "strict")
                url = f"http://127.0.0.1:{port}"
                try:
                    status, text = _probe(url, token, BODY)
                    if status != 200:
                        raise RuntimeError(f"{name}: expected 200, got {status} {text[:300]}")
                    typo, text = _probe(url, token, BODY.replace("displayName", "displayNme"))
                    if (typo == 400) != (name == "strict"):
                        raise RuntimeError(f"{name}: unknown field answered {typo} {text[:200]}")
                    wrk(url + PATH, script=script, seconds=1,
                        connections=args.connections)  # warm-up
                    pids = {"envoy": envoy.pid, "backend": procs[name].pid}
                    before = {k: cpu_seconds(v) for k, v in pids.items()}
                    rps, bad = wrk(url + PATH, script=script, seconds=args.seconds,
                                   connections=args.connections)
                    if bad:
                        raise RuntimeError(f"{name}: {bad} non-2xx responses")
                    requests = rps * args.seconds
                    cpu[name] = {k: (cpu_seconds(v) - before[k]) / requests * 1e6
                                 for k, v in pids.items()}
                    results[name].append(rps)
                finally:
                    stop(envoy)
        off, strict = max(results["off"]), max(results["strict"])
        print(f"REST POST {PATH} ({len(BODY)}-byte body) with a JWT via Envoy, wrk "
              f"-c{args.connections} keep-alive, {args.seconds}s x {args.rounds} rounds (best)")
        print(f"  without the strict check  {off:9.0f} req/s   rounds "
              f"{[round(r) for r in results['off']]}")
        print(f"  with the strict check     {strict:9.0f} req/s   rounds "
              f"{[round(r) for r in results['strict']]}")
        for name, per in cpu.items():
            print(f"  CPU per request ({name}, last round): " + ", ".join(
                f"{k} {v:.0f} us" for k, v in per.items()))
        print(f"  ratio {strict / off:.2f}: the check costs {1 - strict / off:.0%} of throughput")
        return 0
    finally:
        for proc in procs.values():
            stop(proc)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
