"""Gateway variants, each on an Envoy of its own: remote JWKS, global rate limiting."""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from typing import Any

import pytest

from usdcarb.gateway.devtoken import mint_dev_token

pytestmark = pytest.mark.integration

Start = Callable[..., Any]


def get(envoy: Any, path: str, token: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", envoy.config.listen_port, timeout=10)
    try:
        conn.request("GET", path, headers={"authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def stat(envoy: Any, name: str) -> int:
    for line in envoy.admin("/stats").splitlines():
        key, _, value = line.partition(": ")
        if key == name:
            return int(value)
    return 0


def test_remote_jwks_served_by_identity_through_the_gateway_itself(start_gateway: Start) -> None:
    # Envoy fetches /.well-known/jwks.json from its own listener: a public route to
    # IdentityService.GetJwks, which here returns the DEV-ONLY key.
    envoy = start_gateway(jwks_mode="remote", jwks_uri="self")
    token = mint_dev_token("alice", ["viewer"], ttl=600)
    deadline = time.monotonic() + 10
    status, body = get(envoy, "/v1/strategies/abc", token)
    while status != 200 and time.monotonic() < deadline:
        time.sleep(0.1)  # the first fetch may still be on its way
        status, body = get(envoy, "/v1/strategies/abc", token)
    assert status == 200, body
    assert stat(envoy, "cluster.jwks.upstream_rq_200") >= 1


@pytest.mark.parametrize(("deny", "expected"), [(False, 501), (True, 500)])
def test_rate_limit_service_down_fails_open_unless_configured_to_deny(
    start_gateway: Start, dead_port: int, deny: bool, expected: int
) -> None:
    envoy = start_gateway(
        ratelimit_address=f"127.0.0.1:{dead_port}", ratelimit_failure_mode_deny=deny
    )
    token = mint_dev_token("alice", ["analyst"], ttl=600)
    # Only shared budgets (here CreateBacktest's) call the service; the fake backend does
    # not implement the method, so a call let through answers 501.
    conn = http.client.HTTPConnection("127.0.0.1", envoy.config.listen_port, timeout=10)
    try:
        conn.request("POST", "/v1/backtests", body=b"{}",
                     headers={"authorization": f"Bearer {token}",
                              "content-type": "application/json"})
        status = conn.getresponse().status
    finally:
        conn.close()
    assert status == expected
    assert get(envoy, "/v1/strategies/abc", token)[0] == 200  # no call on ordinary routes
    # Rate-limit stats live under the backend's cluster (trap 9).
    assert stat(envoy, "cluster.backtest.ratelimit.error") >= 1
    assert stat(envoy, "cluster.backtest.ratelimit.failure_mode_allowed") == (0 if deny else 1)
