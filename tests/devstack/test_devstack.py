"""Integration tests of usdcarb.devstack against real postgres (+ TimescaleDB) and redis."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from usdcarb.devstack import DevstackError, PostgresServer, RedisServer, free_port, scratch_dir
from usdcarb.devstack.ports import child_pids, wait_gone
from usdcarb.devstack.stack import ProcessInfo, _wait_gone

pytestmark = pytest.mark.integration

Server = PostgresServer | RedisServer


class Tracker:
    """Remember every server and process a test started, and check none outlives it."""

    def __init__(self) -> None:
        self.servers: list[Server] = []
        self.pids: set[int] = set()

    def add(self, server: Server) -> Server:
        self.servers.append(server)
        return server

    def remember(self, server: Server) -> list[int]:
        """Record the server's current processes (postmaster and children) and return them."""
        assert server.pid is not None
        pids = [server.pid]
        if isinstance(server, PostgresServer):
            pids += child_pids(server.pid)
        self.pids.update(pids)
        return pids


@pytest.fixture
def scratch() -> Iterator[Path]:
    path = scratch_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def tracker() -> Iterator[Tracker]:
    tracker = Tracker()
    yield tracker
    for server in tracker.servers:
        if server.is_running():
            server.kill()  # a failed test must not leak a server either
    assert wait_gone(tracker.pids, timeout=5) == [], "processes outlived their test"


async def eventually(
    check: Callable[[], Awaitable[bool]], within: float = 10.0, interval: float = 0.05
) -> None:
    async with asyncio.timeout(within):
        while True:
            if await check():
                return
            await asyncio.sleep(interval)


def test_free_port_never_repeats_and_stays_below_the_ephemeral_range() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    if low > 15001:  # outgoing connections (ephemeral ports) cannot take them
        assert all(15000 <= p < low for p in ports)


def test_free_port_is_bindable_on_loopback() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


async def test_postgres_serves_timescaledb_hypertables(scratch: Path, tracker: Tracker) -> None:
    pg = tracker.add(PostgresServer(scratch / "pg", fast=True))
    assert isinstance(pg, PostgresServer)
    pg.start()
    tracker.remember(pg)
    pg.create_database("market")
    pg.create_database("market")  # idempotent
    start = datetime(2024, 1, 1, tzinfo=UTC)
    conn = await asyncpg.connect(pg.dsn("market"))
    try:
        await conn.execute("CREATE EXTENSION timescaledb")
        await conn.execute(
            "CREATE TABLE bars (ts timestamptz NOT NULL, venue text NOT NULL, "
            "price double precision NOT NULL)"
        )
        await conn.execute("SELECT create_hypertable('bars', by_range('ts', INTERVAL '7 days'))")
        rows = [(start + timedelta(minutes=i), "kraken", 1.0 + i / 10_000) for i in range(180)]
        await conn.copy_records_to_table("bars", records=rows)
        buckets = await conn.fetch(
            "SELECT time_bucket('1 hour', ts) AS bucket, count(*) AS n, first(price, ts) AS open "
            "FROM bars GROUP BY bucket ORDER BY bucket"
        )
        licence = await conn.fetchval("SHOW timescaledb.license")
        telemetry = await conn.fetchval("SHOW timescaledb.telemetry_level")
        fsync = await conn.fetchval("SHOW fsync")
        listen = await conn.fetchval("SHOW listen_addresses")
    finally:
        await conn.close()

    assert [(b["bucket"], b["n"]) for b in buckets] == [
        (start + timedelta(hours=h), 60) for h in range(3)
    ]
    assert buckets[1]["open"] == pytest.approx(1.006)
    assert (licence, telemetry, fsync, listen) == ("apache", "off", "off", "127.0.0.1")
    pg.stop()
    assert not pg.is_running()


