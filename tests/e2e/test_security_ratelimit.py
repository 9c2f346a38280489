"""Rate limits through Envoy and the real rate limit service: a caller over its budget
is refused (429 / RESOURCE_EXHAUSTED with details) while another caller is not."""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from identity.gatewaykit import call
from usdcarb.devstack.stack import StackInfo
from usdcarb.gateway.devtoken import mint_dev_token
from usdcarb.v1 import backtest_pb2, backtest_pb2_grpc

pytestmark = pytest.mark.e2e


def subject() -> str:
    return f"users/rl-{uuid.uuid4().hex[:10]}"


def test_rest_caller_over_the_heavy_budget_gets_429_another_caller_is_unaffected(
    stack: StackInfo,
) -> None:
    greedy, polite = mint_dev_token(subject(), ["analyst"]), mint_dev_token(subject(), ["analyst"])
    # Analysts may create 20 backtests a minute (limits.yaml); bounded at 45 calls, which
    # crosses at most one window boundary.
    replies = []
    for _ in range(45):
        reply = call(stack, "POST", "/v1/backtests", {}, token=greedy)
        replies.append(reply)
        if reply.status == 429:
            break
    last = replies[-1]
    assert last.status == 429, [r.status for r in replies]
    assert last.json()["code"] == 8 and "heavy-analyst" in last.json()["message"]
    assert last.headers["x-ratelimit-remaining"] == "0"
    assert "heavy-analyst" in last.headers["x-ratelimit-limit"]
    assert int(last.headers["x-ratelimit-reset"]) >= 1 and int(last.headers["retry-after"]) >= 1
    assert all(r.status != 429 for r in replies[:-1])
    other = call(stack, "POST", "/v1/backtests", {}, token=polite)
    assert other.status != 429 and "x-ratelimit-remaining" in other.headers
    # The heavy budget is separate: the greedy caller can still read.
    assert call(stack, "GET", "/v1/backtests", token=greedy).status != 429


def test_grpc_caller_over_budget_gets_resource_exhausted_with_quota_and_retry_details(
    stack: StackInfo,
) -> None:
    greedy = [("authorization", f"Bearer {mint_dev_token(subject(), ['analyst'])}")]
    polite = [("authorization", f"Bearer {mint_dev_token(subject(), ['analyst'])}")]
    with stack.channel() as channel:
        stub = backtest_pb2_grpc.BacktestServiceStub(channel)
        error: grpc.RpcError | None = None
        for _ in range(45):
            try:
                stub.CreateBacktest(backtest_pb2.CreateBacktestRequest(), metadata=greedy,
                                    timeout=10)
            except grpc.RpcError as err:
                if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    error = err
                    break
        assert error is not None
        status = rpc_status.from_call(error)
        assert status is not None and "heavy-analyst" in status.message
        quota, retry = error_details_pb2.QuotaFailure(), error_details_pb2.RetryInfo()
        assert any(d.Unpack(quota) for d in status.details)
        assert quota.violations[0].subject == "heavy-analyst"
        assert any(d.Unpack(retry) for d in status.details) and retry.retry_delay.seconds >= 1
        try:
            stub.CreateBacktest(backtest_pb2.CreateBacktestRequest(), metadata=polite, timeout=10)
        except grpc.RpcError as err:
            assert err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED
