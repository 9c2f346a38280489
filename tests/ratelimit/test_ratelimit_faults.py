"""Rate limits when parts fail, and under many callers: Redis down (Envoy's failure mode,
then recovery), the per-caller buckets with 10,000 distinct subjects (bounded, LRU)."""

from __future__ import annotations

import http.client
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

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
from usdcarb.gateway.devtoken import mint_dev_token

pytestmark = pytest.mark.integration


def token(role: str = "analyst") -> str:
    return mint_dev_token(f"users/rl-{uuid.uuid4().hex[:10]}", [role], ttl=600)


def heavy(envoy: EnvoyProcess, caller: str) -> int:
    return call(envoy, "POST", "/v1/backtests", caller, body=b"{}").status


def test_redis_down_applies_envoys_failure_mode_and_counting_resumes_after(
    start_gateway: StartGateway, rls: Rls, redis: RedisServer
) -> None:
    open_gw = start_gateway(ratelimit_address=rls.address)
    deny_gw = start_gateway(ratelimit_address=rls.address, ratelimit_failure_mode_deny=True)
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
    assert heavy(deny_gw, token()) == 501


def test_rate_limit_service_down_applies_envoys_failure_mode(
    start_gateway: StartGateway, rls: Rls
) -> None:
    open_gw = start_gateway(ratelimit_address=rls.address)
    deny_gw = start_gateway(ratelimit_address=rls.address, ratelimit_failure_mode_deny=True)
    rls.stop()
    try:
        assert heavy(open_gw, token()) == 501
        assert heavy(deny_gw, token()) == 500
        assert stat(open_gw, "cluster.backtest.ratelimit.error") >= 1
    finally:
        rls.start()


def _burst(envoy: EnvoyProcess, tokens: list[str]) -> list[int]:
    """One request per token over a few kept-alive connections. The path has an unknown
    query parameter: the transcoder refuses it (400) after the rate limit filters, so the
    buckets are made and spent without a backend call."""
    def run(chunk: list[str]) -> list[int]:
        conn = http.client.HTTPConnection("127.0.0.1", envoy.config.listen_port, timeout=30)
        try:
            out = []
            for t in chunk:
                conn.request("GET", "/v1/strategies/a?unknownParameter=1",
                             headers={"authorization": f"Bearer {t}"})
                resp = conn.getresponse()
                resp.read()
                out.append(resp.status)
            return out
        finally:
            conn.close()

    chunks = [tokens[i::4] for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        return [code for codes in pool.map(run, chunks) for code in codes]


# Buckets refill continuously (8 a day: one token every 3 hours), so none refills mid-test.
DAILY = LIMITS_YAML.replace("analyst: {requests_per_unit: 8, unit: minute}",
                            "analyst: {requests_per_unit: 8, unit: day}")


def test_per_caller_buckets_hold_with_10000_distinct_subjects(start_gateway: StartGateway) -> None:
    envoy = start_gateway(max_dynamic_descriptors=20_000, limits=limits(DAILY))
    greedy = token()
    assert [call(envoy, "GET", "/v1/strategies/a", greedy).status for _ in range(9)][-1] == 429
    before = stat(envoy, "server.memory_allocated")
    others = [token() for _ in range(10_000)]
    codes = _burst(envoy, others)
    assert codes.count(400) == 10_000  # every other caller had its own full bucket
    assert call(envoy, "GET", "/v1/strategies/a", greedy).status == 429  # still held
    grown = stat(envoy, "server.memory_allocated") - before
    # 10,000 buckets (and the JWT cache's 1,000 entries): a few MB at most.
    assert grown < 32 * 1024 * 1024, grown


def test_buckets_past_the_lru_bound_are_evicted_oldest_first(start_gateway: StartGateway) -> None:
    envoy = start_gateway(max_dynamic_descriptors=50, limits=limits(DAILY))
    greedy = token()
    assert [call(envoy, "GET", "/v1/strategies/a", greedy).status for _ in range(9)][-1] == 429
    assert _burst(envoy, [token() for _ in range(100)]).count(400) == 100
    # Evicted: the greedy caller starts again from a full bucket (more, never less).
    assert call(envoy, "GET", "/v1/strategies/a", greedy).status == 200