async def test_postgres_keeps_committed_rows_across_sigkill(
    scratch: Path, tracker: Tracker
) -> None:
    pg = tracker.add(PostgresServer(scratch / "pg"))  # durable settings: fsync on
    assert isinstance(pg, PostgresServer)
    pg.start()
    conn = await asyncpg.connect(pg.dsn())
    try:
        assert await conn.fetchval("SHOW fsync") == "on"
        await conn.execute("CREATE EXTENSION timescaledb")
        await conn.execute("CREATE TABLE ticks (ts timestamptz NOT NULL, px numeric NOT NULL)")
        await conn.execute("SELECT create_hypertable('ticks', by_range('ts'))")
        await conn.execute(
            "INSERT INTO ticks SELECT t, 1 FROM generate_series("
            "'2024-01-01'::timestamptz, '2024-01-31', INTERVAL '1 hour') AS t"
        )
    finally:
        await conn.close()
    killed = tracker.remember(pg)

    pg.kill()

    assert wait_gone(killed, timeout=5) == []
    assert not pg.is_running() and pg.pid is None
    pg.start()  # crash recovery replays the WAL
    tracker.remember(pg)
    assert pg.pid not in killed
    conn = await asyncpg.connect(pg.dsn())
    try:
        count = await conn.fetchval("SELECT count(*) FROM ticks")
        days = await conn.fetchval("SELECT count(DISTINCT time_bucket('1 day', ts)) FROM ticks")
    finally:
        await conn.close()
    assert (count, days) == (30 * 24 + 1, 31)
    pg.restart()
    tracker.remember(pg)
    assert pg.psql("SELECT count(*) FROM ticks").strip() == str(count)
    pg.stop()


def test_postgres_stop_spares_a_postmaster_it_did_not_start(
    scratch: Path, tracker: Tracker
) -> None:
    owner = tracker.add(PostgresServer(scratch / "pg", fast=True))
    assert isinstance(owner, PostgresServer)
    owner.start()
    tracker.remember(owner)
    bystander = PostgresServer(scratch / "pg", port=owner.port, fast=True)

    bystander.stop()
    bystander.stop(mode="immediate")

    assert owner.is_running()
    with pytest.raises(DevstackError, match="expected no postmaster"):
        bystander.start()
    assert bystander.attach() and bystander.pid == owner.pid
    bystander.stop()
    assert not owner.is_running()


async def test_redis_keeps_acknowledged_writes_across_sigkill(
    scratch: Path, tracker: Tracker
) -> None:
    server = tracker.add(RedisServer(scratch / "redis"))
    assert isinstance(server, RedisServer)
    server.start()
    killed = tracker.remember(server)
    client = aioredis.Redis.from_url(server.url)
    try:
        await client.set("usdc:quote", "1.0001")
        assert await client.get("usdc:quote") == b"1.0001"
        assert (await client.config_get("appendfsync"))["appendfsync"] == "everysec"

        # Acknowledged writes reach the AOF (the kernel) before a SIGKILL can lose them;
        # the RDB written by SAVE is not what a restart with AOF on reads back.
        async def in_aof() -> bool:
            aof = b"".join(p.read_bytes() for p in (scratch / "redis").rglob("*.aof"))
            return b"usdc:quote" in aof

        await eventually(in_aof)
    finally:
        await client.aclose()

    server.kill()

    assert wait_gone(killed, timeout=5) == []
    assert not server.is_running()
    server.start()
    tracker.remember(server)
    client = aioredis.Redis.from_url(server.url)
    try:
        assert await client.get("usdc:quote") == b"1.0001"
    finally:
        await client.aclose()
    server.restart()
    tracker.remember(server)
    server.stop()
    assert server.pid is None


def test_a_process_deaf_to_sigterm_is_killed_with_the_processes_it_started(
        tmp_path: Path) -> None:
    """``make down``'s last resort reaches a service's children (engine processes) too."""
    script = tmp_path / "deaf_service.py"
    script.write_text(
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            start_new_session=True)
    try:
        assert proc.stdout is not None
        child = int(proc.stdout.readline())
        os.kill(proc.pid, signal.SIGTERM)  # ignored, like a service stuck in shutdown
        _wait_gone(ProcessInfo(proc.pid, 0, "deaf_service.py"), 0.5)
        proc.wait(5)
        deadline = time.monotonic() + 5
        while Path(f"/proc/{child}").exists() and b"Z" not in Path(
                f"/proc/{child}/stat").read_bytes().split(b")")[-1][:3]:
            assert time.monotonic() < deadline, "the child outlived its service"
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
