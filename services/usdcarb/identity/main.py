"""Composition root of the identity service: ``python -m usdcarb.identity.main``.

Its RPCs are later work: they answer UNIMPLEMENTED naming identity and rate limits (issue #6).
The process still serves health, reflection and metrics, and migrates its schema.
"""

from __future__ import annotations

from pathlib import Path

from usdcarb.platform.bootstrap import run, serve_pending
from usdcarb.platform.settings import PlatformSettings, service_config

SERVICE = "usdcarb.v1.IdentityService"


class IdentitySettings(PlatformSettings):
    """Settings of the identity service (environment variables USDCARB_IDENTITY_*)."""

    model_config = service_config("USDCARB_IDENTITY_")


def main() -> None:
    settings = IdentitySettings()
    run(settings, lambda: serve_pending(
        settings, service=SERVICE, pb2_module="usdcarb.v1.identity_pb2", schema="identity",
        migrations=Path(__file__).with_name("migrations"), owner="identity and rate limits (issue #6)"))


if __name__ == "__main__":
    main()
