"""Rate limits when parts fail, and under many callers: Redis down (Envoy's failure mode,
then recovery), the per-caller buckets with 10,000 distinct subjects (bounded, LRU)."""

from __future__ import annotations

import time
import uuid

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from ratelimit.conftest import (
    LIMITS_YAML,
    EnvoyProcess,
    Rls,
    StartGateway,
    call,
    limits,
    stat,
)
from usdcarb.devstack import RedisServer
from usdcarb.gateway.devtoken import DEV_PRIVATE_KEY, mint_dev_token

pytestmark = pytest.mark.integration


def token(role: str = "analyst") -> str:
    return mint_dev_token(f"users/rl-{uuid.uuid4().hex[:10]}", [role], ttl=600)


def many_tokens(count: int) -> list[str]:
    """``count`` analyst tokens of distinct subjects: one dev token's claims re-signed with
    the dev key loaded once (minting each from scratch reloads the key)."""
    template = mint_dev_token("users/template", ["analyst"], ttl=600)
    kid = jwt.get_unverified_header(template)["kid"]
    claims = jwt.decode(template, options={"verify_signature": False})
    key = serialization.load_pem_private_key(DEV_PRIVATE_KEY.read_bytes(), password=None)
    return [jwt.encode({**claims, "sub": f"users/rl-many-{uuid.uuid4().hex[:12]}"}, key,
                       algorithm="ES256", headers={"kid": kid}) for _ in range(count)]


def heavy(envoy: EnvoyProcess, caller: str) -> int:
    return call(envoy, "POST", "/v1/backtests", caller, body=b"{}").status


@pytest.fixture(scope="module")
def open_gw(start_gateway: StartGateway, rls: Rls) -> EnvoyProcess:
    return start_gateway(ratelimit_address=rls.address)


@pytest.fixture(scope="module")
def deny_gw(start_gateway: StartGateway, rls: Rls) -> EnvoyProcess:
    return start_gateway(ratelimit_address=rls.address, ratelimit_failure_mode_deny=True)


def test_redis_down_applies_envoys_failure_mode_and_counting_resumes_after(
    open_gw: EnvoyProcess, deny_gw: EnvoyProcess, rls: Rls, redis: RedisServer
) -> None:
    caller = token()
    assert heavy(open_gw, caller) == 501  # counted (the fake backend has no CreateBacktest)
    redis.stop()
    try:
        # The service answers an error; open lets the call through, deny refuses it (500).
        assert [heavy(open_gw, caller) for _ in range(3)] == [501] * 3
        assert stat(open_gw, "cluster.backtest.ratelimit.failure_mode_allowed") >= 3
        assert heavy(deny_gw, token()) == 500
        # Ordinary budgets do not need the service at all.
        assert call(deny_gw, "GET", "/v1/strategies/a", caller).status == 200
    finally:
        redis.start()
    deadline = time.monotonic() + 20
    while True:
        reply = call(open_gw, "POST", "/v1/backtests", caller, body=b"{}")
        if 'name="heavy-analyst"' in reply.headers.get("x-ratelimit-limit", ""):
            break  # counted again: the service's headers, not only the local bucket's
        assert time.monotonic() < deadline, rls.log()
        time.sleep(0.2)
    assert reply.headers["x-ratelimit-remaining"] in ("0", "1"), reply.headers
    # Each of the service's pooled Redis connections comes back on its own: the fail-closed
    # gateway lets calls through again once none of them errs.
    while heavy(deny_gw, token()) != 501:
        assert time.monotonic() < deadline, rls.log()
        time.sleep(0.2)


def test_rate_limit_service_down_applies_envoys_failure_mode(
    open_gw: EnvoyProcess, deny_gw: EnvoyProcess, rls: Rls
) -> None:
    rls.stop()
    try:
        assert heavy(open_gw, token()) == 501
        assert heavy(deny_gw, token()) == 500
        assert stat(open_gw, "cluster.backtest.ratelimit.error") >= 1
        assert stat(deny_gw, "cluster.backtest.ratelimit.failure_mode_allowed") == 0
    finally:
        rls.start()


# A path no route serves: after jwt_authn, the Lua step and the local buckets (which apply
# to every request with a token), Envoy answers UNIMPLEMENTED itself, so a call costs
# little beyond the filters under test.
UNSERVED = "/usdcarb.v1.NoSuchService/Nothing"
BUCKET_CHECKS = "http_local_rate_limiter.http_local_rate_limit.ok"


def _burst(envoy: EnvoyProcess, tokens: list[str]) -> list[grpc.StatusCode]:
    """One gRPC call per token through Envoy, up to 256 in flight on one HTTP/2
    connection, so the client is not what limits the pace. Return the status codes
    (UNIMPLEMENTED: let through, RESOURCE_EXHAUSTED: refused)."""
    codes: list[grpc.StatusCode] = []
    with grpc.insecure_channel(envoy.grpc_target) as channel:
        call = channel.unary_unary(UNSERVED, request_serializer=bytes,
                                   response_deserializer=bytes)
        for start in range(0, len(tokens), 256):
            futures = [call.future(b"", metadata=[("authorization", f"Bearer {t}")], timeout=30)
                       for t in tokens[start:start + 256]]
            for future in futures:
                codes.append(future.code())
    return codes


# Buckets refill continuously (8 a day: one token every 3 hours), so none refills mid-test.
DAILY = LIMITS_YAML.replace("analyst: {requests_per_unit: 8, unit: minute}",
                            "analyst: {requests_per_unit: 8, unit: day}")


def test_per_caller_buckets_hold_with_10000_distinct_subjects(start_gateway: StartGateway) -> None:
    envoy = start_gateway(max_dynamic_descriptors=20_000, limits=limits(DAILY))
    greedy = token()
    assert [call(envoy, "GET", "/v1/strategies/a", greedy).status for _ in range(9)][-1] == 429
    before, checks = stat(envoy, "server.memory_allocated"), stat(envoy, BUCKET_CHECKS)
    codes = _burst(envoy, many_tokens(10_000))
    assert codes.count(grpc.StatusCode.UNIMPLEMENTED) == 10_000  # each its own full bucket
    assert stat(envoy, BUCKET_CHECKS) - checks >= 10_000
    assert call(envoy, "GET", "/v1/strategies/a", greedy).status == 429  # still held
    grown = stat(envoy, "server.memory_allocated") - before
    # 10,000 buckets (and the JWT cache's 1,000 entries): a few MB at most.
    assert grown < 32 * 1024 * 1024, grown


def test_buckets_past_the_lru_bound_are_evicted_oldest_first(start_gateway: StartGateway) -> None:
    envoy = start_gateway(max_dynamic_descriptors=50, limits=limits(DAILY))
    greedy = token()
    assert [call(envoy, "GET", "/v1/strategies/a", greedy).status for _ in range(9)][-1] == 429
    assert _burst(envoy, many_tokens(100)).count(grpc.StatusCode.UNIMPLEMENTED) == 100
    # Evicted: the greedy caller starts again from a full bucket (more, never less).
    assert call(envoy, "GET", "/v1/strategies/a", greedy).status == 200
