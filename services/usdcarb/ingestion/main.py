"""Composition root of the ingestion service: ``python -m usdcarb.ingestion.main``.

Its RPCs are later work: they answer UNIMPLEMENTED naming the market data pipeline (issue #4).
The process still serves health, reflection and metrics, and migrates its schema.
"""

from __future__ import annotations

from pathlib import Path

from usdcarb.platform.bootstrap import run, serve_pending
from usdcarb.platform.settings import PlatformSettings, service_config

SERVICE = "usdcarb.v1.IngestionService"


class IngestionSettings(PlatformSettings):
    """Settings of the ingestion service (environment variables USDCARB_INGESTION_*)."""

    model_config = service_config("USDCARB_INGESTION_")


def main() -> None:
    settings = IngestionSettings()
    run(settings, lambda: serve_pending(
        settings, service=SERVICE, pb2_module="usdcarb.v1.ingestion_pb2", schema="ingestion",
        migrations=Path(__file__).with_name("migrations"), owner="the market data pipeline (issue #4)"))


if __name__ == "__main__":
    main()
