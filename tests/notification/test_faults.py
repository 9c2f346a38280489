"""Faults: a notification replica process SIGKILLed mid-burst, Redis restarted mid-burst."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from notification.conftest import Env
from notification.nt_helpers import Receiver, new_secret
from testkit import eventually
from usdcarb.devstack import free_port
from usdcarb.notification.app import ChannelInput, SubscriptionInput, Who
from usdcarb.notification.main import NotificationSettings, build
from usdcarb.platform import events
from usdcarb.platform.db import create_pool
from usdcarb.platform.redis import create_redis
from usdcarb.platform.testing import DEV_JWKS

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BURST = 500
DELIVERED = "DELIVERY_STATE_DELIVERED"


def start_replica(name: str, dsn: str, redis_url: str, stream: str, root: Path,
                  ) -> subprocess.Popen[bytes]:
    """``python -m usdcarb.notification.main`` as the stack runs it."""
    p = "USDCARB_NOTIFICATION_"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        str(REPO / d) for d in ("services", "gen/python", "clients/python")),
        f"{p}ENV": "test", f"{p}PLAINTEXT": "true", f"{p}GRPC_PORT": str(free_port()),
        f"{p}METRICS_PORT": "-1", f"{p}DATABASE_URL": dsn, f"{p}REDIS_URL": redis_url,
        f"{p}EVENTS_STREAM": stream, f"{p}CONSUMER_NAME": name, f"{p}CLAIM_IDLE_S": "2",
        f"{p}LEASE_S": "3", f"{p}WEBHOOK_TIMEOUT_S": "1", f"{p}POLL_S": "0.05",
        f"{p}BACKOFF_BASE_S": "0.2", f"{p}PORT_FILE": str(root / f"{name}.port"),
        f"{p}LOG_JSON": "false", f"{p}DIGEST_HOUR_UTC": "-1", f"{p}JWKS_FILE": str(DEV_JWKS)}
    log = (root / f"{name}.log").open("ab")
    try:
        return subprocess.Popen([sys.executable, "-m", "usdcarb.notification.main"], env=env,
                                cwd=REPO, stdout=log, stderr=log, start_new_session=True)
    finally:
        log.close()


@pytest.fixture
async def processes(tmp_path: Path) -> AsyncIterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in started:
        try:
            await asyncio.to_thread(proc.wait, 15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def publish_retrying(redis: Any, stream: str, i: int) -> str:
    """Publish as a service would, waiting out a Redis restart."""
    for _ in range(200):
        try:
            return await events.publish(redis, events.DomainEvent(
                type="EVENT_TYPE_BACKTEST_SUCCEEDED", source="test",
                subject=f"backtests/b{i}", summary=f"backtest b{i} finished"), stream=stream)
        except (RedisConnectionError, RedisTimeoutError, OSError):
            await asyncio.sleep(0.05)
    raise AssertionError("Redis did not come back")


def check_receiver(receiver: Receiver, ids: list[str]) -> None:
    """Every event arrived, verified; duplicates of one delivery carry one webhook-id."""
    assert all(r.payload is not None for r in receiver.received)
    by_event: dict[str, set[str]] = {}
    for r in receiver.received:
        assert r.payload is not None
        by_event.setdefault(r.payload["id"], set()).add(r.id)
    assert set(by_event) == set(ids)
    assert all(len(webhook_ids) == 1 for webhook_ids in by_event.values())


async def test_a_replica_sigkilled_mid_burst_loses_no_delivery(
        postgres: Any, redis_server: Any, tmp_path: Path,
        processes: list[subprocess.Popen[bytes]]) -> None:
    database = f"notify_{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(postgres.create_database, database)
    dsn = postgres.dsn(database)
    stream = f"test:events:{uuid.uuid4().hex[:8]}"
    receiver = await Receiver(secrets=[new_secret()]).start()
    redis = await create_redis(redis_server.url)
    for name in ("doomed", "survivor"):
        processes.append(start_replica(name, dsn, redis_server.url, stream, tmp_path))
    await eventually(lambda: all((tmp_path / f"{n}.port").exists()
                                 for n in ("doomed", "survivor")), within_s=30)
    pool = await create_pool(dsn, 1, 4, search_path="notification, public")
    try:
        settings = NotificationSettings(env="test", events_stream=stream)
        app = build(pool, redis, settings).app  # its loops stay off: only the replicas deliver
        who = Who(subject="users/alice")
        channel = await app.create_channel(ChannelInput(
            display_name="hook", kind="webhook", url=receiver.url,
            secret=receiver.secrets[0]), who, "")
        await app.create_subscription(SubscriptionInput(channel=channel.name), who, "")
        ids = [await publish_retrying(redis, stream, i) for i in range(BURST)]
        await eventually(lambda: len(receiver.received) >= BURST // 5, within_s=30)
        os.kill(processes[0].pid, signal.SIGKILL)
        assert len(receiver.received) < BURST, "the burst ended before the kill"
        processes[0].wait()

        async def all_delivered() -> bool:
            return await pool.fetchval("SELECT count(*) FROM deliveries WHERE state = $1",
                                       DELIVERED) == BURST
        await eventually(all_delivered, within_s=60, interval=0.2)
        check_receiver(receiver, ids)
    finally:
        await pool.close()
        await redis.aclose()
        await receiver.stop()


async def test_redis_restarted_mid_burst_loses_no_delivery(env: Env, redis_server: Any) -> None:
    receiver = await env.receiver()
    await env.webhook(receiver)
    stream = env.settings.events_stream
    ids = [await publish_retrying(env.redis, stream, i) for i in range(BURST // 2)]
    restart = asyncio.create_task(asyncio.to_thread(redis_server.restart))
    while not restart.done():
        ids.append(await publish_retrying(env.redis, stream, len(ids)))
    await restart
    while len(ids) < BURST:
        ids.append(await publish_retrying(env.redis, stream, len(ids)))

    # A publish retried across the restart may have been applied before its reply was
    # lost, by redis-py's own retry (the same event, the same key: delivered once) or by
    # the publisher (a new event for the same fact: delivered as its own).
    entries = await env.redis.xrange(stream)
    assert set(ids) <= {i.decode() for i, _ in entries}
    keys = {events.DomainEvent.from_fields(f).key for _, f in entries}

    async def all_delivered() -> bool:
        return await env.pool.fetchval("SELECT count(*) FROM deliveries WHERE state = $1",
                                       DELIVERED) == len(keys)
    await eventually(all_delivered, within_s=60, interval=0.2)
    assert all(r.payload is not None for r in receiver.received)
    subjects = {r.payload["subject"] for r in receiver.received if r.payload}
    assert subjects == {f"backtests/b{i}" for i in range(BURST)}
    by_delivery: dict[str, set[str]] = {}
    for r in receiver.received:
        assert r.payload is not None
        by_delivery.setdefault(r.id, set()).add(r.payload["id"])
    assert len(by_delivery) == len(keys)  # one webhook-id per fact, however often sent
