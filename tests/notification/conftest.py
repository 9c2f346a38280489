"""Notification service fixtures: real PostgreSQL, Redis, SMTP and webhook receivers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from notification.nt_helpers import Receiver, SmtpServer, caller, new_secret
from usdcarb.notification.main import SERVICE, Components, NotificationSettings, build
from usdcarb.platform import events
from usdcarb.platform.redis import create_redis
from usdcarb.platform.testing import InProcessServer, settings_for_tests, start_in_process
from usdcarb.v1 import notification_pb2 as pb
from usdcarb.v1 import notification_pb2_grpc


@dataclass
class Env:
    """One notification deployment under test: its replicas share a schema and a stream."""

    stub: Any  # NotificationServiceStub of the first replica
    pool: Any
    redis: Any
    settings: NotificationSettings
    smtp: SmtpServer
    start_replica: Callable[..., Awaitable[tuple[Components, InProcessServer]]]
    receivers: list[Receiver] = field(default_factory=list)

    async def publish(self, type_: str = "EVENT_TYPE_BACKTEST_SUCCEEDED", *,
                      subject: str = "backtests/b1", severity: str = "SEVERITY_INFO",
                      summary: str = "backtest b1 finished", **data: Any) -> str:
        return await events.publish(self.redis, events.DomainEvent(
            type=type_, source="test", subject=subject, summary=summary, severity=severity,
            data=data), stream=self.settings.events_stream)

    async def receiver(self, **kw: Any) -> Receiver:
        r = await Receiver(secrets=[new_secret()], **kw).start()
        self.receivers.append(r)
        return r

    async def webhook(self, receiver: Receiver, *, owner: str = "users/alice",
                      max_attempts: int = 0, **sub: Any) -> tuple[pb.Channel, pb.Subscription]:
        """A webhook channel to ``receiver`` and a subscription of it."""
        channel = await self.stub.CreateChannel(pb.CreateChannelRequest(channel=pb.Channel(
            display_name="hook", webhook=pb.WebhookConfig(
                url=receiver.url, secret=receiver.secrets[0], max_attempts=max_attempts))),
            metadata=caller(owner))
        subscription = await self.stub.CreateSubscription(pb.CreateSubscriptionRequest(
            subscription=pb.Subscription(channel=channel.name, enabled=True, **sub)),
            metadata=caller(owner))
        return channel, subscription


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def env(service_pool: Any, redis_server: Any, smtp: SmtpServer) -> AsyncIterator[Env]:
    pool = await service_pool("notification")
    redis = await create_redis(redis_server.url)
    settings = NotificationSettings(**{
        **settings_for_tests().model_dump(), "metrics_port": -1, "shutdown_grace_s": 1.0}).model_copy(update=dict(
        redis_url=redis_server.url,
        events_stream=f"test:events:{uuid.uuid4().hex[:8]}", smtp_port=smtp.port,
        backoff_base_s=0.2, poll_s=0.05, claim_idle_s=1.0, webhook_timeout_s=1.0, lease_s=3.0,
        heartbeat_s=0.5, digest_hour_utc=-1))
    started: list[tuple[Components, InProcessServer]] = []

    async def start_replica(name: str | None = None,
                            **overrides: Any) -> tuple[Components, InProcessServer]:
        values = {**settings.model_dump(), "consumer_name": name or f"r-{len(started)}"}
        if overrides.get("env") == "prod":  # prod refuses development secrets
            values |= {f: "not-a-dev-secret" for f in settings.fields_with_dev_defaults()}
        s = NotificationSettings(**(values | overrides))
        components = build(pool, redis, s)
        await components.start()
        server = await start_in_process([SERVICE], components.register, settings=s,
                                        on_close=[components.close])
        started.append((components, server))
        return components, server

    _, server = await start_replica("replica-1")
    e = Env(stub=None, pool=pool, redis=redis, settings=settings, smtp=smtp,
            start_replica=start_replica)
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            e.stub = notification_pb2_grpc.NotificationServiceStub(channel)
            yield e
    finally:
        # As a replica stops (notification.main): open SubscribeEvents streams end with
        # their Outcome first, then the server stops.
        for components, _ in started:
            components.feed.closing.set()
        await asyncio.sleep(0.3)
        for _, srv in reversed(started):
            await srv.stop(0)
        for r in e.receivers:
            await r.stop()
        await redis.aclose()
