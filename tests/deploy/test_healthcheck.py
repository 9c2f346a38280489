"""The image's HEALTHCHECK script against a real gRPC health service."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

pytestmark = pytest.mark.unit

SCRIPT = Path(__file__).resolve().parents[2] / "deploy/docker/healthcheck.py"


@pytest.fixture
def server() -> Iterator[tuple[int, health.HealthServicer]]:
    servicer = health.HealthServicer()
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    try:
        yield port, servicer
    finally:
        srv.stop(0)


def check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("USDCARB_")}
    return subprocess.run([sys.executable, str(SCRIPT)], env={**base, **env},
                          capture_output=True, text=True, timeout=30)


def test_serving_passes_and_not_serving_fails(
        server: tuple[int, health.HealthServicer]) -> None:
    port, servicer = server
    env = {"USDCARB_STRATEGY_GRPC_PORT": str(port), "USDCARB_STRATEGY_PLAINTEXT": "true"}
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert check(env).returncode == 0
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    result = check(env)
    assert result.returncode == 1 and "expected SERVING, got NOT_SERVING" in result.stderr


def test_nothing_listening_fails(server: tuple[int, health.HealthServicer]) -> None:
    port, _ = server
    result = check({"USDCARB_STRATEGY_GRPC_PORT": str(port + 1 if port < 65535 else port - 1),
                    "USDCARB_STRATEGY_PLAINTEXT": "true"})
    assert result.returncode == 1


def test_the_port_must_be_unambiguous() -> None:
    result = check({"USDCARB_A_GRPC_PORT": "1", "USDCARB_B_GRPC_PORT": "2"})
    assert result.returncode == 1 and "expected one USDCARB_<SERVICE>_GRPC_PORT" in result.stderr
