"""Composition root of the backtest service: ``python -m usdcarb.backtest.main``.

Its RPCs are later work: they answer UNIMPLEMENTED naming the backtest engine (issue #5).
The process still serves health, reflection and metrics, and migrates its schema.
"""

from __future__ import annotations

from pathlib import Path

from usdcarb.platform.bootstrap import run, serve_pending
from usdcarb.platform.settings import PlatformSettings, service_config

SERVICE = "usdcarb.v1.BacktestService"


class BacktestSettings(PlatformSettings):
    """Settings of the backtest service (environment variables USDCARB_BACKTEST_*)."""

    model_config = service_config("USDCARB_BACKTEST_")


def main() -> None:
    settings = BacktestSettings()
    run(settings, lambda: serve_pending(
        settings, service=SERVICE, pb2_module="usdcarb.v1.backtest_pb2", schema="backtest",
        migrations=Path(__file__).with_name("migrations"), owner="the backtest engine (issue #5)"))


if __name__ == "__main__":
    main()
