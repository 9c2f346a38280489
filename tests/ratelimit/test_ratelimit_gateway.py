"""Rate limits through real Envoys: per-caller token buckets inside Envoy (``api``), and
the shared budgets (``heavy``, ``auth``) in envoyproxy/ratelimit on Redis.

Every 429 — local or global, REST or gRPC — carries the same google.rpc details
(ErrorInfo RATE_LIMITED naming the limit, QuotaFailure, RetryInfo), Retry-After and
x-ratelimit-* headers; another caller is unaffected.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from ratelimit.conftest import LIMITS_YAML, EnvoyProcess, Rls, StartGateway, call, stat
from usdcarb.gateway.devtoken import mint_dev_token
from usdcarb.v1 import backtest_pb2, backtest_pb2_grpc, strategy_pb2, strategy_pb2_grpc

pytestmark = pytest.mark.integration


def token(role: str = "analyst", subject: str | None = None) -> str:
    return mint_dev_token(subject or f"users/rl-{uuid.uuid4().hex[:10]}", [role], ttl=600)


@pytest.fixture(scope="module")
def gateway(start_gateway: StartGateway, rls: Rls) -> EnvoyProcess:
    # Per-caller limits from the files the stack's writer keeps beside the service's (ECDS).
    return start_gateway(ratelimit_address=rls.address, local_limits_dir=str(rls.envoy_dir))


def assert_rate_limited(reply: object, limit: str) -> None:
    """The REST 429 body and headers every rate limit gives."""
    from ratelimit.conftest import Reply

    assert isinstance(reply, Reply)
    assert reply.status == 429, (reply.status, reply.body)
    body = reply.json()
    assert body["code"] == 8 and limit in body["message"]
    assert reply.detail("ErrorInfo")["reason"] == "RATE_LIMITED"
    assert reply.detail("ErrorInfo")["metadata"] == {"limit": limit}
    assert reply.detail("QuotaFailure")["violations"][0]["subject"] == limit
    delay = int(reply.detail("RetryInfo")["retryDelay"].removesuffix("s"))
    assert delay >= 1 and int(reply.headers["retry-after"]) == delay
    assert reply.headers["x-ratelimit-remaining"] == "0", reply.headers
    assert int(reply.headers["x-ratelimit-reset"]) >= 1 and "x-ratelimit-limit" in reply.headers
    assert reply.headers["content-type"] == "application/json"


def assert_grpc_rate_limited(err: grpc.RpcError, limit: str) -> None:
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
    status = rpc_status.from_call(err)  # also checks grpc-message matches the Status
    assert status is not None and limit in status.message
    info = error_details_pb2.ErrorInfo()
    quota, retry = error_details_pb2.QuotaFailure(), error_details_pb2.RetryInfo()
    assert any(d.Unpack(info) for d in status.details) and info.reason == "RATE_LIMITED"
    assert info.metadata["limit"] == limit
    assert any(d.Unpack(quota) for d in status.details)
    assert quota.violations[0].subject == limit
    assert any(d.Unpack(retry) for d in status.details) and retry.retry_delay.seconds >= 1


@pytest.fixture
def channel(gateway: EnvoyProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(gateway.grpc_target) as ch:
        yield ch


def test_local_bucket_per_caller_over_budget_gets_429_another_caller_is_unaffected(
    gateway: EnvoyProcess,
) -> None:
    greedy, polite = token(), token()
    replies = [call(gateway, "GET", "/v1/strategies/a", greedy) for _ in range(9)]
    assert [r.status for r in replies] == [200] * 8 + [429]  # analyst: 8 a minute
    assert_rate_limited(replies[-1], "api-analyst")
    assert replies[-1].headers["x-ratelimit-limit"].startswith("8")
    assert replies[0].headers["x-ratelimit-remaining"] == "7"
    assert call(gateway, "GET", "/v1/strategies/a", polite).status == 200
    # No known role: the default tier (3 a minute).
    nobody = mint_dev_token(f"users/rl-{uuid.uuid4().hex[:10]}", [], ttl=600)
    codes = [call(gateway, "GET", "/v1/strategies/a", nobody).status for _ in range(4)]
    assert codes[-1] == 429 and codes[:3] != [429] * 3


def test_grpc_caller_over_its_local_bucket_gets_resource_exhausted_with_details(
    channel: grpc.Channel,
) -> None:
    stub = strategy_pb2_grpc.StrategyServiceStub(channel)
    greedy = [("authorization", f"Bearer {token()}")]
    for _ in range(8):
        stub.GetStrategy(strategy_pb2.GetStrategyRequest(name="strategies/a"), metadata=greedy,
                         timeout=10)
    with pytest.raises(grpc.RpcError) as err:
        stub.GetStrategy(strategy_pb2.GetStrategyRequest(name="strategies/a"), metadata=greedy,
                         timeout=10)
    assert_grpc_rate_limited(err.value, "api-analyst")
    polite = [("authorization", f"Bearer {token()}")]
    stub.GetStrategy(strategy_pb2.GetStrategyRequest(name="strategies/a"), metadata=polite,
                     timeout=10)


def test_heavy_budget_is_counted_by_the_rate_limit_service(gateway: EnvoyProcess,
                                                           channel: grpc.Channel) -> None:
    greedy, polite = token(), token()
    codes = [call(gateway, "POST", "/v1/backtests", greedy, body=b"{}").status for _ in range(2)]
    assert 429 not in codes  # the fake backend does not implement it: 501
    over = call(gateway, "POST", "/v1/backtests", greedy, body=b"{}")
    assert_rate_limited(over, "heavy-analyst")
    assert 'name="heavy-analyst"' in over.headers["x-ratelimit-limit"]
    assert "x-envoy-ratelimited" in over.headers
    other = call(gateway, "POST", "/v1/backtests", polite, body=b"{}")
    assert other.status != 429 and other.headers["x-ratelimit-remaining"] == "1"
    # The heavy budget is separate: the greedy caller can still read.
    assert call(gateway, "GET", "/v1/strategies/a", greedy).status == 200
    # gRPC callers of the same method share the subject's heavy budget.
    stub = backtest_pb2_grpc.BacktestServiceStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.CreateBacktest(backtest_pb2.CreateBacktestRequest(),
                            metadata=[("authorization", f"Bearer {greedy}")], timeout=10)
    assert_grpc_rate_limited(err.value, "heavy-analyst")
    # A tier without a heavy limit of its own gets the default one: none (0) here.
    assert_rate_limited(call(gateway, "POST", "/v1/backtests", token("viewer"), body=b"{}"),
                        "heavy-default")


def test_token_endpoints_are_limited_per_client_ip(gateway: EnvoyProcess) -> None:
    body = b'{"username": "someone", "password": "not this one"}'
    codes = [call(gateway, "POST", "/v1/auth:login", body=body, source="127.0.0.71").status
             for _ in range(3)]
    assert codes[:2] != [429, 429] and codes[2] == 429
    over = call(gateway, "POST", "/v1/auth:login", body=body, source="127.0.0.71")
    assert_rate_limited(over, "auth")
    assert call(gateway, "POST", "/v1/auth:login", body=body, source="127.0.0.72").status != 429


def test_two_gateways_share_the_heavy_budget(gateway: EnvoyProcess, start_gateway: StartGateway,
                                             rls: Rls) -> None:
    second = start_gateway(ratelimit_address=rls.address)
    caller = token()
    assert call(gateway, "POST", "/v1/backtests", caller, body=b"{}").status != 429
    assert call(second, "POST", "/v1/backtests", caller, body=b"{}").status != 429
    assert_rate_limited(call(second, "POST", "/v1/backtests", caller, body=b"{}"),
                        "heavy-analyst")
    assert_rate_limited(call(gateway, "POST", "/v1/backtests", caller, body=b"{}"),
                        "heavy-analyst")


def test_a_changed_limits_file_applies_without_restart(gateway: EnvoyProcess, rls: Rls) -> None:
    import time

    rls.write(LIMITS_YAML.replace("analyst: {requests_per_unit: 2,", "analyst: {requests_per_unit: 5,"))
    try:
        deadline = time.monotonic() + 15
        while True:
            reply = call(gateway, "POST", "/v1/backtests", token(), body=b"{}")
            if reply.headers.get("x-ratelimit-limit", "").startswith("5,"):
                break
            assert time.monotonic() < deadline, reply.headers
            time.sleep(0.2)
        # A malformed file is refused by the service: the last good limits stay.
        config = rls.root / "ratelimit" / "config" / "usdcarb.yaml"
        config.write_text("domain: usdcarb\ndescriptors: [{key: class, value: heavy, rate_limit: {unit: fortnight}}]\n")
        time.sleep(1)
        again = call(gateway, "POST", "/v1/backtests", token(), body=b"{}")
        assert again.headers.get("x-ratelimit-limit", "").startswith("5,"), again.headers
    finally:
        rls.write(LIMITS_YAML)
    assert stat(gateway, "cluster.backtest.ratelimit.over_limit") >= 1


def _until_local_limit(gateway: EnvoyProcess, role: str, allowed: int) -> None:
    """Wait until a fresh ``role`` caller's bucket holds ``allowed`` (the reload is async)."""
    import time

    deadline = time.monotonic() + 15
    while True:
        reply = call(gateway, "GET", "/v1/strategies/a", token(role))
        if reply.headers.get("x-ratelimit-limit") == str(allowed):
            return
        assert time.monotonic() < deadline, reply.headers
        time.sleep(0.2)


