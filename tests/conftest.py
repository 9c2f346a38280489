"""Shared fixtures: real PostgreSQL + TimescaleDB and Redis on loopback, one per session.

Each test that needs tables gets a schema of its own (never a shared database cleaned
by DELETE). End-to-end tests share one whole mesh per session (``stack``).
"""

from __future__ import annotations

import faulthandler
import os
import shutil
import signal
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from testkit import E2E_JWKS_CACHE_S, trust_stack
from usdcarb.devstack import PostgresServer, RedisServer, free_port, scratch_dir
from usdcarb.devstack.ports import child_pids, signal_pid
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
    # The JWKS cache is short here only so the key-rotation test's publish lead stays short.
    mesh = Stack(root / "stack", gateway_port=free_port(), fast_postgres=True,
                 jwks_cache_s=E2E_JWKS_CACHE_S)
    try:
        info = mesh.up()
        trust_stack(info)  # HTTPS with the stack's dev CA, as every client calls it
        yield info
    finally:
        mesh.down()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def gateway(stack: StackInfo) -> str:
    """host:port of the Envoy gateway (REST and gRPC, over TLS: ``stack.channel()``)."""
    return stack.gateway_target


# ---------------------------------------------------------------- leaving cleanly
# Once the summary is printed, the interpreter still joins every non-daemon thread (the
# default executor's, a process pool's manager) and every multiprocessing child. One
# stuck there holds the run open with every test passed. Report what is left, end the
# processes the session started and, if the exit still hangs, dump every stack and exit
# with the session's own status instead of waiting for CI's time limit.
EXIT_GRACE_S = float(os.environ.get("USDCARB_TEST_EXIT_GRACE_S", "60"))
_exit_status: list[int] = []


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        children = child_pids(todo.pop())
        found += children
        todo += children
    return found


def _leftovers() -> str:
    threads = [t.name for t in threading.enumerate()
               if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    processes = []
    for pid in _descendants(os.getpid()):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "multiprocessing.forkserver" in cmd or "multiprocessing.resource_tracker" in cmd:
            continue   # multiprocessing's own helpers: they end as this process does
        processes.append(f"{pid} {cmd[:160]}")
    lines = [f"  thread {name}" for name in threads] + [f"  process {p}" for p in processes]
    return "\n".join(lines)


def _kill_descendants() -> None:
    for pid in _descendants(os.getpid()):
        signal_pid(pid, signal.SIGKILL)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _exit_status.append(int(exitstatus))


def pytest_unconfigure(config: pytest.Config) -> None:
    left = _leftovers()
    if left:
        sys.stderr.write(f"still running as pytest exits (the exit waits for these):\n{left}\n")
    status = _exit_status[-1] if _exit_status else 1

    def guard() -> None:
        time.sleep(EXIT_GRACE_S)
        sys.stderr.write(f"\npytest has not exited {EXIT_GRACE_S:.0f} s after the session "
                         f"ended; still running:\n{_leftovers()}\nstacks:\n")
        faulthandler.dump_traceback(sys.stderr, all_threads=True)
        _kill_descendants()
        time.sleep(10.0)
        sys.stderr.write(f"still stuck after ending our child processes; exiting with the "
                         f"session's status {status}\n")
        sys.stderr.flush()
        os._exit(status)

    threading.Thread(target=guard, name="exit-guard", daemon=True).start()
