"""Composition root of the notification service: ``python -m usdcarb.notification.main``.

Builds the pool (schema ``notification``, migrated at start-up), the Redis client, the
senders (aiohttp for webhooks, aiosmtplib for email), the dispatcher (event stream →
delivery rows), the deliverer (rows → attempts) and the servicer, then serves until
SIGTERM. On SIGTERM, SubscribeEvents streams end first with their Outcome (callers resume
from their last event id on another replica), then the server drains; attempts in flight
are cancelled and their leases let another replica retry them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from pydantic import Field, SecretStr, model_validator

from usdcarb.notification.alerts import AlertReceiver, server_ssl_context
from usdcarb.notification.app import NotificationApp
from usdcarb.notification.digest import DigestScheduler, QualityReader
from usdcarb.notification.domain import Backoff
from usdcarb.notification.engine import Deliverer, Dispatcher
from usdcarb.notification.feed import EventFeed
from usdcarb.notification.senders import EmailSender, Senders, SmtpConfig, WebhookSender
from usdcarb.notification.servicer import NotificationServicer
from usdcarb.notification.store import NotificationStore
from usdcarb.notification.telemetry import NotificationTelemetry
from usdcarb.platform import events
from usdcarb.platform.bootstrap import run
from usdcarb.platform.db import create_pool, postgres_check
from usdcarb.platform.migrations import apply_migrations
from usdcarb.platform.redis import create_redis, redis_check
from usdcarb.platform.server import Register, Service
from usdcarb.platform.settings import PlatformSettings, dev_secret, service_config
from usdcarb.platform.telemetry import domain_registry, instrument_pool, instrument_redis
from usdcarb.v1 import notification_pb2_grpc

SERVICE = "usdcarb.v1.NotificationService"
SCHEMA = "notification"
MIGRATIONS = Path(__file__).with_name("migrations")


class NotificationSettings(PlatformSettings):
    """Settings of the notification service (environment variables USDCARB_NOTIFICATION_*)."""

    model_config = service_config("USDCARB_NOTIFICATION_")

    events_stream: str = Field(default=events.STREAM, description="Redis stream of domain events.")
    consumer_name: str = Field(default="", description="Consumer name in the stream's group; "
                               "empty: host name and process id.")
    claim_idle_s: float = Field(default=30.0, gt=0, description="Seconds a stream entry may "
                                "stay unacknowledged before another replica reclaims it.")
    per_channel_concurrency: int = Field(default=8, ge=1, le=256, description="Attempts one "
                                         "replica runs at once per channel.")
    max_in_flight: int = Field(default=256, ge=1, description="Attempts one replica runs at once.")
    lease_s: float = Field(default=60.0, gt=0, description="Seconds a replica holds a delivery "
                           "it attempts; after that another replica may retry it.")
    poll_s: float = Field(default=0.5, gt=0, description="Seconds between looks for due "
                          "retries and for rows other replicas wrote.")
    webhook_timeout_s: float = Field(default=10.0, gt=0, description="Timeout of one webhook "
                                     "POST, connection included.")
    webhook_max_connections: int = Field(default=200, ge=1, description="Open webhook "
                                         "connections of a replica, over all hosts.")
    max_attempts: int = Field(default=5, ge=1, le=50, description="Attempts before a "
                              "delivery is dead-lettered (a webhook's own max_attempts wins).")
    backoff_base_s: float = Field(default=2.0, gt=0, description="Wait before the 2nd "
                                  "attempt; doubled per attempt, with jitter.")
    backoff_cap_s: float = Field(default=3600.0, gt=0, description="Longest wait between "
                                 "attempts (a Retry-After may ask for up to as long).")
    heartbeat_s: float = Field(default=15.0, gt=0, description="SubscribeEvents heartbeat "
                               "after this many quiet seconds.")
    smtp_host: str = Field(default="127.0.0.1", description="SMTP server host.")
    smtp_port: int = Field(default=25, ge=1, le=65535, description="SMTP server port.")
    smtp_sender: str = Field(default="usdcarb@localhost", description="From address of email.")
    smtp_username: str = Field(default="", description="SMTP login; empty: no AUTH.")
    smtp_password: SecretStr = dev_secret("usdcarb-dev-smtp", "SMTP password (with smtp_username).")
    smtp_use_tls: bool = Field(default=False, description="Implicit TLS (port 465); otherwise "
                               "STARTTLS whenever the server offers it.")
    smtp_validate_certs: bool = Field(default=True, description="Verify the SMTP server's "
                                      "certificate.")
    smtp_timeout_s: float = Field(default=30.0, gt=0, description="Timeout of one SMTP send.")
    digest_hour_utc: int = Field(default=6, ge=-1, le=23, description="UTC hour at which the "
                                 "previous day's data-quality digest is published; -1 off.")
    market_table: str = Field(default="ingestion.market_data", description="Market data "
                              "hypertable the digest counts bars in (read-only).")
    validation_schema: str = Field(default="validation", description="Schema of validation's "
                                   "gap and quarantine tables the digest reads (read-only).")
    alert_port: int = Field(default=-1, ge=-1, le=65535, description="Port of the Alertmanager "
                            "webhook receiver (usdcarb.notification.alerts) on grpc_host; "
                            "-1 off, 0 any free port.")
    alert_token_file: Path | None = Field(default=None, description="File (0600) holding the "
                                          "bearer token Alertmanager presents; required "
                                          "with alert_port.")

    @model_validator(mode="after")
    def _alert_token_with_port(self) -> Self:
        if self.alert_port >= 0 and self.alert_token_file is None:
            raise ValueError("expected alert_token_file with alert_port, got none")
        return self

    @model_validator(mode="after")
    def _lease_outlasts_attempts(self) -> Self:
        if self.lease_s <= 2 * self.webhook_timeout_s:
            raise ValueError(f"expected lease_s > 2 * webhook_timeout_s, got {self.lease_s} <= "
                             f"{2 * self.webhook_timeout_s}")
        return self


@dataclass
class Components:
    """What ``build`` wired, and the background loops it runs."""

    register: Register
    app: NotificationApp
    dispatcher: Dispatcher
    deliverer: Deliverer
    feed: EventFeed
    senders: Senders
    digest: DigestScheduler | None
    tasks: list[asyncio.Task[None]]
    telemetry: NotificationTelemetry
    alerts: AlertReceiver | None = None

    async def start(self) -> None:
        self.telemetry.sampler.start()
        if self.alerts is not None:
            await self.alerts.start()
        self.tasks += [asyncio.create_task(self.dispatcher.run(), name="dispatcher"),
                       asyncio.create_task(self.deliverer.run(), name="deliverer")]
        if self.digest is not None:
            self.tasks.append(asyncio.create_task(self.digest.run(), name="digest"))

    async def close(self) -> None:
        self.feed.closing.set()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.telemetry.sampler.stop()
        if self.alerts is not None:
            await self.alerts.stop()
        await self.deliverer.stop()
        await self.senders.close()


def build(pool: Any, redis: Any, settings: NotificationSettings) -> Components:
    """Wire the store, senders, engine, feed, app and servicer."""
    s = settings
    store = NotificationStore(pool)
    registry = domain_registry()  # served beside the gRPC metrics (serve)
    instrument_pool(pool, registry)
    instrument_redis(redis, registry)
    telemetry = NotificationTelemetry(registry, pool=pool)
    telemetry.watch(store)
    consumer = s.consumer_name or f"notification-{socket.gethostname()}-{os.getpid()}"
    senders = Senders(
        WebhookSender(env=s.env, timeout_s=s.webhook_timeout_s,
                      max_connections=s.webhook_max_connections),
        EmailSender(SmtpConfig(host=s.smtp_host, port=s.smtp_port, sender=s.smtp_sender,
                               username=s.smtp_username,
                               password=s.smtp_password.get_secret_value(),
                               use_tls=s.smtp_use_tls, validate_certs=s.smtp_validate_certs,
                               timeout_s=s.smtp_timeout_s)))
    deliverer = Deliverer(store, senders, owner=consumer,
                          backoff=Backoff(base_s=s.backoff_base_s, cap_s=s.backoff_cap_s),
                          per_channel=s.per_channel_concurrency, max_in_flight=s.max_in_flight,
                          lease_s=s.lease_s, poll_s=s.poll_s, default_max_attempts=s.max_attempts)
    dispatcher = Dispatcher(redis, store, stream=s.events_stream, consumer=consumer,
                            on_new=deliverer.wake, claim_idle_ms=int(s.claim_idle_s * 1000))
    feed = EventFeed(redis, stream=s.events_stream, heartbeat_s=s.heartbeat_s)

    async def publish(event: events.DomainEvent) -> str:
        return await events.publish(redis, event, stream=s.events_stream)

    app = NotificationApp(store, deliverer, env=s.env, publish=publish)
    digest = None if s.digest_hour_utc < 0 else DigestScheduler(
        redis, QualityReader(pool, market_table=s.market_table,
                             validation_schema=s.validation_schema),
        publish, hour_utc=s.digest_hour_utc)
    servicer = NotificationServicer(app, feed)
    alerts = None
    if s.alert_port >= 0 and s.alert_token_file is not None:
        tls = None
        if not s.plaintext:
            if s.tls_cert_file is None or s.tls_key_file is None or s.tls_ca_file is None:
                raise ValueError("expected tls_cert_file, tls_key_file and tls_ca_file for the "
                                 "alert receiver's mutual TLS, got some missing")
            tls = server_ssl_context(s.tls_cert_file, s.tls_key_file, s.tls_ca_file)
        alerts = AlertReceiver(publish, s.alert_token_file, host=s.grpc_host, port=s.alert_port,
                               ssl_context=tls, on_alert=telemetry.alert)
    return Components(
        register=lambda server: notification_pb2_grpc.add_NotificationServiceServicer_to_server(  # type: ignore[no-untyped-call]
            servicer, server),
        app=app, dispatcher=dispatcher, deliverer=deliverer, feed=feed, senders=senders,
        digest=digest, tasks=[], telemetry=telemetry, alerts=alerts)


async def serve(settings: NotificationSettings) -> None:
    # Custom plans only: a generic plan cached while ``deliveries`` was nearly empty (a new
    # deployment) scans the whole table on every claim and result once it holds a backlog,
    # until autovacuum happens to analyze it; planning each execution costs ~0.1 ms.
    pool = await create_pool(settings.database_url.get_secret_value(), settings.db_pool_min,
                             settings.db_pool_max, search_path=f"{SCHEMA}, public",
                             settings={"plan_cache_mode": "force_custom_plan"})
    try:
        await apply_migrations(pool, SCHEMA, MIGRATIONS)
        redis = await create_redis(settings.redis_url)
    except BaseException:
        await pool.close()
        raise
    components = build(pool, redis, settings)
    service = Service([SERVICE], components.register, settings,
                      health_checks={"postgres": postgres_check(pool),
                                     "redis": redis_check(redis)},
                      on_close=[pool.close, redis.aclose, components.close])
    service.registry.register(components.telemetry.registry)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await service.start()
        await components.start()
        await stop.wait()
        # Streams end with their Outcome before the server stops taking calls.
        components.feed.closing.set()
        await asyncio.sleep(min(1.5, settings.shutdown_grace_s))
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await service.shutdown()


def main() -> None:
    settings = NotificationSettings()
    run(settings, lambda: serve(settings))


if __name__ == "__main__":
    main()
