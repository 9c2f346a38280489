"""Composition root of the strategy service: ``python -m usdcarb.strategy.main``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from usdcarb.platform.bootstrap import run, serve_with_database
from usdcarb.platform.server import Register
from usdcarb.platform.settings import PlatformSettings, service_config
from usdcarb.strategy.app import StrategyApp
from usdcarb.strategy.servicer import StrategyServicer
from usdcarb.strategy.store import StrategyStore
from usdcarb.v1 import strategy_pb2_grpc

SERVICE = "usdcarb.v1.StrategyService"
SCHEMA = "strategy"
MIGRATIONS = Path(__file__).with_name("migrations")


class StrategySettings(PlatformSettings):
    """Settings of the strategy service (environment variables USDCARB_STRATEGY_*)."""

    model_config = service_config("USDCARB_STRATEGY_")


def build(pool: Any) -> Register:
    """Wire the store, the application and the servicer."""
    servicer = StrategyServicer(StrategyApp(StrategyStore(pool)))
    return lambda server: strategy_pb2_grpc.add_StrategyServiceServicer_to_server(  # type: ignore[no-untyped-call]
        servicer, server
    )


def main() -> None:
    settings = StrategySettings()
    run(settings, lambda: serve_with_database(
        settings, names=[SERVICE], schema=SCHEMA, migrations=MIGRATIONS, build=build))


if __name__ == "__main__":
    main()
