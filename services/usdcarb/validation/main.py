"""Composition root of the validation service: ``python -m usdcarb.validation.main``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from usdcarb.platform.bootstrap import run, serve_with_database
from usdcarb.platform.events import DomainEvent, publish
from usdcarb.platform.redis import create_redis
from usdcarb.platform.replica import ReadRouter
from usdcarb.platform.server import Register
from usdcarb.platform.settings import PlatformSettings, service_config
from usdcarb.platform.telemetry import domain_registry
from usdcarb.v1 import validation_pb2_grpc
from usdcarb.validation.app import EventSink, ValidationApp
from usdcarb.validation.servicer import ValidationServicer
from usdcarb.validation.store import MarketData, QualityStore
from usdcarb.validation.telemetry import ValidationTelemetry

SERVICE = "usdcarb.v1.ValidationService"
SCHEMA = "validation"
MIGRATIONS = Path(__file__).with_name("migrations")


class ValidationSettings(PlatformSettings):
    """Settings of the validation service (environment variables USDCARB_VALIDATION_*)."""

    model_config = service_config("USDCARB_VALIDATION_")

    market_data_table: str = Field(
        default="ingestion.market_data",
        description="Market data hypertable (ingestion's) read and gap-filled; tests use "
                    "another schema.")
    context_bars: int = Field(
        default=1440, ge=0, description="Stored bars read either side of a batch as context.")


class RedisEvents:
    """EventSink onto the ``usdcarb:events`` stream."""

    def __init__(self, redis: Any) -> None:
        self._redis = redis

    async def publish(self, event: DomainEvent) -> None:
        await publish(self._redis, event)


def make_app(pool: Any, events: EventSink, *, table: str = "ingestion.market_data",
             context_bars: int = 1440, reads: ReadRouter | None = None,
             telemetry: ValidationTelemetry | None = None) -> ValidationApp:
    """The validation application on its stores: what the service serves, and what the
    ingestion service runs in-process to judge its pages (``pool``'s search_path names
    the validation schema; ``reads``: where candle context reads go, the read replica
    when healthy; default the pool)."""
    quality = QualityStore(pool)
    if telemetry is not None:  # findings counted as they are recorded
        telemetry.watch(quality)
    return ValidationApp(quality, MarketData(pool, table, reads=reads), events,
                         context_bars=context_bars)


def build(pool: Any, events: EventSink, *, table: str = "ingestion.market_data",
          context_bars: int = 1440, reads: ReadRouter | None = None,
          telemetry: ValidationTelemetry | None = None) -> Register:
    """Wire the stores, the application and the servicer."""
    servicer = ValidationServicer(make_app(pool, events, table=table,
                                           context_bars=context_bars, reads=reads,
                                           telemetry=telemetry))
    return lambda server: validation_pb2_grpc.add_ValidationServiceServicer_to_server(  # type: ignore[no-untyped-call]
        servicer, server
    )


async def serve(settings: ValidationSettings) -> None:
    redis = await create_redis(settings.redis_url)
    telemetry = ValidationTelemetry(domain_registry())
    try:
        await serve_with_database(
            settings, names=[SERVICE], schema=SCHEMA, migrations=MIGRATIONS, reads=True,
            build=lambda pool, reads: build(pool, RedisEvents(redis),
                                            table=settings.market_data_table,
                                            context_bars=settings.context_bars, reads=reads,
                                            telemetry=telemetry),
            collectors=[telemetry.registry])
    finally:
        await redis.aclose()


def main() -> None:
    settings = ValidationSettings()
    run(settings, lambda: serve(settings))


if __name__ == "__main__":
    main()
