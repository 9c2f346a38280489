"""Server reflection through the gateway lists and describes every service of the API, with
the real grpcurl (``make gotools`` installs it in .tools/bin)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from identity.gatewaykit import admin_token
from usdcarb.devstack.stack import StackInfo
from usdcarb.platform.apireflection import api_service_names

pytestmark = pytest.mark.e2e

GRPCURL = Path(__file__).resolve().parents[2] / ".tools" / "bin" / "grpcurl"


def grpcurl_binary() -> str:
    found = str(GRPCURL) if GRPCURL.exists() else shutil.which("grpcurl")
    if found is None:
        message = f"grpcurl not found at {GRPCURL} (make gotools)"
        if os.environ.get("CI"):
            raise AssertionError(message)
        pytest.skip(message)
    return found


def grpcurl(stack: StackInfo, token: str | None, *args: str) -> str:
    transport = ["-cacert", stack.ca] if stack.ca else ["-plaintext"]
    auth = ["-H", f"authorization: Bearer {token}"] if token else []
    result = subprocess.run(
        [grpcurl_binary(), *transport, *auth, stack.gateway_target, *args],
        capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_grpcurl_lists_every_service_through_the_gateway(stack: StackInfo) -> None:
    listed = set(grpcurl(stack, admin_token(stack, source="127.0.0.14"), "list").split())
    assert set(api_service_names()) <= listed
    assert len(api_service_names()) == 6


@pytest.mark.parametrize("service", api_service_names())
def test_grpcurl_describes_each_service_through_the_gateway(
    stack: StackInfo, service: str,
) -> None:
    described = grpcurl(stack, admin_token(stack, source="127.0.0.14"), "describe", service)
    assert f"{service} is a service:" in described and "rpc " in described


def test_reflection_is_public_like_health_but_calls_are_not(stack: StackInfo) -> None:
    # Public at the edge and in the services (the allow-list: tokens, JWKS, health, reflection).
    assert set(api_service_names()) <= set(grpcurl(stack, None, "list").split())
    described = grpcurl(stack, None, "describe", "usdcarb.v1.StrategyService")
    assert "rpc ListStrategies" in described
    transport = ["-cacert", stack.ca] if stack.ca else ["-plaintext"]
    refused = subprocess.run(
        [grpcurl_binary(), *transport, stack.gateway_target,
         "usdcarb.v1.StrategyService/ListStrategyKinds"],
        capture_output=True, text=True, timeout=30, check=False)
    assert refused.returncode != 0 and "Unauthenticated" in refused.stderr
