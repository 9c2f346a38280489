"""Shared fixtures: real PostgreSQL + TimescaleDB and Redis on loopback, one per session.

Each test that needs tables gets a schema of its own (never a shared database cleaned
by DELETE). End-to-end tests share one whole mesh per session (``stack``).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from usdcarb.devstack import PostgresServer, RedisServer, free_port, scratch_dir
from usdcarb.devstack.stack import Stack, StackInfo
from usdcarb.platform.db import create_pool
from usdcarb.platform.migrations import apply_migrations

SERVICES = Path(__file__).resolve().parents[1] / "services" / "usdcarb"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    root = scratch_dir("usdcarb-test-pg-")
    server = PostgresServer(root / "pg", fast=True)
    try:
        server.start()
        server.create_database("usdcarb")
        server.psql("CREATE EXTENSION IF NOT EXISTS timescaledb", database="usdcarb")
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    root = scratch_dir("usdcarb-test-redis-")
    server = RedisServer(root / "redis")
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


SchemaFactory = Callable[[str], Awaitable[asyncpg.Pool]]


@pytest.fixture
async def service_pool(postgres: PostgresServer) -> AsyncIterator[SchemaFactory]:
    """Return ``make(service)``: a pool on a fresh schema holding that service's tables."""
    made: list[tuple[asyncpg.Pool, str]] = []

    async def make(service: str) -> asyncpg.Pool:
        schema = f"t_{service}_{uuid.uuid4().hex[:10]}"
        pool = await create_pool(postgres.dsn("usdcarb"), 1, 8, search_path=f"{schema}, public")
        await apply_migrations(pool, schema, SERVICES / service / "migrations")
        made.append((pool, schema))
        return pool

    yield make
    for pool, schema in made:
        await pool.execute(f"DROP SCHEMA {schema} CASCADE")
        await pool.close()


@pytest.fixture(scope="session")
def stack() -> Iterator[StackInfo]:
    """The whole mesh (PostgreSQL, Redis, every service, Envoy) on free ports."""
    root = scratch_dir("usdcarb-e2e-")
    mesh = Stack(root / "stack", gateway_port=free_port(), fast_postgres=True)
    try:
        yield mesh.up()
    finally:
        mesh.down()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def gateway(stack: StackInfo) -> str:
    """host:port of the Envoy gateway (REST and gRPC)."""
    return stack.gateway.removeprefix("http://")
