"""The rate limit service over gRPC against a real Redis of its own (stopped mid-test)."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from envoy_rls import rls_pb2, rls_pb2_grpc
from testkit import eventually
from usdcarb.devstack import RedisServer, scratch_dir
from usdcarb.ratelimit.main import SERVICE, RateLimitSettings, close, create_service
from usdcarb.ratelimit.service import OK, OVER_LIMIT

pytestmark = pytest.mark.integration

LIMITS_YAML = """
api:
  default: {requests_per_unit: 2, unit: minute}
  analyst: {requests_per_unit: 3, unit: minute}
heavy:
  analyst: {requests_per_unit: 1, unit: minute}
auth: {requests_per_unit: 2, unit: minute}
"""


def roles(*names: str) -> str:
    return base64.b64encode(json.dumps(list(names)).encode()).decode()


def descriptor(**entries: str) -> rls_pb2.RateLimitDescriptor:
    return rls_pb2.RateLimitDescriptor(entries=[
        rls_pb2.RateLimitDescriptor.Entry(key=k, value=v) for k, v in entries.items()])


def api(sub: str, *role: str) -> rls_pb2.RateLimitDescriptor:
    return descriptor(**{"class": "api", "sub": sub, "roles": roles(*role)})


def request(*descriptors: rls_pb2.RateLimitDescriptor) -> rls_pb2.RateLimitRequest:
    return rls_pb2.RateLimitRequest(domain="usdcarb", descriptors=descriptors)


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    root = scratch_dir("usdcarb-rl-redis-")
    server = RedisServer(root / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


class Rls:
    def __init__(self, stub: Any, limits_path: Path, servicer: Any, channel: Any,
                 redis_url: str) -> None:
        self.stub, self.limits_path, self.servicer = stub, limits_path, servicer
        self.channel, self.redis_url = channel, redis_url

    async def __call__(self, *descriptors: rls_pb2.RateLimitDescriptor
                       ) -> rls_pb2.RateLimitResponse:
        reply: rls_pb2.RateLimitResponse = await self.stub.ShouldRateLimit(request(*descriptors))
        return reply


@asynccontextmanager
async def start(redis: RedisServer, tmp_path: Path, mode: str) -> AsyncIterator[Rls]:
    limits = tmp_path / "limits.yaml"
    limits.write_text(LIMITS_YAML)
    settings = RateLimitSettings(env="test", redis_url=redis.url, limits_file=limits,
                                 failure_mode=mode, redis_cooldown_s=0.1, reload_interval_s=0.05,
                                 grpc_port=0, metrics_port=-1, health_interval_s=0.1,
                                 plaintext=True)
    service, servicer, _, resources = create_service(settings)
    port = service.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield Rls(rls_pb2_grpc.RateLimitServiceStub(channel), limits, servicer, channel,
                      redis.url)
    finally:
        service.stop(0)
        close(resources)


@pytest.fixture
async def rls(redis: RedisServer, tmp_path: Path) -> AsyncIterator[Rls]:
    async with start(redis, tmp_path, "open") as value:
        yield value


async def test_a_caller_over_its_budget_is_refused_while_another_is_not(rls: Rls) -> None:
    codes = [(await rls(api("users/a", "analyst"))).overall_code for _ in range(4)]
    assert codes == [OK, OK, OK, OVER_LIMIT]
    other = await rls(api("users/b", "analyst"))
    assert other.overall_code == OK and other.statuses[0].limit_remaining == 2


async def test_statuses_carry_limit_remaining_reset_and_grpc_details_when_over(rls: Rls) -> None:
    first = await rls(api("users/c"))  # no role: the default tier, 2/minute
    status = first.statuses[0]
    assert status.current_limit.requests_per_unit == 2 and status.current_limit.name == "api-default"
    assert status.limit_remaining == 1 and 0 < status.duration_until_reset.seconds <= 60
    await rls(api("users/c"))
    over = await rls(api("users/c"))
    assert over.overall_code == OVER_LIMIT and over.statuses[0].limit_remaining == 0
    headers = {h.key: h.value for h in over.response_headers_to_add}
    assert int(headers["retry-after"]) >= 1
    detail = status_pb2.Status.FromString(base64.b64decode(headers["grpc-status-details-bin"]))
    assert detail.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert detail.message == over.raw_body.decode()
    quota, retry = error_details_pb2.QuotaFailure(), error_details_pb2.RetryInfo()
    assert any(d.Unpack(quota) for d in detail.details) and quota.violations[0].subject
    assert any(d.Unpack(retry) for d in detail.details) and retry.retry_delay.seconds >= 1


async def test_heavy_budget_is_separate_and_both_descriptors_count(rls: Rls) -> None:
    heavy = descriptor(**{"class": "heavy", "sub": "users/d", "roles": roles("analyst")})
    first = await rls(api("users/d", "analyst"), heavy)
    assert first.overall_code == OK
    second = await rls(api("users/d", "analyst"), heavy)
    assert second.overall_code == OVER_LIMIT
    assert [s.code for s in second.statuses] == [OK, OVER_LIMIT]
    assert (await rls(api("users/d", "analyst"))).overall_code == OK  # api budget still left


async def test_login_is_limited_per_client_ip(rls: Rls) -> None:
    auth = descriptor(**{"class": "auth", "remote_address": "10.9.9.9"})
    codes = [(await rls(auth)).overall_code for _ in range(3)]
    assert codes == [OK, OK, OVER_LIMIT]
    other = descriptor(**{"class": "auth", "remote_address": "10.9.9.10"})
    assert (await rls(other)).overall_code == OK


async def test_limits_file_changes_apply_without_restart(rls: Rls) -> None:
    rls.limits_path.write_text(LIMITS_YAML.replace("requests_per_unit: 3", "requests_per_unit: 1"))

    async def applied() -> bool:
        reply = await rls(api("users/e", "analyst"))
        return reply.statuses[0].current_limit.requests_per_unit == 1

    await eventually(applied, within_s=5)
    rls.limits_path.write_text("api: [not, a, mapping")  # malformed: the last good one stays
    await asyncio.sleep(0.2)
    reply = await rls(api("users/f", "analyst"))
    assert reply.statuses[0].current_limit.requests_per_unit == 1


async def test_a_concurrent_burst_is_counted_exactly_and_redis_sees_few_calls(rls: Rls) -> None:
    before = rls.servicer._counter.round_trips
    replies = await asyncio.gather(*(rls(api("users/burst", "analyst")) for _ in range(40)))
    assert sum(r.overall_code == OK for r in replies) == 3  # analyst: 3 a minute
    assert rls.servicer._counter.round_trips - before < 40
    client = aioredis.Redis.from_url(rls.redis_url)
    try:
        async def in_redis() -> bool:
            keys = [k async for k in client.scan_iter(match="rl:api:api-analyst:users/burst:*")]
            return bool(keys) and int(await client.get(keys[0])) == 40

        await eventually(in_redis, within_s=5)
    finally:
        await client.aclose()


async def test_health_follows_redis(redis: RedisServer, tmp_path: Path) -> None:
    async with start(redis, tmp_path, "open") as rls:
        health = health_pb2_grpc.HealthStub(rls.channel)

        async def status() -> int:
            reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
            return int(reply.status)

        assert await status() == health_pb2.HealthCheckResponse.SERVING
        redis.stop()
        await eventually(lambda: _is(status, health_pb2.HealthCheckResponse.NOT_SERVING))
        redis.start()
        await eventually(lambda: _is(status, health_pb2.HealthCheckResponse.SERVING))


async def _is(get: Any, expected: int) -> bool:
    return bool(await get() == expected)


@pytest.mark.parametrize("mode", ["open", "closed"])
async def test_redis_down_applies_the_failure_mode_and_recovers(
    redis: RedisServer, tmp_path: Path, mode: str
) -> None:
    async with start(redis, tmp_path, mode) as rls:
        assert (await rls(api("users/h", "analyst"))).overall_code == OK
        redis.stop()
        expected = OK if mode == "open" else OVER_LIMIT

        async def failure_mode_applies() -> bool:
            reply = await rls(api("users/h", "analyst"))
            # Detected within a flush interval or two: no counting, the mode decides.
            return reply.overall_code == expected and not reply.statuses[0].HasField(
                "current_limit")

        await eventually(failure_mode_applies, within_s=5)
        down = [(await rls(api("users/h", "analyst"))).overall_code for _ in range(3)]
        assert down == [expected] * 3
        redis.start()

        async def counted_again() -> bool:
            reply = await rls(api("users/h", "analyst"))
            return reply.overall_code == OK and reply.statuses[0].HasField("current_limit")

        await eventually(counted_again, within_s=10)
