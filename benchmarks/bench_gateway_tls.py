"""What the zero-trust edge costs: TLS and in-service token verification, in one run.

REST ``GET /v1/strategies/{id}`` with a JWT through Envoy (JWT check, route
authorization, transcoding) to a grpc.aio StrategyService backend with the platform's
interceptors (which verify the token again), measured with wrk (``apt-get install wrk``):

- **before**: HTTP/1.1 to Envoy, h2c to a plaintext backend that reads the token's claims
  without verifying them — the path before issue 9, when services trusted Envoy's claims;
- **plaintext**: the same, with the backend verifying the token itself (signature, claims,
  cached per token until it expires) — what every service does now;
- **tls**: HTTPS to Envoy (the dev CA's localhost certificate), mutual TLS to a verifying
  backend that requires Envoy's client certificate — what the dev stack runs.

Everything else is the same config. wrk keeps its connections open, as SDKs and browsers
do, so this is the per-request cost of encryption; handshakes are amortised. Rounds
alternate the two and the best of each is kept (a shared, noisy 2-core machine).

    python benchmarks/bench_gateway_tls.py [--seconds 5] [--rounds 3] [--connections 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import ssl
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

from gatewaykit import cpu_seconds, stop, wait_http, wait_port, wrk  # noqa: E402

from usdcarb.devstack import free_port, scratch_dir  # noqa: E402
from usdcarb.gateway.config import GatewayConfig, GatewayTls, write_envoy_config  # noqa: E402
from usdcarb.platform import tls  # noqa: E402

SERVICES = ("ingestion", "validation", "strategy", "backtest", "notification", "identity")
PATH = "/v1/strategies/bench"
DEV_JWKS = REPO / "gateway/dev-keys/DEV-ONLY-jwks.json"


# ---------------------------------------------------------------- backend (child process)

async def _serve_backend(port: int, pki_root: str, trust_claims: bool) -> None:
    import jwt

    from usdcarb.platform.identity import Caller, caller_from_claims
    from usdcarb.platform.server import run_service
    from usdcarb.platform.settings import PlatformSettings
    from usdcarb.platform.tokens import TokenVerifier, file_keys
    from usdcarb.v1 import strategy_pb2, strategy_pb2_grpc

    class Strategies(strategy_pb2_grpc.StrategyServiceServicer):
        async def GetStrategy(self, request: Any, context: Any) -> Any:
            return strategy_pb2.Strategy(name=request.name, display_name="bench",
                                         kind=strategy_pb2.STRATEGY_KIND_CROSS_EXCHANGE_SPREAD)

    files: dict[str, Any] = {"plaintext": True}
    if pki_root:
        pki = tls.DevPki(Path(pki_root))
        files = {"plaintext": False, "tls_cert_file": pki.cert("backend"),
                 "tls_key_file": pki.key("backend"), "tls_ca_file": pki.ca}
    settings = PlatformSettings(env="test", grpc_port=port, metrics_port=-1,
                                log_level="WARNING", jwks_file=DEV_JWKS, **files)
    class ClaimsOnly(TokenVerifier):
        """Verification off (this benchmark's baseline only): claims read, never checked."""

        async def verify(self, token: str) -> Caller:
            return caller_from_claims(jwt.decode(token, options={"verify_signature": False}))

    verifier = (ClaimsOnly(file_keys(DEV_JWKS), issuer="", audience="") if trust_claims
                else None)
    names = [f"usdcarb.v1.{s.capitalize()}Service" for s in SERVICES]
    await run_service(names, lambda server: strategy_pb2_grpc.add_StrategyServiceServicer_to_server(  # type: ignore[no-untyped-call]
        Strategies(), server), settings, verifier=verifier)


# ---------------------------------------------------------------- orchestration







def _envoy(root: Path, name: str, backend: int, files: GatewayTls | None) -> tuple[Any, int]:
    port, admin = free_port(), free_port()
    cfg = GatewayConfig(
        listen_port=port, admin_port=admin, upstreams={s: f"127.0.0.1:{backend}" for s in SERVICES},
        descriptor_path=REPO / "gen/descriptor/usdcarb.binpb", jwks_file=DEV_JWKS,
        route_authorization=True, access_log_path="/dev/null", introspection_backend=None,
        tls=files)
    config = write_envoy_config(cfg, root / f"{name}.yaml")
    log = (root / f"{name}.log").open("ab")
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("envoy")), "-c", str(config), "--disable-hot-restart",
         "--base-id", str(os.getpid() % 10000 * 10 + (3 if files else 4)),
         "--log-level", "error", "--concurrency", "1"],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    try:
        wait_http(f"http://127.0.0.1:{admin}/ready")
    except RuntimeError:
        stop(proc)
        tail = (root / f"{name}.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"expected envoy {name} ready, got:\n{tail}") from None
    # Ready once the backend cluster is healthy (over mTLS for the TLS gateway).
    deadline = time.monotonic() + 30
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/clusters", timeout=2) as r:
            text = r.read().decode()
        if f"strategy::127.0.0.1:{backend}::health_flags::healthy" in text:
            return proc, port
        if time.monotonic() > deadline:
            raise RuntimeError(f"expected {name}'s backend healthy:\n{text}")
        time.sleep(0.1)











def _probe(url: str, token: str, context: ssl.SSLContext | None) -> int:
    req = urllib.request.Request(url + PATH, headers={"authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=5, context=context) as r:
        return int(r.status)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--serve-backend", type=int, help=argparse.SUPPRESS)
    p.add_argument("--pki", default="", help=argparse.SUPPRESS)
    p.add_argument("--trust-claims", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_backend:
        asyncio.run(_serve_backend(args.serve_backend, args.pki, args.trust_claims))
        return 0
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install -y wrk): skipped")
        return 1
    from usdcarb.gateway.devtoken import mint_dev_token

    root = scratch_dir("usdcarb-bench-tls-")
    procs: list[Any] = []
    try:
        pki = tls.ensure_dev_pki(root / "tls", {
            "gateway": tls.LOCALHOST, "envoy": ("envoy",), "backend": SERVICES})
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            str(REPO / d) for d in ("services", "gen/python", "clients/python"))}
        ports = {"before": free_port(), "plaintext": free_port(), "tls": free_port()}
        for name, port in ports.items():
            procs.append(subprocess.Popen(
                [sys.executable, __file__, "--serve-backend", str(port),
                 "--pki", str(pki.root) if name == "tls" else "",
                 *(["--trust-claims"] if name == "before" else [])],
                env=env, stdin=subprocess.DEVNULL, start_new_session=True))
        for port in ports.values():
            wait_port(port)
        backends = dict(zip(ports, procs, strict=True))
        token = mint_dev_token("users/bench", ["viewer"], ttl=3600)
        auth = {"authorization": f"Bearer {token}"}
        results: dict[str, list[float]] = {name: [] for name in ports}
        # CPU seconds and requests over every round: less noisy than throughput on a
        # shared machine, where other work steals the cores between rounds.
        cpu: dict[str, dict[str, float]] = {name: {} for name in ports}
        served: dict[str, float] = dict.fromkeys(ports, 0.0)
        for _ in range(args.rounds):
            for name in ports:
                files = GatewayTls.from_dir(pki.root) if name == "tls" else None
                envoy, port = _envoy(root, name, ports[name], files)
                scheme = "https" if files else "http"
                url = f"{scheme}://127.0.0.1:{port}"
                try:
                    status = _probe(url, token, tls.ssl_context(pki.ca) if files else None)
                    if status != 200:
                        raise RuntimeError(f"{name}: expected 200 from the probe, got {status}")
                    wrk(url + PATH, seconds=1, connections=args.connections, headers=auth)  # warm-up
                    pids = {"envoy": envoy.pid, "backend": backends[name].pid}
                    before = {k: cpu_seconds(v) for k, v in pids.items()}
                    rps, bad = wrk(url + PATH, seconds=args.seconds,
                                   connections=args.connections, headers=auth)
                    if bad:
                        raise RuntimeError(f"{name}: {bad} non-2xx responses")
                    served[name] += rps * args.seconds
                    for k, v in pids.items():
                        cpu[name][k] = cpu[name].get(k, 0.0) + cpu_seconds(v) - before[k]
                    results[name].append(rps)
                finally:
                    stop(envoy)
        best = {name: max(rounds) for name, rounds in results.items()}
        print(f"REST GET {PATH} with a JWT via Envoy (route authorization), wrk "
              f"-c{args.connections} keep-alive, {args.seconds}s x {args.rounds} rounds "
              f"(best of each)")
        labels = {"before": "before (plaintext, claims trusted)",
                  "plaintext": "plaintext, in-service verification",
                  "tls": "TLS (HTTPS, mTLS upstream) + verif."}
        for name, label in labels.items():
            print(f"  {label:38s} {best[name]:9.0f} req/s   rounds "
                  f"{[round(r) for r in results[name]]}")
        per_request = {name: sum(used.values()) / served[name] * 1e6
                       for name, used in cpu.items()}
        for name, used in cpu.items():
            print(f"  CPU per request ({name}, all rounds): " + ", ".join(
                f"{k} {v / served[name] * 1e6:.0f} us" for k, v in used.items())
                + f", total {per_request[name]:.0f} us")
        for label, num, den in (("in-service verification", "plaintext", "before"),
                                ("TLS", "tls", "plaintext"),
                                ("TLS + in-service verification", "tls", "before")):
            print(f"  {label}: throughput ratio {best[num] / best[den]:.2f}, CPU per request "
                  f"ratio {per_request[num] / per_request[den]:.2f}")
        print("  (issue 9 aim: TLS + in-service verification together cost <= 15% of throughput)")
        return 0
    finally:
        for proc in reversed(procs):
            stop(proc)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
