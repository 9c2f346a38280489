"""Composition root of the validation service: ``python -m usdcarb.validation.main``.

Its RPCs are later work: they answer UNIMPLEMENTED naming the market data pipeline (issue #4).
The process still serves health, reflection and metrics, and migrates its schema.
"""

from __future__ import annotations

from pathlib import Path

from usdcarb.platform.bootstrap import run, serve_pending
from usdcarb.platform.settings import PlatformSettings, service_config

SERVICE = "usdcarb.v1.ValidationService"


class ValidationSettings(PlatformSettings):
    """Settings of the validation service (environment variables USDCARB_VALIDATION_*)."""

    model_config = service_config("USDCARB_VALIDATION_")


def main() -> None:
    settings = ValidationSettings()
    run(settings, lambda: serve_pending(
        settings, service=SERVICE, pb2_module="usdcarb.v1.validation_pb2", schema="validation",
        migrations=Path(__file__).with_name("migrations"), owner="the market data pipeline (issue #4)"))


if __name__ == "__main__":
    main()
