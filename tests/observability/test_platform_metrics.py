"""The platform's metrics: unary and streaming RPCs timed apart, dependency health, the
asyncpg pool and Redis calls (real PostgreSQL and Redis), periodic samplers."""

from __future__ import annotations

import asyncio
import urllib.request
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import Gauge, generate_latest

from platform_probe import SERVICE, ProbeServicer, eventually, register_probe
from usdcarb.devstack import PostgresServer, RedisServer
from usdcarb.platform.db import create_pool
from usdcarb.platform.telemetry import (
    Sampler,
    domain_registry,
    instrument_pool,
    instrument_redis,
)
from usdcarb.platform.testing import start_in_process

pytestmark = pytest.mark.integration


def _scrape(port: int | None) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return str(r.read().decode())


async def test_unary_and_streaming_rpcs_land_in_separate_histograms_and_health_is_a_gauge(
) -> None:
    healthy = {"postgres": True}

    async def check() -> bool:
        return healthy["postgres"]

    served = await start_in_process([SERVICE], register_probe(ProbeServicer()),
                                    health_checks={"postgres": check})
    try:
        async with served.channel() as channel:
            assert await channel.unary_unary(f"/{SERVICE}/Echo")(b"x") == b"x"
            call = channel.unary_stream(f"/{SERVICE}/Ticks")(b"")
            assert await call.read() == b"tick"
            call.cancel()
        port = served.service.metrics_port
        echo = f'grpc_method="Echo",grpc_service="{SERVICE}"'
        ticks = f'grpc_method="Ticks",grpc_service="{SERVICE}"'

        async def split() -> bool:
            text = await asyncio.to_thread(_scrape, port)
            return (f"grpc_server_handling_seconds_count{{{echo}}} 1.0" in text
                    and f"grpc_server_stream_duration_seconds_count{{{ticks}}} 1.0" in text
                    and f"grpc_server_handling_seconds_count{{{ticks}}}" not in text
                    and f"grpc_server_stream_duration_seconds_count{{{echo}}}" not in text)
        await eventually(split)
        text = await asyncio.to_thread(_scrape, port)
        assert 'usdcarb_dependency_up{dependency="postgres"} 1.0' in text
        healthy["postgres"] = False

        async def down() -> bool:
            return 'usdcarb_dependency_up{dependency="postgres"} 0.0' in await asyncio.to_thread(
                _scrape, port)
        await eventually(down)
    finally:
        await served.stop(0)


async def test_the_pool_exports_connections_in_use_and_callers_waiting(
        postgres: PostgresServer) -> None:
    registry = domain_registry()
    pool = await create_pool(postgres.dsn("usdcarb"), 1, 1)
    try:
        instrument_pool(pool, registry)
        async with pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
            text = generate_latest(registry).decode()
            assert 'usdcarb_db_pool_connections{state="in_use"} 1.0' in text
            assert "usdcarb_db_pool_max_connections 1.0" in text
            assert "usdcarb_db_pool_waiting 0.0" in text
            waiter = asyncio.create_task(pool.fetchval("SELECT 2"))

            async def waiting() -> bool:
                return "usdcarb_db_pool_waiting 1.0" in generate_latest(registry).decode()
            await eventually(waiting)
        assert await waiter == 2
        text = generate_latest(registry).decode()
        assert 'usdcarb_db_pool_connections{state="in_use"} 0.0' in text
        assert "usdcarb_db_pool_waiting 0.0" in text
    finally:
        await pool.close()


async def test_redis_commands_and_pipelines_are_timed_by_name(redis_server: RedisServer) -> None:
    registry = domain_registry()
    client: Any = aioredis.Redis.from_url(redis_server.url)
    try:
        instrument_redis(client, registry)
        await client.set("obs:k", "v")
        assert await client.get("obs:k") == b"v"
        await client.execute_command("OBJECT", "ENCODING", "obs:k")
        assert await client.xread({"obs:stream": "$"}, block=10) == []
        async with client.pipeline() as pipe:
            pipe.incr("obs:n")
            pipe.incr("obs:n")
            assert (await pipe.execute())[-1] >= 2
        text = generate_latest(registry).decode()
        for command in ("SET", "GET", "other", "PIPELINE", "blocking"):
            assert f'usdcarb_redis_command_seconds_count{{command="{command}"}} 1.0' in text
    finally:
        await client.aclose()


async def test_a_sampler_keeps_sampling_after_a_failure() -> None:
    registry = domain_registry()
    gauge = Gauge("usdcarb_test_sampled", "test", registry=registry)
    calls = []

    async def sample() -> None:
        calls.append(1)
        if len(calls) == 2:
            raise ConnectionError("redis away")
        gauge.set(len(calls))

    sampler = Sampler("test", sample, interval_s=0.01)
    sampler.start()

    async def thrice() -> bool:
        return len(calls) >= 3
    await eventually(thrice)
    await sampler.stop()
    assert gauge._value.get() >= 3