def test_changed_per_caller_limits_apply_without_restarting_envoy(
    gateway: EnvoyProcess, rls: Rls, channel: grpc.Channel,
) -> None:
    pid = gateway.process.pid
    at_limit = token()
    assert [call(gateway, "GET", "/v1/strategies/a", at_limit).status
            for _ in range(9)] == [200] * 8 + [429]
    higher = LIMITS_YAML.replace("analyst: {requests_per_unit: 8, unit: minute}",
                                 "analyst: {requests_per_unit: 12, unit: hour}")
    lower = LIMITS_YAML.replace("analyst: {requests_per_unit: 8, unit: minute}",
                                "analyst: {requests_per_unit: 2, unit: minute}")
    try:
        rls.write(higher)
        _until_local_limit(gateway, "analyst", 12)
        # The caller that was at its limit gets the new one (a new bucket, full).
        replies = [call(gateway, "GET", "/v1/strategies/a", at_limit) for _ in range(13)]
        assert [r.status for r in replies] == [200] * 12 + [429]
        assert_rate_limited(replies[-1], "api-analyst")
        assert "12 requests per 3600 s" in replies[-1].json()["message"]
        assert replies[-1].detail("QuotaFailure")["violations"][0]["description"] == (
            "12 requests per 3600 s")
        assert replies[-1].detail("RetryInfo")["retryDelay"] == "300s"
        assert replies[-1].headers["retry-after"] == "300"
        assert not any(k.startswith("x-usdcarb-") for k in replies[-1].headers), (
            replies[-1].headers)
        # Other tiers keep their buckets and limits.
        assert call(gateway, "GET", "/v1/strategies/a", token("viewer")).status == 200
        # The shared budget still holds, counted by the service.
        heavy = token()
        codes = [call(gateway, "POST", "/v1/backtests", heavy, body=b"{}").status
                 for _ in range(2)]
        assert 429 not in codes
        assert_rate_limited(call(gateway, "POST", "/v1/backtests", heavy, body=b"{}"),
                            "heavy-analyst")

        rls.write(lower)
        _until_local_limit(gateway, "analyst", 2)
        caller = token()
        replies = [call(gateway, "GET", "/v1/strategies/a", caller) for _ in range(3)]
        assert [r.status for r in replies] == [200, 200, 429]
        assert replies[-1].detail("QuotaFailure")["violations"][0]["description"] == (
            "2 requests per 60 s")
        assert replies[-1].detail("RetryInfo")["retryDelay"] == "30s"
        # gRPC callers get the new limit's details too.
        stub = strategy_pb2_grpc.StrategyServiceStub(channel)
        greedy = [("authorization", f"Bearer {token()}")]
        for _ in range(2):
            stub.GetStrategy(strategy_pb2.GetStrategyRequest(name="strategies/a"),
                             metadata=greedy, timeout=10)
        with pytest.raises(grpc.RpcError) as err:
            stub.GetStrategy(strategy_pb2.GetStrategyRequest(name="strategies/a"),
                             metadata=greedy, timeout=10)
        assert_grpc_rate_limited(err.value, "api-analyst")
        status = rpc_status.from_call(err.value)
        assert status is not None and "2 requests per 60 s" in status.message
    finally:
        rls.write(LIMITS_YAML)
    _until_local_limit(gateway, "analyst", 8)
    assert gateway.process.pid == pid and gateway.process.poll() is None  # never restarted


def test_the_service_exports_prometheus_metrics(gateway: EnvoyProcess, rls: Rls) -> None:
    import time

    caller = token()
    for _ in range(3):
        call(gateway, "POST", "/v1/backtests", caller, body=b"{}")
    deadline = time.monotonic() + 10
    while True:
        lines = [line for line in rls.metrics().splitlines() if not line.startswith("#")]
        hits = [line for line in lines if "total_hits" in line and "heavy" in line]
        over = [line for line in lines if "over_limit" in line and "heavy" in line]
        if hits and over:
            break
        assert time.monotonic() < deadline, "\n".join(lines[:40])
        time.sleep(0.2)
