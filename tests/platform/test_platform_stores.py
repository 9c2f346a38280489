"""Migrations, the asyncpg pool and the Redis client against real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from usdcarb.devstack import PostgresServer, RedisServer, free_port, scratch_dir
from usdcarb.devstack.postgres import DEFAULT_BINDIR
from usdcarb.platform.db import create_pool, postgres_check
from usdcarb.platform.migrations import MigrationError, apply_migrations, load_migrations
from usdcarb.platform.redis import create_redis, redis_check

pytestmark = pytest.mark.integration

needs_postgres = pytest.mark.skipif(
    not (DEFAULT_BINDIR / "initdb").exists(),
    reason=f"PostgreSQL 15 binaries not installed ({DEFAULT_BINDIR}/initdb missing)",
)
needs_redis = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="redis-server not installed"
)


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    root = scratch_dir("usdcarb-platform-")
    server = PostgresServer(root / "pg", fast=True)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def pool(postgres: PostgresServer) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(postgres.dsn(), 1, 4)
    yield pool
    await pool.close()


@pytest.fixture
def schema() -> str:
    # A schema per test: tests never share tables or clean up by DELETE.
    return f"t_{uuid.uuid4().hex[:12]}"


MIGRATIONS = {
    "0001_items.sql": "CREATE TABLE items (id int PRIMARY KEY, doc jsonb NOT NULL);\n"
    "CREATE TABLE ran (version int);\nSELECT pg_sleep(0.2);\nINSERT INTO ran VALUES (1);\n",
    "0002_item_names.sql": "ALTER TABLE items ADD COLUMN name text;\nINSERT INTO ran VALUES (2);\n",
    "0003_seed.sql": "INSERT INTO items VALUES (1, '{\"peg\": 1.0}', 'usdc');\n"
    "INSERT INTO ran VALUES (3);\n",
}


def write_migrations(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return directory


@needs_postgres
async def test_concurrent_starts_apply_each_migration_once(
    postgres: PostgresServer, schema: str, tmp_path: Path
) -> None:
    directory = write_migrations(tmp_path / "m", MIGRATIONS)
    pools = [await create_pool(postgres.dsn(), 1, 2) for _ in range(3)]
    try:
        results = await asyncio.gather(*(apply_migrations(p, schema, directory) for p in pools))
        conn = pools[0]
        ran = await conn.fetch(f"SELECT version FROM {schema}.ran ORDER BY version")
        recorded = await conn.fetch(
            f"SELECT version, name FROM {schema}.schema_migrations ORDER BY version"
        )
        doc = await conn.fetchval(f"SELECT doc FROM {schema}.items WHERE id = 1")
    finally:
        for p in pools:
            await p.close()

    assert sorted(results) == [[], [], [1, 2, 3]]
    assert [r["version"] for r in ran] == [1, 2, 3]
    assert [(r["version"], r["name"]) for r in recorded] == [
        (1, "items"),
        (2, "item_names"),
        (3, "seed"),
    ]
    assert doc == {"peg": 1.0}  # the jsonb codec decodes to Python values


@needs_postgres
async def test_changed_checksum_refuses_to_start(
    pool: asyncpg.Pool, schema: str, tmp_path: Path
) -> None:
    directory = write_migrations(tmp_path / "m", MIGRATIONS)
    assert await apply_migrations(pool, schema, directory) == [1, 2, 3]

    (directory / "0002_item_names.sql").write_text("ALTER TABLE items ADD COLUMN nom text;\n")
    with pytest.raises(MigrationError, match=r"0002_item_names .* changed after it was applied"):
        await apply_migrations(pool, schema, directory)


@needs_postgres
async def test_new_migration_applies_and_failed_one_rolls_back(
    pool: asyncpg.Pool, schema: str, tmp_path: Path
) -> None:
    directory = write_migrations(tmp_path / "m", MIGRATIONS)
    await apply_migrations(pool, schema, directory)
    write_migrations(
        directory,
        {
            "0004_ok.sql": "CREATE TABLE fills (id int);\n",
            "0005_broken.sql": "CREATE TABLE half (id int);\nSELECT no_such_function();\n",
        },
    )

    with pytest.raises(asyncpg.UndefinedFunctionError):
        await apply_migrations(pool, schema, directory)

    versions = await pool.fetch(f"SELECT version FROM {schema}.schema_migrations")
    assert sorted(r["version"] for r in versions) == [1, 2, 3, 4]
    assert await pool.fetchval("SELECT to_regclass($1)", f"{schema}.half") is None


@needs_postgres
async def test_apply_migrations_accepts_a_connection(
    postgres: PostgresServer, schema: str, tmp_path: Path
) -> None:
    directory = write_migrations(tmp_path / "m", MIGRATIONS)
    conn = await asyncpg.connect(postgres.dsn())
    try:
        assert await apply_migrations(conn, schema, directory) == [1, 2, 3]
        assert await apply_migrations(conn, schema, directory) == []
        # The advisory lock is released: another session can take it at once.
        assert await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
    finally:
        await conn.close()


def test_misnamed_migration_file_is_refused(tmp_path: Path) -> None:
    directory = write_migrations(tmp_path / "m", {"0001_ok.sql": "", "2_bad.sql": ""})
    expected = "expected a file named NNNN_name.sql, got '2_bad.sql'"
    with pytest.raises(MigrationError, match=re.escape(expected)):
        load_migrations(directory)


@needs_postgres
async def test_pool_health_check(pool: asyncpg.Pool) -> None:
    assert await postgres_check(pool)()


async def test_create_pool_gives_up_after_its_attempts() -> None:
    dsn = f"postgresql://nobody@127.0.0.1:{free_port()}/none"
    with pytest.raises(OSError):
        await create_pool(dsn, 1, 1, attempts=2, first_delay_s=0.01)


@needs_redis
async def test_redis_client_pings_and_reports_health() -> None:
    root = scratch_dir("usdcarb-platform-redis-")
    server = RedisServer(root / "redis")
    server.start()
    try:
        client = await create_redis(server.url)
        try:
            check = redis_check(client, timeout_s=1.0)
            assert await check()
            server.stop()
            assert not await check()
        finally:
            await client.aclose()
    finally:
        if server.is_running():
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


async def test_create_redis_gives_up_after_its_attempts() -> None:
    with pytest.raises(Exception, match=r"(?i)connect"):
        await create_redis(f"redis://127.0.0.1:{free_port()}/0", attempts=2, first_delay_s=0.01)
