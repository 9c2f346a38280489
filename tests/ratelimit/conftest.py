"""Rate-limit test kit: real Envoys (the gateway's generated config) in front of the fake
backend, Envoy's reference rate limit service (Go, ``.tools/bin/ratelimit``) and a Redis
of their own, all on free loopback ports, stopped by PID."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.conftest import (  # noqa: F401  (fixtures)
    EnvoyProcess,
    FakeBackend,
    backend,
    envoy_bin,
    gateway_config,
    start_envoy,
)
from usdcarb.devstack import RedisServer, free_port, scratch_dir
from usdcarb.ratelimit import service
from usdcarb.ratelimit.limits import Limits, parse_limits

LIMITS_YAML = """
api:
  default: {requests_per_unit: 3, unit: minute}
  analyst: {requests_per_unit: 8, unit: minute}
heavy:
  default: {requests_per_unit: 0, unit: minute}
  analyst: {requests_per_unit: 2, unit: minute}
auth: {requests_per_unit: 2, unit: minute}
"""


def limits(text: str = LIMITS_YAML) -> Limits:
    return parse_limits(yaml.safe_load(text))


@dataclass
class Rls:
    """One envoyproxy/ratelimit process; ``stop()``/``start()`` keep its ports."""

    root: Path
    redis_url: str
    grpc_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def envoy_dir(self) -> Path:
        """The gateway's per-caller limit files (ECDS), written beside the service's."""
        return service.envoy_dir(self.root)

    def write(self, text: str) -> None:
        service.write_config(limits(text), self.root)

    def start(self) -> Rls:
        env = {**os.environ, **service.environment(
            runtime_root=self.root, redis_url=self.redis_url, grpc_port=self.grpc_port,
            http_port=self.http_port, debug_port=free_port(), metrics_port=self.metrics_port),
            "STATS_FLUSH_INTERVAL": "500ms"}  # metrics reach /metrics sooner
        log = (self.root / "ratelimit.log").open("ab")
        self.process = subprocess.Popen([str(service.binary())], env=env, cwd=self.root,
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                        start_new_session=True)
        log.close()
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(
                        f"http://127.0.0.1:{self.http_port}/healthcheck", timeout=1) as r:
                    if r.read().strip() == b"OK":
                        return self
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"expected ratelimit healthy, got:\n{self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        return (self.root / "ratelimit.log").read_text(errors="replace")[-3000:]

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=5) as r:
            return str(r.read().decode())

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    root = scratch_dir("usdcarb-rl-redis-")
    server = RedisServer(root / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def rls(redis: RedisServer) -> Iterator[Rls]:
    root = scratch_dir("usdcarb-rls-")
    served = Rls(root, redis.url)
    served.write(LIMITS_YAML)
    served.start()
    try:
        yield served
    finally:
        served.stop()
        shutil.rmtree(root, ignore_errors=True)


StartGateway = Callable[..., EnvoyProcess]


@pytest.fixture(scope="module")
def start_gateway(envoy_bin: str, backend: FakeBackend  # noqa: F811
                  ) -> Iterator[StartGateway]:
    """Return ``start(**overrides)``: an Envoy with LIMITS_YAML, stopped after the module."""
    started: list[EnvoyProcess] = []

    def start(**overrides: Any) -> EnvoyProcess:
        envoy = start_envoy(gateway_config(backend, **{"limits": limits(), **overrides}),
                            envoy_bin)
        started.append(envoy)
        envoy.wait_ready(["strategy", "backtest", "identity"])
        return envoy

    try:
        yield start
    finally:
        for envoy in started:
            envoy.stop()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def detail(self, kind: str) -> dict[str, Any]:
        for d in self.json()["details"]:
            if d["@type"] == f"type.googleapis.com/google.rpc.{kind}":
                return dict(d)
        raise AssertionError(f"expected a {kind} detail, got {self.body!r}")


def call(envoy: EnvoyProcess, method: str, path: str, token: str | None = None, *,
         body: bytes | None = None, source: str = "127.0.0.1") -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", envoy.config.listen_port, timeout=10,
                                      source_address=(source, 0))
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def stat(envoy: EnvoyProcess, name: str) -> int:
    for line in envoy.admin("/stats").splitlines():
        key, _, value = line.partition(": ")
        if key == name:
            return int(value)
    return 0
