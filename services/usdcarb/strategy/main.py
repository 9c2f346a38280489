"""Composition root of the strategy service: ``python -m usdcarb.strategy.main``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from usdcarb.platform.bootstrap import run, serve_with_database
from usdcarb.platform.events import DomainEvent, publish
from usdcarb.platform.redis import create_redis
from usdcarb.platform.server import Register
from usdcarb.platform.settings import PlatformSettings, service_config
from usdcarb.strategy.app import EventSink, StrategyApp
from usdcarb.strategy.servicer import StrategyServicer
from usdcarb.strategy.store import StrategyStore
from usdcarb.v1 import strategy_pb2_grpc

SERVICE = "usdcarb.v1.StrategyService"
SCHEMA = "strategy"
MIGRATIONS = Path(__file__).with_name("migrations")


class StrategySettings(PlatformSettings):
    """Settings of the strategy service (environment variables USDCARB_STRATEGY_*)."""

    model_config = service_config("USDCARB_STRATEGY_")


class RedisEvents:
    """EventSink onto the ``usdcarb:events`` stream."""

    def __init__(self, redis: Any) -> None:
        self._redis = redis

    async def publish(self, event: DomainEvent) -> None:
        await publish(self._redis, event)


def build(pool: Any, events: EventSink | None = None) -> Register:
    """Wire the store, the application and the servicer (events: where version and
    deployment changes are published; None publishes nothing)."""
    servicer = StrategyServicer(StrategyApp(StrategyStore(pool), events))
    return lambda server: strategy_pb2_grpc.add_StrategyServiceServicer_to_server(  # type: ignore[no-untyped-call]
        servicer, server
    )


async def serve(settings: StrategySettings) -> None:
    redis = await create_redis(settings.redis_url)
    try:
        await serve_with_database(
            settings, names=[SERVICE], schema=SCHEMA, migrations=MIGRATIONS,
            build=lambda pool: build(pool, RedisEvents(redis)))
    finally:
        await redis.aclose()


def main() -> None:
    settings = StrategySettings()
    run(settings, lambda: serve(settings))


if __name__ == "__main__":
    main()
